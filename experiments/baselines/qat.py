"""Quantization-aware training with a learned step size (LSQ), at the training budget of the LC run."""
from __future__ import annotations

import math

import torch
from torch import nn

import lc
from lc.compression.affine import grid

from .common import Budget, Job, Outcome, project
from .retrain import parametrized

__all__ = ["FakeQuant", "round_ste", "qat"]


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """⌊x⌉ forward, the identity backward (the straight-through estimator; Bengio et al., arXiv:1308.3432)."""
    return x + (torch.round(x) - x).detach()


def _scaled(x: torch.Tensor, g: float) -> torch.Tensor:
    """x forward, its gradient × g backward (LSQ's gradient scale)."""
    return (x - x * g).detach() + x * g


class FakeQuant(nn.Module):
    """W = S (q − Z), q = ⌊clamp(V/S + Z, 0, Q)⌉ with Q = 2^bits − 1: V's fake quantization on the affine grid,
    per tensor or per row (the first axis), with a learned scale S and zero point Z (rounded straight-through, so
    the grid stays an integer one). The gradients are LSQ's (Esser et al., ICLR 2020): the rounding of q passes
    ∂L/∂W to V inside the range and nothing outside; ∂W/∂S = q − Z − V/S inside, q − Z at a clipped value; S's
    and Z's gradients scaled by g = 1/√(N_row·Q)."""

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, bits: int, row_size: int):
        super().__init__()
        self.levels = 2 ** bits - 1
        self.scale = nn.Parameter(scale.detach().to(torch.float32).clone())
        self.zero = nn.Parameter(zero.detach().to(torch.float32).clone())
        self.g = 1 / math.sqrt(row_size * self.levels)

    def forward(self, v):
        x = v.reshape(self.scale.numel(), -1)
        s = _scaled(self.scale, self.g).clamp(min=1e-12)[:, None]
        z = round_ste(_scaled(self.zero, self.g).clamp(0, self.levels))[:, None]
        q = round_ste(torch.clamp(x / s + z, 0, self.levels))
        return (s * (q - z)).reshape(v.shape)


def qat(job: Job, bits: int) -> Outcome:
    """Quantization-aware training: min over V, S, Z of L(S(q(V) − Z)) (:class:`FakeQuant`), the weights on an
    affine grid of ``bits`` bits with a learned scale and zero point per tensor or per output channel (the
    family's view: ``AsVector`` per tensor, ``AsIs`` per channel), by straight-through fake quantization (Jacob et
    al., CVPR 2018; the learned step size of LSQ, Esser et al., ICLR 2020, and its learned offset, Bhalgat et al.,
    LSQ+, CVPR workshops 2020), trained by the task's L step for the LC run's number of L steps. V starts at w̄,
    (S, Z) at the grid of least squared error (the MSE-optimal post-training grid, ``lc.AffineQuantization``), a
    better start than LSQ's 2⟨|w|⟩/√Q. Activations stay float (weight-only, as every compression here). At the
    end the weights are the grid's values, stored as that ``lc.AffineQuantization`` state."""
    model = job.copy()
    tasks = job.family.tasks(model, bits)
    start = lc.Compressed.direct(model, tasks)
    forms = {}
    for task, state in zip(start.tasks, start.states):
        (name,) = task.param_names
        _, scale, zero = grid(state)
        forms[name] = FakeQuant(scale, zero, bits, model.get_parameter(name).numel() // scale.numel())
    budget = Budget(job)
    with parametrized(model, forms):
        for j in range(job.steps):
            budget(model, j)
    compressed, change, c_time = project(model, tasks)
    return budget.outcome(model, compressed, c_time, projection_change=change,
                          scales=[float(f.scale.detach().mean()) for f in forms.values()])
