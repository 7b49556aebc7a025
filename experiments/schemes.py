"""The compression families of every sweep (the classification tradeoff job and the Q-network studies): one small
declarative entry each, in one registry.

A family is one curve: a scheme (which weights, grouped how, compressed by what) with one swept parameter.
``make(value, shapes)`` returns the ``compression_tasks`` value — a ``(View, Compression)`` pair or a list of pairs
(an additive combination) — for one task over tensors of ``shapes``; ``joint`` makes one task over all the weights
(one shared budget or codebook), else every weight is its own task; ``names`` (model → weight names) leaves layers
out. A family whose tasks are not of that form gives ``build(model, value)`` instead. A :class:`Scheme` is one point
of a curve: a family at one value.

To add a family, add an entry to :data:`FAMILIES`::

    Family("ternary", "-", (1,), lambda v, shapes: (AsVector, lc.ScaledTernaryQuantization())),
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

import lc
from lc import AsIs, AsVector
from tasks.adapter import compression_tasks, weight_names

from . import structured

__all__ = ["Family", "Scheme", "FAMILIES", "RENAMED", "family", "parse_scheme", "rank_of", "kappa_of", "quantized"]


@dataclass(frozen=True)
class Family:
    name: str
    parameter: str                          # what the swept value is ("k", "kept fraction", "alpha", …)
    values: tuple                           # default values swept
    make: Callable[[Any, list], Any] | None = None   # (value, shapes) → (View, Compression) or a list of them
    joint: bool = False                     # one task over all weights (True) or one task per weight (False)
    mu0: float | None = None                # the family's own μ₀ (default: the sweep's)
    names: Callable[[nn.Module], list[str]] | None = None   # model → the weight names (default: every linear/conv)
    build: Callable[[nn.Module, Any], dict] | None = None   # (model, value) → compression_tasks, instead of make
    integer: bool = False                   # the value is an integer (k, bits): parse_scheme reads it as one
    description: str = ""
    penalty: bool = False                   # a penalty form (α-valued): its path depends on where it starts (μ₁
                                            # or μ → 0⁺, lc.Algorithm's direct_mu), so a sweep may run both starts
    at_least: float | None = None           # the smallest value that means something (a target ratio: 1)
    structured: bool = False                # whole channels removed: build(model, value, example) makes the tasks,
                                            # and a run is exported with its zero channels removed
    method: str = "lc"                      # the rows' method: "lc", or the baseline's (experiments.baselines)
    kind: str = ""                          # the compression type, one colour on the plots (default: the name)
    run: Callable[..., Any] | None = None   # a baseline: run(job, value) → experiments.baselines.Outcome,
                                            # instead of lc.Algorithm (make/build: the structure it ends in)

    @property
    def type(self) -> str:
        """The compression type (the plots' colour): ``kind``, or the family's name."""
        return self.kind or self.name

    def check(self, value) -> None:
        """A value of this family's parameter, or a :class:`lc.CompressionError` saying what to give."""
        if self.at_least is not None and not value >= self.at_least:
            alpha = FAMILIES.get(f"{self.name}-alpha")
            raise lc.CompressionError(
                f"{self.name}={value!r}: the {self.parameter} must be ≥ {self.at_least:g}"
                + (f"; the family valued by α is {alpha.name}" if alpha is not None else ""))

    def tasks(self, model: nn.Module, value, build_tasks: Callable[..., dict] = compression_tasks,
              example=None) -> dict:
        """``compression_tasks`` of this family at ``value`` for ``model`` (weights named by string, so that it
        applies to any copy of the model), built by ``build_tasks(model, make, joint=…, names=…)`` (an adapter's
        ``compression_tasks``; default :func:`tasks.adapter.compression_tasks`); a structured family's from the
        model's graph on ``example`` (an input batch)."""
        if self.structured:
            if example is None:
                raise lc.CompressionError(f"family {self.name} finds the model's channels from an input batch: "
                                          "give example=")
            return self.build(model, value, example)
        if self.build is not None:
            return self.build(model, value)
        return build_tasks(model, lambda shapes: self.make(value, shapes), joint=self.joint,
                           names=self.names(model) if self.names else None)


@dataclass(frozen=True)
class Scheme:
    """One point of a tradeoff curve: ``family`` at ``value``; ``layers`` labels which weights, where a study's
    rows leave that open (the Q-network study's per-layer rows)."""

    of: Family
    value: float
    layers: str = ""

    @property
    def family(self) -> str:
        return self.of.name

    @property
    def name(self) -> str:
        return f"{self.family}={self.value:g}"

    def tasks(self, model: nn.Module) -> dict:
        return self.of.tasks(model, self.value)


# ---------------------------------------------------------------------------------------------- sizes
def _size(shapes) -> int:
    return sum(math.prod(s) for s in shapes)


def kappa_of(fraction: float, shapes) -> int:
    """Weights kept by a kept ``fraction`` of the tensors of ``shapes``: round(fraction · size), at least 1."""
    return max(1, round(fraction * _size(shapes)))


def rank_of(fraction: float, shape, *, rounding: str) -> int:
    """The rank of a matrix of ``shape`` (a kernel as out × in·k·k) at ``fraction`` of its full rank
    r = min(m, n): ``rounding="round"`` gives round(fraction · r) (the classification families, whose documented
    results were made so), ``"ceil"`` gives ⌈fraction · r⌉ below full rank (the Q-network study's, as its docs
    say; lc.LowRank refuses a rank that compresses nothing). At least 1 either way."""
    full = min(shape[0], math.prod(shape[1:]))
    if rounding == "round":
        return max(1, round(fraction * full))
    if rounding == "ceil":
        return min(max(1, math.ceil(fraction * full)), full - 1)
    raise lc.CompressionError(f"rank_of: rounding={rounding!r}; use 'round' or 'ceil'")


@functools.cache
def _budget(ratio: float, criterion: str):
    """One budget object per target and criterion: the layers of a run share it (budgets compare by identity)."""
    return lc.RankBudget(ratio=ratio)


def _rank_budget(ratio: float, criterion: str) -> tuple:
    """Every weight matrix's rank chosen together with the others' to meet ``ratio``: the dense cost of all of
    them over their compressed cost, counted as stored values (``"storage"``) or multiply-adds (``"flops"``)."""
    return AsIs, lc.RankSelection(criterion=criterion, budget=_budget(ratio, criterion))


def quantized(k: int, per_row: bool = False) -> tuple:
    """The (view, compression) of one weight matrix on its own adaptive codebook of k values, or (``per_row``)
    on one codebook per row."""
    if per_row:
        return AsIs, lc.AdaptiveQuantization(k=k, per_channel=True)
    return AsVector, lc.AdaptiveQuantization(k=k)


def _output_rows(model: nn.Module, k) -> dict:
    names = weight_names(model)
    return {lc.Param(n): quantized(k, per_row=n == names[-1]) for n in names}


def _one(shapes):
    (shape,) = shapes
    return shape


# ---------------------------------------------------------------------------------------------- the registry
FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("quantization", "k", (2, 4, 8), lambda k, shapes: quantized(k), integer=True,
           description="each weight tensor its own adaptive codebook of k entries"),
    Family("quantization-outrows", "k", (4,), build=_output_rows, integer=True,
           description="as quantization, but the output layer one codebook of k entries per row (per action)"),
    Family("pruning", "kept fraction", (0.01, 0.02, 0.05, 0.1),
           lambda f, shapes: (AsVector, lc.ConstraintL0Pruning(kappa=kappa_of(f, shapes))), joint=True,
           description="ℓ0 constraint over all weights together: keep a fraction of them"),
    Family("rank", "target ratio", (2, 4, 8), lambda r, shapes: _rank_budget(r, "storage"), mu0=1e-3,
           at_least=1, description="the ranks of all weight matrices chosen together (lc.RankBudget) so that "
                                   "their storage is 1/ratio of the dense matrices'"),
    Family("rank-flops", "FLOPs reduction", (2, 4, 8), lambda r, shapes: _rank_budget(r, "flops"), mu0=1e-3,
           at_least=1, description="the ranks of all weight matrices chosen together (lc.RankBudget) so that "
                                   "their multiply-adds are 1/ratio of the dense layers'"),
    Family("rank-alpha", "alpha", (1e-5, 3e-5, 1e-4),
           lambda a, shapes: (AsIs, lc.RankSelection(alpha=a, criterion="storage")), mu0=1e-3, penalty=True,
           description="each weight matrix its own rank, chosen by α × storage"),
    Family("rank-flops-alpha", "alpha", (1e-5, 3e-5, 1e-4),
           lambda a, shapes: (AsIs, lc.RankSelection(alpha=a, criterion="flops")), mu0=1e-3, penalty=True,
           description="each weight matrix its own rank, chosen by α × FLOPs"),
    Family("low-rank", "rank fraction", (0.2, 0.5),
           lambda f, shapes: (AsIs, lc.LowRank(target_rank=rank_of(f, _one(shapes), rounding="round"))), mu0=1e-3,
           description="each weight matrix at rank round(fraction · min(m, n))"),
    Family("low-rank-hidden", "rank fraction", (0.25, 0.5),
           lambda f, shapes: (AsIs, lc.LowRank(target_rank=rank_of(f, _one(shapes), rounding="ceil"))),
           names=lambda model: weight_names(model)[1:-1],
           description="the hidden-to-hidden matrices (not the input and output layers) at rank "
                       "⌈fraction · min(m, n)⌉"),
    Family("low-rank-all", "rank fraction", (0.25, 0.5),
           lambda f, shapes: (AsIs, lc.LowRank(target_rank=rank_of(f, _one(shapes), rounding="ceil"))),
           description="every weight matrix at rank ⌈fraction · min(m, n)⌉"),
    Family("pruning-l0-alpha", "alpha", (1e-4, 3e-4, 1e-3),
           lambda a, shapes: (AsVector, lc.PenaltyL0Pruning(alpha=a)), joint=True, penalty=True,
           description="ℓ0 penalty α‖θ‖₀ over all weights together (hard thresholding at √(2α/μ))"),
    Family("pruning-l1-alpha", "alpha", (1e-4, 3e-4, 1e-3),
           lambda a, shapes: (AsVector, lc.PenaltyL1Pruning(alpha=a)), joint=True, penalty=True,
           description="ℓ1 penalty α‖θ‖₁ over all weights together (soft thresholding at α/μ)"),
    Family("binary", "-", (1,), lambda v, shapes: (AsVector, lc.ScaledBinaryQuantization()),
           description="each tensor in {−a, a}"),
    Family("ternary", "-", (1,), lambda v, shapes: (AsVector, lc.ScaledTernaryQuantization()),
           description="each tensor in {−a, 0, a}"),
    Family("affine", "bits", (2, 4, 8), lambda b, shapes: (AsVector, lc.AffineQuantization(bits=b)), integer=True,
           description="each tensor on a uniform grid of 2^bits levels"),
    Family("affine-channel", "bits", (2, 4, 8),
           lambda b, shapes: (AsIs, lc.AffineQuantization(bits=b, per_channel=True)), integer=True, kind="affine",
           description="each output channel on its own uniform grid of 2^bits levels"),
    Family("prune+quant", "kept fraction", (0.01, 0.02),
           lambda f, shapes: [(AsVector, lc.ConstraintL0Pruning(kappa=kappa_of(f, shapes))),
                              (AsVector, lc.AdaptiveQuantization(k=2))],
           description="additive: each tensor quantized (k=2) plus a sparse correction of a fraction of weights"),
    Family("quant2+sparse", "kept fraction", (0.05,),
           lambda f, shapes: [(AsVector, lc.AdaptiveQuantization(k=2)),
                              (AsVector, lc.ConstraintL0Pruning(kappa=kappa_of(f, shapes)))],
           description="additive, the Q-network study's order of the terms: each tensor quantized (k=2) plus a "
                       "sparse correction of a fraction of its weights"),
    Family("channels", "kept fraction", (0.75, 0.5, 0.35), build=structured.by_count, structured=True,
           description="whole channels (filters, neurons) of all layers together: keep a fraction of them"),
    Family("channels-flops", "FLOPs reduction", (1.5, 2, 4), build=structured.by_flops, structured=True,
           at_least=1, description="whole channels of all layers together, chosen so that their producers keep "
                                   "1/value of their multiply-adds (lc.ChannelPruning, cost flops)"),
    Family("lowrank+sparse", "kept fraction", (0.01, 0.02),
           lambda f, shapes: [(AsIs, lc.LowRank(target_rank=rank_of(0.05, _one(shapes), rounding="round"))),
                              (AsVector, lc.ConstraintL0Pruning(kappa=kappa_of(f, shapes)))], mu0=1e-3,
           description="additive: each matrix at 5% rank plus a sparse correction of a fraction of weights"),
]}

