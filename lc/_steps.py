"""Task-level C steps: the one interface the loop, storage and export see.

A task compresses a list of tensors (one ``lc.Param``). Its :class:`Step` solves

    Θ = argmin_Θ α C(Θ) + μ/2 ‖w − Δ(Θ)‖²        (w: the task's tensors, as the loop gives them: w − λ/μ)

and maps Θ back to the tensors. Three kinds, all Steps:

- :class:`Viewed`: one compression through a view (``(AsVector, ConstraintL0Pruning(kappa=…))``);
- :class:`AdditiveStep`: Δ = Σ_k Δ_k(Θ_k), block-coordinate descent over Viewed parts;
- a coupled group: Viewed steps whose compressions share a :class:`lc.compression.Coupling` (one ``lc.RankBudget``
  for several layers) are solved together by :func:`solve`, which hands the coupling their compressions and the
  tensors their views give.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import torch

from ._codec import CONTEXT, Registered
from ._errors import CompressionError
from .compression._base import Compression, Coupling, State
from .compression._constraints import Integer, Real, validate
from .params import View

__all__ = ["Step", "Viewed", "Additive", "AdditiveStep", "solve", "check_couplings"]


class Step(Registered):
    """The C step of one task, over the list of its tensors (``shapes``).

    - ``check()`` raises :class:`lc.CompressionError` if the step cannot apply to tensors of ``shapes``;
    - ``compress(ws, mu, previous)`` returns Θ as an :class:`lc.State` for the tensors ``ws``, warm-started from
      ``previous``;
    - ``decompress(state)`` returns Δ(Θ): one tensor per task tensor, with its shape, dtype and device;
    - ``single()`` returns ``(view, compression)`` if the step is exactly one compression through a view (what
      export handlers and couplings act on), else None;
    - ``coupling``: the :class:`lc.compression.Coupling` shared with other tasks' steps, or None. A coupled step
      is a single compression; :func:`solve` solves every step of a coupling together.
    """

    coupling = None

    def check(self) -> None:  # noqa: B027 - optional hook
        pass

    def compress(self, ws: Sequence[torch.Tensor], mu: float, previous: State | None = None) -> State:
        raise NotImplementedError

    def decompress(self, state: State) -> list[torch.Tensor]:
        raise NotImplementedError

    def single(self) -> tuple[View, Compression] | None:
        return None


@dataclass(frozen=True)
class Viewed(Step):
    """One compression of a task's tensors through a view: the compression sees ``view.flatten(ws)``."""

    view: View
    compression: Compression
    shapes: tuple = field(default=(), metadata={CONTEXT: True})

    def check(self):
        self.view.check(self.shapes)
        self.compression.check(self.view.shape(self.shapes))

    def inputs(self, ws: Sequence[torch.Tensor]) -> torch.Tensor:
        """What the compression sees of the task's tensors."""
        return self.view.flatten(ws)

    def compress(self, ws, mu, previous=None):
        return self.compression.compress(self.inputs(ws), mu, previous)

    def decompress(self, state):
        return self.view.unflatten(self.compression.decompress(state), self.shapes)

    def single(self):
        return self.view, self.compression

    @property
    def coupling(self):
        return self.compression.coupling


@dataclass(frozen=True)
class Additive:
    """Δ = Σ_k Δ_k(Θ_k) over the tensors of one ``Param``, as the value of ``compression_tasks[param]``:

        lc.Additive([(lc.AsIs, lc.LowRank(5)), (lc.AsVector, lc.ConstraintL0Pruning(kappa=100))], c_step_reps=20)

    A plain list ``[(View, Compression), …]`` is the same with the defaults. ``parts`` are ``(View, Compression)``
    pairs (any number, each with its own view of the same tensors); ``c_step_reps`` is the largest number of
    block-coordinate rounds per C step and ``tol`` the relative decrease of ‖w − ΣΔ_k‖² below which a C step stops
    early (see :class:`AdditiveStep`). Storage is the sum of the parts'. (Idelbayev & Carreira-Perpiñán, 2021.)"""

    parts: Sequence
    c_step_reps: int = 10
    tol: float = 1e-6
    constraints: ClassVar = {"c_step_reps": (Integer(1, None), "is the most block-coordinate rounds per C step"),
                             "tol": (Real(0, None), "is the relative decrease below which a C step stops early "
                                                    "(0: always run c_step_reps rounds)")}

    def __post_init__(self):
        object.__setattr__(self, "parts", tuple(self.parts))

    def check(self) -> None:
        validate(self, self.constraints)


