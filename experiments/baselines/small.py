"""A smaller network of the same family trained from scratch at the same budget, with or without distillation from
the reference: the alternative to compressing at all. Sized to a compression ratio: its float32 parameters are
1/ratio of the reference's (or a little fewer)."""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

import lc

from .common import Budget, Job, Outcome

__all__ = ["narrow", "widths_for", "parameters", "small"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _LAYERS)]


def _resized(m: nn.Module, n_in: int, n_out: int) -> nn.Module:
    if isinstance(m, nn.Linear):
        return nn.Linear(n_in, n_out, bias=m.bias is not None)
    return type(m)(n_in, n_out, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                   groups=1, bias=m.bias is not None, padding_mode=m.padding_mode)


def narrow(model: nn.Module, widths: list[int]) -> nn.Module:
    """A fresh copy of ``model`` whose linear and convolutional layers, a chain in module order, have the output
    widths ``widths`` (one per layer but the last, whose output stays): each layer's input follows the previous
    layer's output (a flattened convolution's input in proportion). Newly initialised (seed torch before). Models
    that are not such a chain (residual additions, grouped convolutions, batch norm) are refused."""
    layers = _chain(model)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) or \
            any(getattr(m, "groups", 1) != 1 for _, m in layers):
        raise lc.CompressionError(f"narrow: {type(model).__name__} has batch norm or grouped convolutions; only "
                                  "a chain of linear and convolutional layers can be narrowed here")
    if len(widths) != len(layers) - 1:
        raise lc.CompressionError(f"narrow: give {len(layers) - 1} widths (every layer but the last), not "
                                  f"{len(widths)}")
    out = copy.deepcopy(model)
    previous = None                                              # (old output width, new output width)
    for i, (name, m) in enumerate(layers):
        old_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
        old_out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        if previous is not None and old_in % previous[0]:
            raise lc.CompressionError(f"narrow: {name}'s input ({old_in}) is not a multiple of the previous "
                                      f"layer's output ({previous[0]}): not a chain")
        n_in = old_in if previous is None else old_in // previous[0] * previous[1]
        n_out = old_out if i == len(layers) - 1 else int(widths[i])
        parent, _, attr = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, attr, _resized(m, n_in, n_out))
        previous = (old_out, n_out)
    return out


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def widths_for(model: nn.Module, ratio: float) -> list[int]:
    """The widths (every layer's but the last, all scaled by one factor c, rounded, at least 1) of the widest
    narrowed ``model`` with at most 1/ratio of its parameters (found by bisection on c)."""
    full = [m.out_features if isinstance(m, nn.Linear) else m.out_channels for _, m in _chain(model)][:-1]
    target = parameters(model) / ratio
    scaled = lambda c: [max(1, round(c * w)) for w in full]        # noqa: E731
    with torch.random.fork_rng():
        count = lambda c: parameters(narrow(model, scaled(c)))      # noqa: E731
        lo, hi = 0.0, 1.0
        if count(lo) > target:
            raise lc.CompressionError(f"narrow: even one unit per layer has more than 1/{ratio:g} of the "
                                      "parameters")
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if count(mid) <= target else (lo, mid)
    return scaled(lo)


def _distilling(job: Job, weight: float, temperature: float):
    """The task's L step with a distillation term from the reference (a classifier's ``distill``)."""
    config = getattr(job.task, "config", None)
    if config is None or not hasattr(config, "distill"):
        raise lc.CompressionError(f"small-kd needs an adapter whose L step can distil (tasks.classification's "
                                  f"distill); {type(job.task).__name__} has none — for the Q-network, whose L step "
                                  "already distils the reference, use small")
    task = type(job.task)(dataclasses.replace(config, distill=weight, temperature=temperature), data=job.task.data)
    return task.l_step(job.reference)


def small(job: Job, ratio: float, distill: float = 0.0, temperature: float = 4.0) -> Outcome:
    """A network of the reference's family with every hidden width scaled by one factor, sized to ``ratio``
    (:func:`widths_for`), trained from a fresh initialisation (seeded by the task's seed) by the task's L step for
    the LC run's number of L steps: min_w L(w) over the smaller network (the "smaller network" baseline of the
    compression literature, e.g. Guggilla et al. 2023's 32-32 and 16-16 Q-networks). With ``distill`` = β > 0,
    knowledge distillation (Hinton, Vinyals & Dean, arXiv:1503.02531, 2015): min_w (1 − β)·CE + β·T²·KL(p_ref^T ‖
    p_w^T) with the reference as the teacher at temperature T. Stored as the dense small network (lc.save with
    ``lc.Compressed.none()``): its size is its float32 parameters."""
    widths = widths_for(job.reference, ratio)
    model = narrow(job.reference, widths)
    l_step = _distilling(job, distill, temperature) if distill > 0 else None
    budget = Budget(job, l_step)
    for j in range(job.steps):
        budget(model, j)
    return budget.outcome(model, lc.Compressed.none(), 0.0, widths=widths, parameters=parameters(model))
