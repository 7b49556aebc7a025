"""Additive combinations Δ(Θ) = Σ_k Δ_k(Θ_k) (Idelbayev & Carreira-Perpiñán, 2021)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .._errors import CompressionError
from ._base import State

__all__ = ["Additive"]


def _sq_dist(ws, deltas) -> float:
    return float(sum(((w - d) ** 2).sum() for w, d in zip(ws, deltas)))


@dataclass(frozen=True)
class Additive:
    """Solves min_{Θ_1…Θ_K} Σ_k λC_k(Θ_k) + μ/2 ‖w − Σ_k Δ_k(Θ_k)‖² by block-coordinate descent: each part in
    turn solves its own C step exactly on the residual w − Σ_{j≠k} Δ_j, for at most ``c_step_reps`` rounds or
    until a round lowers ‖w − ΣΔ_k‖² by less than ``tol`` relative. Warm-started from the previous LC step's
    parts. Each exact block step cannot increase the objective, so it decreases from round to round (for
    constraint forms, ‖w − ΣΔ_k‖² itself). A local optimum in general, not a global one.

    ``parts`` are :class:`lc._tasks.Viewed` pairs over the same tensors; storage is the sum of the parts."""

    parts: tuple
    c_step_reps: int = 10
    tol: float = 1e-6

    @property
    def shapes(self):
        return self.parts[0].shapes

    def check(self):
        if not (isinstance(self.c_step_reps, int) and self.c_step_reps >= 1):
            raise CompressionError(f"c_step_reps={self.c_step_reps!r} must be an integer ≥ 1")
        for p in self.parts:
            p.check()

    def compress(self, ws: Sequence[torch.Tensor], mu: float, previous: State | None = None) -> State:
        if previous is not None:
            states = list(previous.parts)
            deltas = [p.decompress(s) for p, s in zip(self.parts, states)]
        else:
            states = [None] * len(self.parts)
            deltas = [[torch.zeros_like(w) for w in ws] for _ in self.parts]
        before = math.inf
        for rounds in range(1, self.c_step_reps + 1):
            for k, part in enumerate(self.parts):
                others = [sum(deltas[j][t] for j in range(len(self.parts)) if j != k) for t in range(len(ws))]
                residual = [w - o for w, o in zip(ws, others)]      # w − Σ_{j≠k} Δ_j
                states[k] = part.compress(residual, mu, states[k])
                deltas[k] = part.decompress(states[k])
            after = _sq_dist(ws, self.decompress_parts(deltas))
            if before - after <= self.tol * before:
                break
            before = after
        return State(tensors={}, meta={"rounds": rounds}, bits=sum(s.bits for s in states), parts=tuple(states))

    @staticmethod
    def decompress_parts(deltas) -> list[torch.Tensor]:
        return [sum(ts) for ts in zip(*deltas)]

    def decompress(self, state: State) -> list[torch.Tensor]:
        return self.decompress_parts([p.decompress(s) for p, s in zip(self.parts, state.parts)])