from .baselines.registry import FAMILIES as _BASELINES  # noqa: E402  (built on Family and the helpers above)

FAMILIES.update(_BASELINES)

_PRUNED_QUANT = re.compile(r"pruned-quant(\d+)")
RENAMED = {"rank-budget": "rank (a target storage ratio, met by lc.RankBudget)"}   # old name → new


def family(name: str) -> Family:
    """The family called ``name``: an entry of :data:`FAMILIES`, or ``pruned-quantK`` (pruning and quantization at
    once over all weights together: keep a fraction, their values from one learned codebook of K entries)."""
    if name in FAMILIES:
        return FAMILIES[name]
    m = _PRUNED_QUANT.fullmatch(name)
    if m and int(m[1]) >= 1:
        k = int(m[1])
        return Family(name, "kept fraction", (0.25,), lambda f, shapes: (AsVector, lc.PrunedQuantization(
            kappa=kappa_of(f, shapes), k=k)), joint=True,
            description=f"keep a fraction of all weights together, their values from one codebook of {k} entries")
    if name in RENAMED:
        raise lc.CompressionError(f"family {name!r} is now called {RENAMED[name]}")
    raise lc.CompressionError(f"unknown family {name!r}; choose among {', '.join(FAMILIES)}, or pruned-quantK "
                              "(K the codebook size)")


def parse_scheme(text: str) -> Scheme:
    """'quantization=4', 'pruning=0.1', 'low-rank-hidden=0.25', 'low-rank-all=0.5', 'quant2+sparse=0.02',
    'quantization-outrows=4' (the output layer one codebook per row), 'pruned-quant16=0.1' (keep 10%, values
    from one 16-entry codebook; any k: 'pruned-quantK=KEEP'); any family of :data:`FAMILIES`."""
    name, _, value = text.partition("=")
    try:
        fam = family(name)
        number = float(value)
    except (lc.CompressionError, ValueError):
        raise lc.CompressionError(f"scheme {text!r}: write FAMILY=VALUE (a number) with FAMILY one of "
                                  f"{', '.join(FAMILIES)} or pruned-quantK (K the codebook size)") from None
    if fam.integer and number != int(number):
        raise lc.CompressionError(f"scheme {text!r}: the {fam.parameter} of {name} is an integer")
    return Scheme(fam, int(number) if fam.integer else number)
