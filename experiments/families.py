"""The compression families of the tradeoff sweep: one small declarative entry each.

A family is one curve: a scheme (which weights, grouped how, compressed by what) with one swept parameter.
``make(value, shapes)`` returns the ``compression_tasks`` value — a ``(View, Compression)`` pair or a list of pairs
(an additive combination) — for one task over tensors of ``shapes``. Families whose compressions this version of
``lc`` lacks (``requires``) are skipped with a warning, so a family can be declared before its C step lands.

To add a family, add an entry to :data:`FAMILIES`::

    "ternary": Family("ternary", "-", (1,), lambda v, shapes: (AsVector, lc.ScaledTernaryQuantization()),
                      requires=("ScaledTernaryQuantization",)),
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import lc
from lc import AsIs, AsVector


@dataclass(frozen=True)
class Family:
    name: str
    parameter: str                          # what the swept value is ("k", "kept fraction", "alpha", …)
    values: tuple                           # default values swept
    make: Callable[[Any, list], Any]        # (value, shapes) → (View, Compression) or [(View, Compression), …]
    joint: bool = False                     # one task over all weights (True) or one task per weight (False)
    requires: tuple[str, ...] = ()          # names lc must export for this family to run
    mu0: float | None = None                # the family's own μ₀ (default: the sweep's)
    names: Callable | None = None           # model → the weight names to compress (default: every linear/conv)
    description: str = ""

    def available(self) -> bool:
        return all(hasattr(lc, name) for name in self.requires)


def _size(shapes) -> int:
    return sum(math.prod(s) for s in shapes)


def _kappa(fraction: float, shapes) -> int:
    return max(1, round(fraction * _size(shapes)))


@functools.cache
def _budget(ratio: float):
    """One budget object per target: the layers of a run share it (budgets compare by identity)."""
    return lc.RankBudget(ratio=ratio)


def _rank(fraction: float, shapes) -> int:
    (s,) = shapes
    return max(1, round(fraction * min(s[0], math.prod(s[1:]))))


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("quantization", "k", (2, 4, 8),
           lambda k, shapes: (AsVector, lc.AdaptiveQuantization(k=k)),
           requires=("AdaptiveQuantization",),
           description="each weight tensor its own adaptive codebook of k entries"),
    Family("pruning", "kept fraction", (0.01, 0.02, 0.05, 0.1),
           lambda f, shapes: (AsVector, lc.ConstraintL0Pruning(kappa=_kappa(f, shapes))), joint=True,
           description="ℓ0 constraint over all weights together: keep a fraction of them"),
    Family("rank", "alpha", (1e-5, 3e-5, 1e-4),
           lambda a, shapes: (AsIs, lc.RankSelection(alpha=a, criterion="storage")),
           requires=("RankSelection",), mu0=1e-3,
           description="each weight matrix its own rank, chosen by α × storage"),
    Family("rank-flops", "alpha", (1e-5, 3e-5, 1e-4),
           lambda a, shapes: (AsIs, lc.RankSelection(alpha=a, criterion="flops")),
           requires=("RankSelection",), mu0=1e-3,
           description="each weight matrix its own rank, chosen by α × FLOPs"),
    Family("rank-budget", "target ratio", (2, 5, 10),
           lambda ratio, shapes: (AsIs, lc.RankSelection(budget=_budget(ratio))),
           requires=("RankSelection", "RankBudget"), mu0=1e-3,
           description="ranks of all weight matrices chosen together to meet a storage compression ratio"),
    Family("low-rank", "rank fraction", (0.2, 0.5),
           lambda f, shapes: (AsIs, lc.LowRank(target_rank=_rank(f, shapes))),
           requires=("LowRank",), mu0=1e-3,
           description="each weight matrix at rank ⌈fraction · min(m, n)⌉"),
    Family("binary", "-", (1,), lambda v, shapes: (AsVector, lc.ScaledBinaryQuantization()),
           requires=("ScaledBinaryQuantization",), description="each tensor in {−a, a}"),
    Family("ternary", "-", (1,), lambda v, shapes: (AsVector, lc.ScaledTernaryQuantization()),
           requires=("ScaledTernaryQuantization",), description="each tensor in {−a, 0, a}"),
    Family("affine", "bits", (2, 4, 8), lambda b, shapes: (AsVector, lc.AffineQuantization(bits=b)),
           requires=("AffineQuantization",), description="each tensor on a uniform grid of 2^bits levels"),
    Family("prune+quant", "kept fraction", (0.01, 0.02),
           lambda f, shapes: [(AsVector, lc.ConstraintL0Pruning(kappa=_kappa(f, shapes))),
                              (AsVector, lc.AdaptiveQuantization(k=2))],
           requires=("AdaptiveQuantization",),
           description="additive: each tensor quantized (k=2) plus a sparse correction of a fraction of weights"),
    Family("lowrank+sparse", "kept fraction", (0.01, 0.02),
           lambda f, shapes: [(AsIs, lc.LowRank(target_rank=_rank(0.05, shapes))),
                              (AsVector, lc.ConstraintL0Pruning(kappa=_kappa(f, shapes)))],
           requires=("LowRank",), mu0=1e-3,
           description="additive: each matrix at 5% rank plus a sparse correction of a fraction of weights"),
]}
