"""The task-adapter protocol: what a sweep driver (``experiments.sweep``) needs from a task to compress its reference
model with every scheme of a sweep under one L step, and the helpers every adapter shares.

An adapter fixes one task — data or environment, model, the reference's training, the L step's hyperparameters —
and offers:

==========================================  ==========================================================================
``name``, ``split``                         the task and the data its evaluation uses (rows' ``task``, ``split``)
``metric``, ``higher_is_better``            the key of ``evaluate``'s dict a sweep reports and plots, its direction
``seed``                                    seeds torch before each run (the row's ``seed``)
``fingerprint()``                           what results depend on (JSON): part of every run id and of config.json
``reference(cache_dir)``                    the reference model w̄, trained or loaded from a cache
``l_step(reference)``                       ``l_step_optimization(model, lc_penalty, step)`` for :class:`lc.Algorithm`
``evaluate(model)``                         ``{metric: value, …}`` of a model (``lc.Algorithm``'s evaluation too)
``compression_tasks(model, make, …)``       ``compression_tasks`` from a scheme (:func:`compression_tasks`)
``example_input(batch_size)``               an input batch of the model's shape (checkpoints, FLOPs, export)
``chance`` (optional)                       the metric's value from which a model is no better than chance: a sweep
                                            refuses a reference there (before any run) and flags runs that end there
                                            (the classifier: error ≥ 1 − 1/classes − 0.05)
``validate(model)`` (optional)              ``{metric: value, …}`` on held-out validation data, or None: a sweep's rows
                                            hold it as ``validation_<key>``; a search over budgets chooses on it
==========================================  ==========================================================================

:class:`tasks.classification.Classification` (image classifiers), :class:`tasks.qnetwork.QNetwork` (double-DQN
Q-networks) and :class:`tasks.custom.Custom` (your trained model, L step and evaluation) implement it; any object
with these members does (a ``typing.Protocol``: no base class needed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

import lc
from lc import CompressionError
from lc._hooks import forward_with_hooks

__all__ = ["Adapter", "LStepOptimization", "weight_names", "compression_tasks", "flops"]

LStepOptimization = Callable[[nn.Module, Any, int], None]
"""``l_step_optimization(model, lc_penalty, step)``: the user's training, minimising loss + ``lc_penalty()``."""

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@runtime_checkable
class Adapter(Protocol):
    """A task a sweep can compress: see the module's docstring for the table of members."""

    name: str                   # "digits/lenet300", "CartPole-v1": the rows' task column
    split: str                  # which data (split, episodes) ``evaluate`` uses: say it wherever numbers go
    metric: str                 # the key of evaluate()'s dict that is reported and plotted ("error", "return")
    higher_is_better: bool      # False for an error, True for a return
    seed: int                   # torch is seeded with it before each run

    def fingerprint(self) -> dict:
        """What the results depend on, as JSON-able values (not where data or caches live): a changed
        fingerprint makes other run ids, and a sweep refuses an output directory that holds another one."""

    def reference(self, cache_dir: str | Path | None = None) -> nn.Module:
        """The reference model w̄: loaded from ``cache_dir`` if it was trained before, else trained (and cached)."""

    def l_step(self, reference: nn.Module | None = None) -> LStepOptimization:
        """The L step for :class:`lc.Algorithm` (``reference``: the model returned by :meth:`reference`, for L
        steps that use it, e.g. as a distillation teacher). One fixed set of hyperparameters per task."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``{metric: value, …}`` of ``model`` on :attr:`split`; ``lc.Algorithm`` records it at every LC step and a
        sweep's rows hold every key as ``test_<key>`` (and ``reference_<metric>``)."""

    def compression_tasks(self, model: nn.Module, make: Callable[[list[torch.Size]], Any], *, joint: bool = False,
                          names: list[str] | None = None) -> dict:
        """``compression_tasks`` for ``model`` from a scheme, as :func:`compression_tasks` builds them."""

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """An input batch of ``batch_size`` for the model, on the model's device."""


# ---------------------------------------------------------------------------------------------- shared helpers
def weight_names(model: nn.Module) -> list[str]:
    """Names of the weights of every linear and convolutional layer (not biases, not batch norm), in module order.
    For the Q-networks' MLPs (Linear and ReLU only) these are exactly the parameters named ``*.weight``."""
    return [f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, _LAYERS)]


def compression_tasks(model: nn.Module, make: Callable[[list[torch.Size]], object], *, joint: bool = False,
                      names: list[str] | None = None) -> dict:
    """``compression_tasks`` for ``model``: ``make(shapes)`` gives the value — a ``(View, Compression)`` pair or a
    list of them — for a task over tensors of those shapes. ``joint=False``: every weight its own task (its own
    codebook, rank, budget); ``joint=True``: one task over all of them (one shared codebook or budget).
    ``names`` defaults to :func:`weight_names` (all linear and convolutional weights). Weights are named by string,
    so the result applies to any copy of ``model``."""
    names = names if names is not None else weight_names(model)
    if not names:
        raise CompressionError(f"{type(model).__name__} has no linear or convolutional weights to compress")
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise CompressionError(f"compression_tasks: the model has no parameters {missing}")
    if joint:
        return {lc.Param(list(names)): make([params[n].shape for n in names])}
    return {lc.Param(n): make([params[n].shape]) for n in names}


def flops(model: nn.Module, input_shape) -> int:
    """Multiply-adds of one forward pass through the linear and convolutional layers, as the current weights
    allow: each weight matrix W (m × n; a kernel as (out) × (in·k·k)) costs the cheaper of its nonzeros and of its
    rank-r factorisation r(m + n), times its output positions. Biases, batch norm and activations are not
    counted. On a dense full-rank model this is the usual dense count."""
    total = 0

    def count(name, mod, args, out):
        nonlocal total
        mat = mod.weight.detach().reshape(mod.weight.shape[0], -1)
        m, n = mat.shape
        rank = int(torch.linalg.matrix_rank(mat.float())) if mat.abs().sum() > 0 else 0
        per_position = min(int(torch.count_nonzero(mat)), rank * (m + n))
        positions = out[0].numel() // out.shape[1] if out.dim() > 2 else 1
        total += per_position * positions

    p = next(model.parameters())
    forward_with_hooks(model, torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype), count,
                       only=lambda m: isinstance(m, _LAYERS))
    return total
