"""Low-rank C steps: a fixed target rank (Eckart–Young), and the rank chosen automatically under a storage or
FLOPs cost (Idelbayev & Carreira-Perpiñán, "Low-rank compression of neural nets: learning the rank of each
layer", CVPR 2020), with a weight α per layer or one global budget shared by several layers.

The C step sees a matrix w (m×n; ``AsIs`` gives one, reshaping conv kernels by its scheme). A rank-r Δ = U V
(U: m×r, V: r×n, the singular values split evenly between them) is stored as its two factors, b·r(m + n) bits
with b the width of w's dtype (``"float"``: 32 for float32), unless that is no smaller than the matrix itself
(r(m + n) ≥ mn): then it is stored dense, b·mn bits.
``meta["form"]`` says which (``"factors"``: tensors ``U``, ``V``; ``"dense"``: tensor ``dense``), ``meta["rank"]``
the rank.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from .._errors import CompressionError
from ._base import Compression, Coupling, State
from ._constraints import Bound, InstanceOf, Integer, Options, OrNone, Real, validate
from ._primitives import value_bits

__all__ = ["LowRank", "RankSelection", "RankBudget", "factors"]

CRITERIA = ("storage", "flops")
USEFUL_RANK = Bound(lambda shape: min(shape) - 1, "the largest useful rank (rank min(m, n) is the whole matrix)")


def _check_matrix(obj, shape) -> None:
    if len(shape) != 2:
        raise CompressionError(f"{obj!r} needs a matrix, but its view gives a tensor of shape {tuple(shape)}: use "
                               "the view lc.AsIs on a weight matrix or a convolution kernel (AsIs(scheme=1) or "
                               "AsIs(scheme=2)), not AsVector and not a bias vector")


def _svd(w: torch.Tensor):
    """Thin SVD w = U diag(S) Vh on w's device, in w's precision (float32 for half types)."""
    work = w if w.dtype in (torch.float32, torch.float64) else w.float()
    return torch.linalg.svd(work, full_matrices=False)


def _dense_is_cheaper(r: int, m: int, n: int) -> bool:
    return r * (m + n) >= m * n


def _state(w: torch.Tensor, svd, r: int, **meta) -> State:
    """The state of the rank-r truncation of w, stored as factors or dense, whichever is smaller."""
    U, S, Vh = svd
    m, n = w.shape
    meta = {"rank": r, "shape": [m, n], **meta}
    if _dense_is_cheaper(r, m, n):
        dense = w.clone() if r >= min(m, n) else ((U[:, :r] * S[:r]) @ Vh[:r]).to(w.dtype)
        return State({"dense": dense}, {**meta, "form": "dense", "encoding": {"dense": "float"}},
                     value_bits(w.dtype) * m * n)
    root = S[:r].sqrt()                                        # Δ = (U √S)(√S Vh): balanced factors
    # row-major, as lc.load reads them back: LAPACK's U is column-major, and U V on another layout takes another
    # BLAS path, which may round differently (Δ of a float64 model 1 ulp off its artifact's)
    U, V = (U[:, :r] * root).to(w.dtype).contiguous(), (root[:, None] * Vh[:r]).to(w.dtype).contiguous()
    return State({"U": U, "V": V},
                 {**meta, "form": "factors", "encoding": {"U": "float", "V": "float"}},
                 value_bits(w.dtype) * r * (m + n))


def factors(state: State) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(U, V) with Δ = U V if the state stores the factors, None if it stores the dense matrix."""
    return (state.tensors["U"], state.tensors["V"]) if state.meta.get("form") == "factors" else None


class _LowRankState(Compression):
    def decompress(self, state: State) -> torch.Tensor:
        if state.meta["form"] == "dense":
            return state.tensors["dense"]
        return state.tensors["U"] @ state.tensors["V"]


@dataclass(frozen=True)
class LowRank(_LowRankState):
    """Solves min_Δ ‖w − Δ‖² s.t. rank(Δ) ≤ r: the truncated SVD, keeping the r largest singular triplets
    (Eckart & Young, 1936). One thin SVD on w's device, O(mn·min(m, n)); no warm start is needed."""

    target_rank: int
    constraints = {"target_rank": (Integer(1, USEFUL_RANK), "is the largest rank of Δ")}

    def check(self, shape):
        _check_matrix(self, shape)
        m, n = shape
        if min(m, n) <= 1:
            raise CompressionError(f"{self!r} on a {m}×{n} matrix: its rank is at most {min(m, n)}, so low rank "
                                   "cannot compress it; leave this tensor out or use another compression")
        super().check(shape)

    def compress(self, w, mu, previous=None):
        return _state(w, _svd(w), int(self.target_rank))