def _sq_dist(ws, deltas) -> float:
    return float(sum(((w - d) ** 2).sum() for w, d in zip(ws, deltas)))


def _sum_parts(deltas) -> list[torch.Tensor]:
    return [sum(ts) for ts in zip(*deltas)]


@dataclass(frozen=True)
class AdditiveStep(Step):
    """Solves min_{Θ_1…Θ_K} Σ_k α_k C_k(Θ_k) + μ/2 ‖w − Σ_k Δ_k(Θ_k)‖² by block-coordinate descent: each part in
    turn solves its own C step exactly on the residual w − Σ_{j≠k} Δ_j, for at most ``c_step_reps`` rounds,
    stopping early once a round lowers ‖w − ΣΔ_k‖² by at most ``tol`` relative. Warm-started from the previous LC
    step's parts (the first round starts from their Δ_k, and each part gets its own previous state). Each exact
    block step cannot increase the objective, so it never increases from round to round — for constraint forms
    (C_k an indicator) that is ‖w − ΣΔ_k‖² itself; penalty forms trade it against α_k C_k, and the stopping rule
    then stops at the first round that does not lower the distance. A local optimum in general, not a global one.
    O(c_step_reps · Σ_k cost of part k).

    ``parts`` are :class:`Viewed` steps over the same tensors; the state holds one part state each
    (``state.parts``), its bits are their sum, and ``meta["rounds"]`` records the rounds run."""

    parts: tuple
    c_step_reps: int = 10
    tol: float = 1e-6

    @property
    def shapes(self):
        return self.parts[0].shapes

    def check(self):
        for p in self.parts:
            p.check()
            if p.coupling is not None:
                raise CompressionError(f"{p.compression!r} shares {p.coupling!r} with other tasks and cannot be "
                                       "a part of an additive combination; give it its own weight (e.g. alpha)")

    def compress(self, ws, mu, previous=None):
        K = len(self.parts)
        if previous is not None:
            states = list(previous.parts)
            deltas = [p.decompress(s) for p, s in zip(self.parts, states)]
        else:
            states = [None] * K
            deltas = [[torch.zeros_like(w) for w in ws] for _ in self.parts]
        before = _sq_dist(ws, _sum_parts(deltas))
        for rounds in range(1, self.c_step_reps + 1):
            for k, part in enumerate(self.parts):
                residual = [w - sum(deltas[j][t] for j in range(K) if j != k)       # w − Σ_{j≠k} Δ_j
                            for t, w in enumerate(ws)]
                states[k] = part.compress(residual, mu, states[k])
                deltas[k] = part.decompress(states[k])
            after = _sq_dist(ws, _sum_parts(deltas))
            if before - after <= self.tol * before:
                break
            before = after
        return State(tensors={}, meta={"rounds": rounds}, bits=sum(s.bits for s in states), parts=tuple(states))

    def decompress(self, state):
        return _sum_parts([p.decompress(s) for p, s in zip(self.parts, state.parts)])


def _groups(steps: Sequence[Step]) -> dict[int, tuple[Coupling, list[int]]]:
    """{id(coupling): (coupling, [indices of the steps that share it])}."""
    groups: dict[int, tuple] = {}
    for i, step in enumerate(steps):
        if step.coupling is not None:
            groups.setdefault(id(step.coupling), (step.coupling, []))[1].append(i)
    return groups


def check_couplings(steps: Sequence[Step]) -> None:
    """Each coupling checks the compressions of the steps that share it (e.g. one criterion per budget)."""
    for coupling, group in _groups(steps).values():
        coupling.check([steps[i].single()[1] for i in group])


def solve(steps: Sequence[Step], ws: Sequence[Sequence[torch.Tensor]], mu: float,
          previous: Sequence[State | None]) -> list[State]:
    """Θ ← Π(w − λ/μ) for every task, given ``ws[i]`` = w − λ/μ of task i: each step alone, except the steps that
    share a coupling, which their coupling solves together. ``ws[i]`` and ``previous[i]`` are read once per task, in
    order, so lazy sequences hold one task's tensors at a time (those of a coupling together) and may drop each
    previous state once it is read."""
    states = [steps[i].compress(ws[i], mu, previous[i]) if steps[i].coupling is None else None
              for i in range(len(steps))]
    for coupling, group in _groups(steps).values():
        joint = coupling.compress([steps[i].single()[1] for i in group],
                                  [steps[i].inputs(ws[i]) for i in group], mu, [previous[i] for i in group])
        for i, state in zip(group, joint):
            states[i] = state
    return states
