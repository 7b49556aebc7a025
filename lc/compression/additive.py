"""Additive combinations Δ(Θ) = Σ_k Δ_k(Θ_k) (Idelbayev & Carreira-Perpiñán, 2021), e.g. low rank + sparse,
or pruning + quantization: ``compression_tasks[param]`` is a list of ``(View, Compression)`` pairs, or an
:class:`Additive` of them where the block-coordinate descent needs other settings than the defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .._errors import CompressionError
from ._base import State

__all__ = ["Additive", "AdditiveStep"]


@dataclass(frozen=True)
class Additive:
    """Δ = Σ_k Δ_k(Θ_k) over the tensors of one ``Param``, as the value of ``compression_tasks[param]``:

        lc.Additive([(lc.AsIs, lc.LowRank(5)), (lc.AsVector, lc.ConstraintL0Pruning(kappa=100))], c_step_reps=20)

    A plain list ``[(View, Compression), …]`` is the same with the defaults. ``parts`` are ``(View, Compression)``
    pairs (any number, each with its own view of the same tensors); ``c_step_reps`` is the largest number of
    block-coordinate rounds per C step and ``tol`` the relative decrease of ‖w − ΣΔ_k‖² below which a C step stops
    early (see :class:`AdditiveStep`). Storage is the sum of the parts'."""

    parts: Sequence
    c_step_reps: int = 10
    tol: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "parts", tuple(self.parts))

    def check(self) -> None:
        if isinstance(self.c_step_reps, bool) or not isinstance(self.c_step_reps, int) or self.c_step_reps < 1:
            raise CompressionError(f"Additive(c_step_reps={self.c_step_reps!r}): the number of block-coordinate "
                                   "rounds per C step must be an integer ≥ 1")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not 0 <= self.tol < math.inf:
            raise CompressionError(f"Additive(tol={self.tol!r}): the relative decrease that stops a C step early "
                                   "must be a finite number ≥ 0 (0: always run c_step_reps rounds)")


def _sq_dist(ws, deltas) -> float:
    return float(sum(((w - d) ** 2).sum() for w, d in zip(ws, deltas)))


@dataclass(frozen=True)
class AdditiveStep:
    """Solves min_{Θ_1…Θ_K} Σ_k λC_k(Θ_k) + μ/2 ‖w − Σ_k Δ_k(Θ_k)‖² by block-coordinate descent: each part in turn
    solves its own C step exactly on the residual w − Σ_{j≠k} Δ_j, for at most ``c_step_reps`` rounds, stopping
    early once a round lowers ‖w − ΣΔ_k‖² by at most ``tol`` relative. Warm-started from the previous LC step's
    parts (the first round starts from their Δ_k, and each part gets its own previous state). Each exact block
    step cannot increase the objective, so it never increases from round to round — for constraint forms (C_k an
    indicator) that is ‖w − ΣΔ_k‖² itself; penalty forms trade it against λC_k, and the stopping rule then stops at
    the first round that does not lower the distance. A local optimum in general, not a global one.
    O(c_step_reps · Σ_k cost of part k).

    ``parts`` are :class:`lc._tasks.Viewed` pairs over the same tensors; storage is the sum of the parts'. Built by
    ``lc.Algorithm`` from an :class:`Additive` (or a list of pairs); ``meta["rounds"]`` records the rounds run.
    """

    parts: tuple
    c_step_reps: int = 10
    tol: float = 1e-6
    coupling = None                    # solved alone (a part may not share a budget with other tasks)

    @property
    def shapes(self):
        return self.parts[0].shapes

    def check(self):
        for p in self.parts:
            p.check()
            if p.coupling is not None:
                raise CompressionError(f"{p.compression!r} shares {p.coupling!r} with other tasks and cannot be "
                                       "a part of an additive combination; give it its own weight (e.g. alpha)")

    def compress(self, ws: Sequence[torch.Tensor], mu: float, previous: State | None = None) -> State:
        K = len(self.parts)
        if previous is not None:
            states = list(previous.parts)
            deltas = [p.decompress(s) for p, s in zip(self.parts, states)]
        else:
            states = [None] * K
            deltas = [[torch.zeros_like(w) for w in ws] for _ in self.parts]
        before = _sq_dist(ws, self.decompress_parts(deltas))
        for rounds in range(1, self.c_step_reps + 1):
            for k, part in enumerate(self.parts):
                residual = [w - sum(deltas[j][t] for j in range(K) if j != k)       # w − Σ_{j≠k} Δ_j
                            for t, w in enumerate(ws)]
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