@dataclass(frozen=True)
class RankSelection(_LowRankState):
    """Solves min_{r,Δ} α·C(r) + μ/2 ‖w − Δ‖² s.t. rank(Δ) ≤ r, that is min_r α·C(r) + μ/2 Σ_{i>r} σ_i² with Δ the
    rank-r truncated SVD, exactly: every r is evaluated from one SVD (Idelbayev & Carreira-Perpiñán, CVPR 2020).
    O(mn·min(m, n)) for the SVD, O(min(m, n)) for the choice.

    - ``criterion="storage"``: C(r) = r(m + n), the number of stored values;
    - ``criterion="flops"``: C(r) = r(m + n)·P, the multiply-adds of the factorised layer, P its output positions
      per example (1 for a Linear layer, H_out·W_out for a Conv2d), which ``lc.Algorithm`` finds from one forward
      pass on its ``example_input`` (see :meth:`bind`).

    A rank whose factors cost at least the dense matrix (r(m + n) ≥ mn) is never chosen: the dense matrix, with
    cost mn (times P) and no error, is the last option of the enumeration. ``meta["rank"]`` records the choice.

    Give ``alpha`` (the weight of the cost against the loss), or ``budget``, an :class:`RankBudget` shared with
    other layers that finds α at every C step so that their total cost meets a target.
    """

    alpha: float | None = None
    criterion: str = "storage"
    budget: "RankBudget | None" = None
    # the layer's output positions per example, set by bind() for criterion="flops"; not a hyperparameter
    _positions: int | None = field(default=None, init=False, repr=False, compare=False)

    constraints = {"alpha": (OrNone(Real(0)), "weighs the rank cost against the loss"),
                   "criterion": (Options(CRITERIA), "is the cost C(r): stored values or multiply-adds"),
                   "budget": (OrNone(InstanceOf(lambda: RankBudget, "an lc.RankBudget(ratio=...)")),
                              "is a target for the total cost of the layers that share it")}

    @property
    def coupling(self):
        return self.budget

    def check(self, shape):
        super().check(shape)
        if (self.alpha is None) == (self.budget is None):
            raise CompressionError(f"{self!r}: give exactly one of alpha (a weight of the cost, e.g. "
                                   "RankSelection(alpha=1e-6)) or budget (an lc.RankBudget shared by several layers)")
        _check_matrix(self, shape)

    def bind(self, context):
        """For ``criterion="flops"``: a copy that knows its layer's output positions per example (from the task's
        context; a missing ``example_input`` is a :class:`lc.CompressionError` there). Otherwise ``self``."""
        if self.criterion != "flops":
            return self
        bound = copy.copy(self)
        object.__setattr__(bound, "_positions", context.output_positions(repr(self)))
        return bound

    def costs(self, shape) -> tuple[float, float]:
        """(cost of one rank, cost of the dense matrix) under the criterion: (m + n, mn), times P for FLOPs."""
        m, n = shape
        if self.criterion == "storage":
            return float(m + n), float(m * n)
        if self._positions is None:
            raise CompressionError(f"{self!r} needs its layer's output size: use it through lc.Algorithm(..., "
                                   "example_input=x), which finds it from one forward pass")
        return float((m + n) * self._positions), float(m * n * self._positions)

    def options(self, S: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every choice worth considering, in increasing cost: ranks 0, 1, … while r(m + n) < mn, then the dense
        matrix (rank min(m, n)). Returns (ranks, costs C, squared errors Σ_{i>r} σ_i²), costs and errors float64."""
        m, n = shape
        per_rank, dense = self.costs(shape)
        s2 = S.double() ** 2
        tail = torch.cat([s2.flip(0).cumsum(0).flip(0), s2.new_zeros(1)])      # tail[r] = Σ_{i>r} σ_i²
        useful = -(-m * n // (m + n))                       # the count of ranks r ≥ 0 with r(m + n) < mn
        ranks = torch.cat([torch.arange(useful, device=S.device), torch.tensor([min(m, n)], device=S.device)])
        costs = torch.cat([torch.arange(useful, device=S.device, dtype=torch.float64) * per_rank,
                           torch.tensor([dense], device=S.device, dtype=torch.float64)])
        errors = torch.cat([tail[:useful], s2.new_zeros(1)])
        return ranks, costs, errors

    @staticmethod
    def choose(costs: torch.Tensor, errors: torch.Tensor, alpha: float, mu: float) -> int:
        """The index of argmin α·C + μ/2·error (the cheapest one on ties). μ = 0 is the limit μ → 0⁺: the least
        error among the choices of least α·C (rank 0 for α > 0; the dense matrix for α = 0)."""
        if mu == 0:
            objective = alpha * costs
            return int(torch.argmin(torch.where(objective == objective.min(), errors, torch.inf)))
        return int(torch.argmin(alpha * costs + mu / 2 * errors))

    def compress(self, w, mu, previous=None):
        if self.budget is not None:
            return self.budget.compress([self], [w], mu, [previous])[0]
        svd = _svd(w)
        ranks, costs, errors = self.options(svd[1], w.shape)
        alpha = float(self.alpha)
        return _state(w, svd, int(ranks[self.choose(costs, errors, alpha, mu)]), alpha=alpha)


@dataclass(frozen=True, eq=False)
class RankBudget(Coupling):
    """A target for the total cost of the :class:`RankSelection` layers that share this object:
    Σ_layers C(r_layer) ≤ Σ_layers C_dense / ``ratio``. Under ``criterion="storage"`` ``ratio`` is the compression
    ratio of those layers' weight matrices; under ``"flops"`` their FLOPs reduction (a FLOPs fraction f is
    ``ratio=1/f``). All layers sharing a budget use the same criterion.

    At every C step the layers are compressed together: one SVD each, then bisection on α over the values where
    some layer's choice changes (the breakpoints of each layer's lower convex hull of (C(r), Σ_{i>r} σ_i²)), which
    finds the smallest α whose choices meet the target. Every layer then solves its own RankSelection problem
    exactly with that common α, so Σ_layers μ/2 ‖w − Δ‖² is minimal among all rank choices of that cost.
    One SVD per layer, then O(R log R) for the search, R the number of rank options of all the layers.

    Tolerance: the total cost is at most the target, and larger than the target minus the cost change at the α
    found: one rank of one layer ((m + n)·P) where that layer's path visits every rank, or a jump to or from its
    dense matrix. No other α gets closer from below. ``meta`` records ``alpha`` and ``budget_fraction``
    (total cost / total dense cost of the group; the target is 1/ratio). Objects compare by identity: layers
    share a budget by sharing the object.
    """

    ratio: float
    constraints = {"ratio": (Real(1), "is the target (dense cost)/(compressed cost) of the layers that share "
                                      "the budget")}

    def check(self, compressions) -> None:
        validate(self, self.constraints)
        criteria = sorted({c.criterion for c in compressions})
        if len(criteria) > 1:
            raise CompressionError(f"{self!r} is shared by RankSelection layers with criteria {criteria}; layers "
                                   "that share a budget must count the same cost (give them one criterion)")

    def compress(self, compressions, ws, mu, previous=None) -> list[State]:
        """Θ for every layer of the group: the RankSelection solutions with the smallest α that meets the target.
        A budget is a constraint: μ scales the objective without changing its solution (μ = 0 is taken as 1)."""
        mu = mu if mu > 0 else 1.0
        svds = [_svd(w) for w in ws]
        paths = [c.options(svd[1], w.shape) for c, w, svd in zip(compressions, ws, svds)]
        dense = sum(float(costs[-1]) for _, costs, _ in paths)
        target = dense / self.ratio

        def total(alpha):
            return sum(float(costs[RankSelection.choose(costs, errors, alpha, mu)]) for _, costs, errors in paths)

        alphas = _representatives(sorted({b for _, c, e in paths for b in _breakpoints(c, e, mu)}))
        lo, hi = 0, len(alphas) - 1                  # total(alphas[hi]) = 0 ≤ target; total is nonincreasing
        while lo < hi:                               # smallest index whose total meets the target
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if total(alphas[mid]) <= target else (mid + 1, hi)
        alpha = alphas[lo]
        fraction = total(alpha) / dense if dense > 0 else 0.0
        return [_state(w, svd, int(ranks[RankSelection.choose(costs, errors, alpha, mu)]), alpha=alpha,
                       budget_fraction=fraction)
                for w, svd, (ranks, costs, errors) in zip(ws, svds, paths)]


def _breakpoints(costs: torch.Tensor, errors: torch.Tensor, mu: float) -> list[float]:
    """The α ≥ 0 where argmin α·C + μ/2·error changes: slopes between consecutive vertices of the lower convex
    hull of the points (C, μ/2·error), which come sorted by increasing C (monotone chain)."""
    pts = list(zip(costs.tolist(), (errors * (mu / 2)).tolist()))
    hull = []
    for p in pts:
        while len(hull) >= 2 and ((hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1])
                                  - (hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0])) <= 0:
            hull.pop()
        hull.append(p)
    return [(a[1] - b[1]) / (b[0] - a[0]) for a, b in zip(hull, hull[1:])]


def _representatives(breaks: list[float]) -> list[float]:
    """One α inside each interval between consecutive breakpoints (and past the last one), increasing: every α of
    an interval gives the same choices, and a representative strictly inside it avoids ties."""
    if not breaks:
        return [1.0]
    reps = [breaks[0] / 2] if breaks[0] > 0 else []
    reps += [math.sqrt(a * b) if a > 0 else b / 2 for a, b in zip(breaks, breaks[1:])]
    return reps + [2 * breaks[-1] if breaks[-1] > 0 else 1.0]
