"""Structured pruning: whole channels (filters, neurons) kept or removed, with the budget allocated across layers
exactly inside the C step.

The C step sees the task's tensors as one vector (``AsVector``) made of *rows* — a filter of a conv weight, a
neuron's row of a linear weight, one entry of a bias or of a batch norm's scale or shift —, and a *group* is a set
of rows removed together: every row producing one channel of the network (:mod:`lc.structure`, found from the model's
graph when ``lc.Algorithm`` builds a task viewed ``AsVector``: a filter, its bias, its batch norm, and the filters of
every layer added to it through residual connections). Viewed ``AsIs`` (or used on its own), each row of the matrix
is a group. With v_g = ‖w_g‖² and c_g the group's cost (``count`` 1, ``params`` its values, ``flops`` its
producers' multiply-adds per example):

- :class:`ChannelPruning`: max Σ_{g kept} v_g s.t. Σ_{g kept} c_g ≤ keep · Σ_g c_g — i.e. min ‖w − θ‖² over θ that
  zero whole groups within the budget —, a knapsack. Groups of equal cost form a class, the best m of a class are
  its m largest v_g, and a dynamic programme over the classes and the budget in units of u (the gcd of the costs)
  is exact: O(Σ_classes n_class · B/u) time, O(classes · B/u) memory. If B/u exceeds ``MAX_UNITS`` the costs are
  rounded up to coarser units: the budget still holds, the solution is then optimal for the rounded costs only
  (``meta["exact"]`` False). With ``allocation="uniform"`` the budget is not allocated across layers but fixed per
  *layer class* (the groups produced by the same layers: one layer's channels, or the channels a residual
  addition couples across layers): max Σ_{g kept} v_g s.t. class L keeps at most ⌊keep · n_L⌋ of its n_L groups —
  its ⌊keep · n_L⌋ largest v_g, O(N log N). The groups of a class share one cost, so the budget holds too.
  ``min_keep`` (global allocation) adds a floor: s.t. every layer class keeps at least ⌈min_keep · n_L⌉ of its groups
  (as Torch-Pruning's ``max_pruning_ratio`` = 1 − min_keep). Exact too: the groups of a class share one cost, so
  swapping a kept group for a larger one of its class keeps a solution feasible and no worse; an optimum therefore
  keeps every class's ⌈min_keep · n_L⌉ largest v_g (:func:`floor`), and the rest is the knapsack above on the other
  groups with what is left of the budget. Without a floor the exact allocation may leave a layer class one channel or
  none (a CIFAR ResNet's residual stream, which carries most of the multiply-adds: docs/structured.md).
- :class:`ChannelPenaltyL0`: min α Σ_{g kept} c_g + μ/2 ‖w − θ‖²: keep g iff μ/2 v_g > α c_g (hard threshold).
- :class:`ChannelPenaltyL21`: min α Σ_g c_g ‖θ_g‖ + μ/2 ‖w − θ‖²: θ_g = w_g · max(0, 1 − α c_g / (μ ‖w_g‖)) (group
  soft threshold; not a projection: kept groups shrink).

State: a bitmap of the rows kept (``uint:1``) and the values of the kept rows (``float``); ``meta["layout"]`` lists
each tensor's (values, rows), so decompressing needs no model.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import reduce

import numpy as np
import torch

from .._errors import CompressionError
from ._base import Compression, State
from ._constraints import Options, Real
from ._primitives import value_bits

__all__ = ["ChannelPruning", "ChannelPenaltyL0", "ChannelPenaltyL21", "knapsack", "uniform", "floor", "MAX_UNITS"]

COSTS = ("count", "params", "flops")
ALLOCATIONS = ("global", "uniform")
MAX_UNITS = 2_000_000


@dataclass(frozen=True)
class _Structure:
    """Rows of the flat input and their groups: ``layout`` (values, rows) per tensor; ``row_group`` the group of each
    row (−1: always kept); ``costs`` per group; ``classes`` the layer class of each group (groups produced by the same
    layers; None: one class)."""

    layout: tuple[tuple[int, int], ...]
    row_group: np.ndarray
    costs: np.ndarray
    classes: np.ndarray | None = None


def knapsack(values: np.ndarray, costs: np.ndarray, budget: int) -> tuple[np.ndarray, bool]:
    """The subset of items maximising Σ values with Σ costs ≤ budget (positive integer costs): a boolean mask, and
    whether it is exact (see the module docstring)."""
    keep = np.zeros(len(values), dtype=bool)
    if len(values) == 0 or budget <= 0:
        return keep, True
    classes = {}
    for i, c in enumerate(costs.tolist()):
        classes.setdefault(int(c), []).append(i)
    unit = reduce(math.gcd, classes)
    exact = budget // unit <= MAX_UNITS
    if not exact:
        unit = -(-budget // MAX_UNITS)
    steps = budget // unit
    order = {c: sorted(ix, key=lambda i: -values[i]) for c, ix in classes.items()}
    dp = np.full(steps + 1, -np.inf)
    dp[0] = 0.0
    choices = []
    for c, ix in order.items():
        units = -(-c // unit)                                    # rounded up: the budget holds either way
        prefix = np.concatenate([[0.0], np.cumsum(values[ix])])
        best, arg = dp.copy(), np.zeros(steps + 1, dtype=np.int32)
        for m in range(1, len(ix) + 1):
            shift = m * units
            if shift > steps:
                break
            candidate = np.full(steps + 1, -np.inf)
            candidate[shift:] = dp[:steps + 1 - shift] + prefix[m]
            better = candidate > best
            best[better], arg[better] = candidate[better], m
        dp = best
        choices.append((ix, units, arg))
    b = int(np.argmax(dp))
    for ix, units, arg in reversed(choices):
        m = int(arg[b])
        keep[ix[:m]] = True
        b -= m * units
    return keep, exact


def uniform(values: np.ndarray, classes: np.ndarray, keep: float) -> np.ndarray:
    """The subset of items maximising Σ values with at most ⌊keep · n_L⌋ items of each class L (n_L its items): the
    ⌊keep · n_L⌋ largest values of every class, a boolean mask."""
    mask = np.zeros(len(values), dtype=bool)
    for c in np.unique(classes):
        ix = np.flatnonzero(classes == c)
        m = math.floor(keep * len(ix) + 1e-9)
        mask[ix[np.argsort(-values[ix], kind="stable")[:m]]] = True
    return mask


def floor(values: np.ndarray, classes: np.ndarray, min_keep: float) -> np.ndarray:
    """The ⌈min_keep · n_L⌉ largest values of every class L (n_L its items): a boolean mask, the groups a floor of
    ``min_keep`` per class requires (and, when a class's items share one cost, that some optimum keeps)."""
    mask = np.zeros(len(values), dtype=bool)
    for c in np.unique(classes):
        ix = np.flatnonzero(classes == c)
        m = math.ceil(min_keep * len(ix) - 1e-9)
        mask[ix[np.argsort(-values[ix], kind="stable")[:m]]] = True
    return mask


class _Channels(Compression):
    """Shared: the structure (bound from the model, or the rows of the input matrix), the state, decompression."""

    constraints = {"cost": (Options(COSTS), "is what a group costs: 1, its values, or its multiply-adds")}

    def bind(self, context):
        """Through ``AsVector`` (as :func:`lc.channel_tasks` builds the task): a copy that knows the task's channel
        groups, from the model's graph (a missing example input, or a group whose rows are not all in the task, is a
        :class:`lc.CompressionError` there). Through ``AsIs``: the rows of that matrix are the groups (the neurons or
        filters of one layer, without the layers coupled to them)."""
        from ..params import AsVector
        if not isinstance(context.view, AsVector):
            return self
        bound = copy.copy(self)
        object.__setattr__(bound, "_bound", context.channel_structure(repr(self), self.cost))
        return bound

    def _structure(self, w: torch.Tensor | torch.Size) -> _Structure:
        bound = getattr(self, "_bound", None)
        if bound is not None:
            return bound
        shape = w.shape if isinstance(w, torch.Tensor) else torch.Size(w)
        numel = shape.numel()
        rows = shape[0] if len(shape) >= 2 else numel
        size = numel // max(rows, 1)
        cost = {"count": 1, "params": size, "flops": size}[self.cost]
        return _Structure(((numel, rows),), np.arange(rows), np.full(rows, cost, dtype=np.int64))

    def _groups(self, w, structure):
        """Per-row sizes, the row of each value, and v_g per group."""
        sizes = np.concatenate([np.full(r, n // r) for n, r in structure.layout]) if structure.layout else np.zeros(0)
        row_of = torch.repeat_interleave(torch.arange(len(sizes), device=w.device),
                                         torch.as_tensor(sizes, device=w.device))
        row_sq = torch.zeros(len(sizes), dtype=torch.float64, device=w.device).index_add_(
            0, row_of, w.detach().reshape(-1).to(torch.float64) ** 2)
        g = torch.as_tensor(structure.row_group, device=w.device)
        v = torch.zeros(len(structure.costs), dtype=torch.float64, device=w.device)
        v.index_add_(0, g.clamp(min=0), torch.where(g >= 0, row_sq, 0.0))
        return row_of, g, v

    def _state(self, w, structure, theta, kept_rows, row_of, **meta) -> State:
        flat = theta.reshape(-1)
        mask = kept_rows[row_of]
        values = flat[mask]
        return State({"values": values.clone(), "rows": kept_rows.to(torch.uint8)},
                     {"shape": list(w.shape), "layout": [list(x) for x in structure.layout],
                      "encoding": {"values": "float", "rows": "uint:1"}, **meta},
                     bits=int(kept_rows.numel()) + values.numel() * value_bits(w.dtype))

    def _compress(self, w, kept_groups: torch.Tensor, structure, row_of, g, scale=None, **meta) -> State:
        kept_rows = torch.where(g >= 0, kept_groups[g.clamp(min=0)], torch.ones_like(g, dtype=torch.bool))
        theta = w.reshape(-1) * kept_rows[row_of].to(w.dtype)
        if scale is not None:                                         # group soft threshold
            theta = theta * torch.where(g >= 0, scale[g.clamp(min=0)], 1.0)[row_of].to(w.dtype)
        return self._state(w, structure, theta, kept_rows, row_of, groups_kept=int(kept_groups.sum()),
                           groups=int(kept_groups.numel()), **meta)

    def decompress(self, state):
        layout = state.meta["layout"]
        sizes = np.concatenate([np.full(r, n // r) for n, r in layout]) if layout else np.zeros(0)
        rows = state.tensors["rows"].to(torch.bool)
        values = state.tensors["values"]
        mask = torch.repeat_interleave(rows, torch.as_tensor(sizes, device=rows.device))
        out = values.new_zeros(mask.numel())
        out[mask] = values
        return out.reshape(state.meta["shape"])


@dataclass(frozen=True)
class ChannelPruning(_Channels):
    """Solves max Σ_{g kept} ‖w_g‖² s.t. Σ_{g kept} c_g ≤ keep · Σ_g c_g over the channel groups: the exact knapsack of
    this module's docstring (whole channels kept or zeroed; the budget allocated across layers by the solution).
    ``allocation="uniform"``: s.t. each layer class keeps at most ⌊keep · n_L⌋ of its n_L groups instead (the same
    fraction of every layer; the largest ‖w_g‖² of each class), the baseline the global allocation is measured
    against. ``min_keep``: with the global allocation, s.t. every layer class also keeps at least ⌈min_keep · n_L⌉
    of its n_L groups (a floor; exact, see the module docstring)."""

    keep: float
    cost: str = "flops"
    allocation: str = "global"
    min_keep: float = 0.0
    _bound: object = field(default=None, init=False, repr=False, compare=False)
    constraints = {"keep": (Real(0, 1), "is the fraction of the groups' total cost that may be kept"),
                   **_Channels.constraints,
                   "allocation": (Options(ALLOCATIONS), "is how the budget is shared among layers: by the exact "
                                                        "knapsack (global), or the same fraction per layer class"),
                   "min_keep": (Real(0, 1), "is the fraction of every layer class's channels always kept")}

    def check(self, shape):
        super().check(shape)
        if self.min_keep == 0:
            return
        if self.allocation == "uniform":
            raise CompressionError(f"ChannelPruning(min_keep={self.min_keep}) is a floor for the global allocation; "
                                   "the uniform one keeps `keep` of every layer class already: drop min_keep, or "
                                   "use allocation='global'")
        structure = self._structure(shape)
        classes = self._classes(structure)
        required = floor(np.ones(len(structure.costs)), classes, float(self.min_keep))
        need, budget = int(structure.costs[required].sum()), self._budget(structure)
        if need > budget:
            raise CompressionError(f"ChannelPruning(keep={self.keep}, min_keep={self.min_keep}): keeping "
                                   f"{self.min_keep:g} of every layer's channels costs {need} of the "
                                   f"{int(structure.costs.sum())} ({self.cost}), more than the budget {budget}: lower "
                                   "min_keep or raise keep")

    def _budget(self, structure) -> int:
        return math.floor(float(self.keep) * int(structure.costs.sum()) + 1e-9)

    @staticmethod
    def _classes(structure) -> np.ndarray:
        return structure.classes if structure.classes is not None else np.zeros(len(structure.costs), int)

    def compress(self, w, mu, previous=None):
        structure = self._structure(w)
        row_of, g, v = self._groups(w, structure)
        budget = self._budget(structure)
        values = v.cpu().numpy()
        if self.allocation == "uniform":
            keep, exact = uniform(values, self._classes(structure), float(self.keep)), True
        elif self.min_keep > 0:
            required = floor(values, self._classes(structure), float(self.min_keep))
            rest = np.flatnonzero(~required)
            more, exact = knapsack(values[rest], structure.costs[rest],
                                   budget - int(structure.costs[required].sum()))
            keep = required.copy()
            keep[rest[more]] = True
        else:
            keep, exact = knapsack(values, structure.costs, budget)
        kept = torch.as_tensor(keep, device=w.device)
        return self._compress(w, kept, structure, row_of, g, exact=exact,
                              cost_kept=int(structure.costs[keep].sum()), cost_total=int(structure.costs.sum()))


@dataclass(frozen=True)
class ChannelPenaltyL0(_Channels):
    """Solves min α Σ_{g kept} c_g + μ/2 ‖w − θ‖² over whole groups kept or zeroed: keep g iff μ/2 ‖w_g‖² > α c_g
    (a hard threshold per group; μ = 0: the limit μ → 0⁺, nothing kept unless α = 0). O(N)."""

    alpha: float
    cost: str = "flops"
    _bound: object = field(default=None, init=False, repr=False, compare=False)
    constraints = {"alpha": (Real(0), "weighs the kept groups' cost against the loss"), **_Channels.constraints}

    def compress(self, w, mu, previous=None):
        structure = self._structure(w)
        row_of, g, v = self._groups(w, structure)
        c = torch.as_tensor(structure.costs, dtype=torch.float64, device=w.device)
        kept = mu / 2 * v > float(self.alpha) * c if (mu > 0 or self.alpha == 0) else torch.zeros_like(v, dtype=bool)
        if self.alpha == 0:
            kept = torch.ones_like(kept)
        return self._compress(w, kept, structure, row_of, g)


@dataclass(frozen=True)
class ChannelPenaltyL21(_Channels):
    """Solves min α Σ_g c_g ‖θ_g‖ + μ/2 ‖w − θ‖²: the group soft threshold θ_g = w_g · max(0, 1 − α c_g/(μ ‖w_g‖)) (the
    ℓ2,1 / group-lasso proximal step; μ = 0: the limit, all zero unless α = 0). O(N). Not a projection: kept groups
    shrink."""

    alpha: float
    cost: str = "count"
    _bound: object = field(default=None, init=False, repr=False, compare=False)
    constraints = {"alpha": (Real(0), "weighs the groups' norms against the loss"), **_Channels.constraints}

    def compress(self, w, mu, previous=None):
        structure = self._structure(w)
        row_of, g, v = self._groups(w, structure)
        c = torch.as_tensor(structure.costs, dtype=torch.float64, device=w.device)
        if self.alpha == 0:
            scale = torch.ones_like(v)
        elif mu == 0:
            scale = torch.zeros_like(v)
        else:
            scale = torch.clamp(1 - float(self.alpha) * c / (mu * v.sqrt().clamp(min=1e-300)), min=0)
        return self._compress(w, scale > 0, structure, row_of, g, scale=scale)
