"""Pruning and quantization in one C step: at most κ nonzero weights, their values from a learned codebook.

Deep Compression (Han et al. 2016) prunes, then quantizes what is left, each step greedy given the other. Here the
C step solves both at once, exactly:

    min_θ ‖w − θ‖²   s.t.   ‖θ‖₀ ≤ κ,   θ_i ∈ {0} ∪ {c_1, …, c_k} for learned c ∈ ℝᵏ.

Why a dynamic programme solves it. Fix the centres {0, c_1, …, c_k}. For values x < y assigned to centres a > b,
swapping the two assignments does not increase the cost ((x − a)² + (y − b)² ≥ (x − b)² + (y − a)², the squared
error is Monge) and leaves every centre with as many values as before, so the cardinality constraint still holds.
Hence some optimal solution assigns **contiguous runs of the sorted values**, and each nonzero centre is the mean
of its run. Over the sorted values x_1 ≤ … ≤ x_N an optimum is therefore: the first i values cut into a runs (each
costing its squared deviation about its mean), a zero run x_i … x_{j−1} (costing Σ x²), the values from j on cut
into b runs, with a + b ≤ k and j − i ≥ N − κ (at most κ nonzeros). Let L_a(i) be the optimal cost of the first i
values in exactly a nonempty runs (L_0(0) = 0, L_0(i > 0) = inf; one divide-and-conquer layer of the exact 1-D
k-means programme of :mod:`._kmeans1d` per a), R_b(j) the same for the values from j on (the programme run on the
reversed, negated values), L≤a = min_{a' ≤ a} L_a' ("at most a runs"), and S(i) = Σ_{t<i} x_t². Then

    cost = min_{a ≤ k} min_{j − i ≥ N − κ} [L≤a(i) − S(i)] + [S(j) + R≤(k−a)(j)],

a suffix minimum over j for each a; the argmins give back the runs. The run costs use values centred on their mean
(as in :mod:`._kmeans1d`: less cancellation, and a run's cost does not change with a shift); the zero run's Σ x²
does change, so S is summed from the uncentred values. Since the zero run holds at least N − κ values, the nonzero
runs lie among the κ smallest and the κ largest values: only those are sorted (``topk``) and programmed, and the zero
run's Σ x² is the total less those tails' prefix sums. O(N + kκ log κ) time, O(kκ) memory (duplicates not merged,
so that a tie at the pruning threshold can be split).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._base import Compression
from ._constraints import WEIGHTS, Integer
from ._kmeans1d import _layer, _Prefix
from ._primitives import F32_BITS, check_finite, code_bits, code_dtype, nearest, round_f32, scatter, sparse_state

__all__ = ["PrunedQuantization"]


def _layers(x: np.ndarray, k: int) -> tuple[np.ndarray, list]:
    """For sorted ``x`` of n values: ``cost[a, i]`` = the optimal cost of x[:i] in exactly a nonempty runs (a = 0…k,
    i = 0…n; inf where impossible) and ``args[a]`` the argmins of layer a (the start of the last run), by the exact
    1-D k-means programme. O(kn log n)."""
    n = x.size
    cost = np.full((k + 1, n + 1), np.inf)
    cost[0, 0] = 0.0                                         # no run: only the empty prefix
    args: list = [None, None]
    if k >= 1 and n:
        p = _Prefix(x - x.mean())                            # run costs do not change with a shift
        idx = np.arange(n + 1)
        cost[1] = p.cost(np.zeros_like(idx), idx)            # one run: cost(0, i)
        for a in range(2, min(k, n) + 1):
            _, arg = _layer(cost[a - 1], p, a, n, a - 1, out=cost[a])
            args.append(arg)
    return cost, args


def _means(x: np.ndarray, i: int, runs: int, args: list, out: np.ndarray) -> None:
    """Write into out[:i] the mean of each run of the optimal cut of x[:i] into ``runs`` runs."""
    hi = i
    for a in range(runs, 0, -1):
        lo = int(args[a][hi]) if a >= 2 else 0
        out[lo:hi] = x[lo:hi].mean()
        hi = lo


def solve(lo: np.ndarray, hi: np.ndarray, kappa: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact optimum of the module docstring's problem, given the κ smallest values ``lo`` and the κ largest
    ``hi`` of N ≥ κ values (both sorted, float64; they overlap when 2κ > N): the nonzero runs lie in them, since
    the zero run holds at least N − κ values. Returns (θ of ``lo``, θ of ``hi``), zero outside the runs.

    With the zero run from position i to N − t (t values after it), its Σx² is the total less SL(i) (the first i
    squares) and SR(t) (the last t), so the cost is [L≤a(i) − SL(i)] + [R≤(k−a)(t) − SR(t)] + Σx², minimised over
    a, i and t ≤ κ − i (a prefix minimum over t). O(kκ log κ) time and O(kκ) memory."""
    m = lo.size
    r = -hi[::-1]                                            # the largest first, negated: runs counted from the end
    sl, sr = (np.concatenate([[0.0], np.cumsum(v * v)]) for v in (lo, r))
    left, left_args = _layers(lo, k)
    right, right_args = _layers(r, k)
    np.minimum.accumulate(left, axis=0, out=left)            # at most a runs
    np.minimum.accumulate(right, axis=0, out=right)
    best = (math.inf, 0, 0, 0)
    for a in range(k + 1):
        b = right[k - a] - sr                                # R≤(k−a)(t) − SR(t), t = 0 … κ
        low = np.minimum.accumulate(b)                       # min over t' ≤ t
        total = left[a] - sl + low[::-1]                     # i ↦ … + min over t ≤ κ − i
        i = int(np.argmin(total))
        if total[i] < best[0]:
            best = (float(total[i]), a, i, int(np.argmin(b[:m - i + 1])))
    _, a, i, t = best
    theta_lo, tail = np.zeros(m), np.zeros(m)
    _means(lo, i, _fewest(left[:a + 1, i]), left_args, theta_lo)
    _means(r, t, _fewest(right[:k - a + 1, t]), right_args, tail)
    return theta_lo, -tail[::-1]


def _fewest(le: np.ndarray) -> int:
    """The fewest runs that reach the best cost, from the running minima over "at most a runs"."""
    return int(np.argmax(le == le[-1]))


@dataclass(frozen=True)
class PrunedQuantization(Compression):
    """Solves min_θ ‖w − θ‖² s.t. ‖θ‖₀ ≤ κ and θ_i ∈ {0} ∪ {c_1…c_k} over codebooks c: keep at most κ weights,
    their values from one learned codebook of k entries, pruning and quantization solved jointly and exactly (the
    dynamic programme of this module's docstring). O(N + kκ log κ) time, O(kκ) memory (on the κ smallest and κ
    largest weights), the programme on the CPU in numpy.

    Storage: the positions of the nonzeros (the cheaper of a bitmap or a gap code, as for pruning), one
    ⌈log₂ d⌉-bit code per nonzero and d float32 codebook entries (d ≤ k, the entries used). With κ ≥ N it is
    adaptive quantization with a free extra level at zero."""

    kappa: int
    k: int
    constraints = {"kappa": (Integer(0, WEIGHTS), "is the number of weights to keep"),
                   "k": (Integer(1), "is the number of codebook entries for the kept weights")}

    def compress(self, w, mu, previous=None):
        check_finite(w, repr(self))
        flat = w.detach().reshape(-1)
        n, kappa = flat.numel(), min(int(self.kappa), flat.numel())
        if 2 * kappa >= n:                                               # the two tails cover every value
            order = torch.argsort(flat)
            lo_at, hi_at = order[:kappa], order[n - kappa:]
        else:                                                            # only the tails are sorted
            lo_at = torch.topk(flat, kappa, largest=False, sorted=True).indices
            hi_at = torch.topk(flat, kappa, largest=True, sorted=True).indices.flip(0)
        lo, hi = (flat[at].cpu().to(torch.float64).numpy() for at in (lo_at, hi_at))
        theta_lo, theta_hi = solve(lo, hi, kappa, int(self.k))
        at = torch.cat([lo_at, hi_at]).cpu()
        value = torch.from_numpy(np.concatenate([theta_lo, theta_hi]))
        nonzero = value != 0                                             # a run whose mean is exactly 0 is pruned
        support, order = torch.sort(at[nonzero])
        theta = value[nonzero][order]
        # the centres rounded to float32 (how they are stored), with 0 among the levels: each kept weight goes to the
        # nearest level, never worse than the runs the programme found (a centre that rounds to 0 prunes its run)
        levels = torch.unique(torch.cat([flat.new_zeros(1), round_f32(theta, w.dtype).to(flat.device)]))
        support = support.to(flat.device)
        level = nearest(flat[support], levels)
        kept = levels[level] != 0
        support = support[kept]
        used, codes = torch.unique(level[kept], return_inverse=True)  # drop the levels no weight uses (and 0)
        codebook = levels[used]
        d = codebook.numel()
        return sparse_state(w.shape, support, {"codebook": codebook, "codes": codes.to(code_dtype(d))},
                            {"codebook": "f32", "codes": f"uint:{code_bits(d)}"},
                            support.numel() * code_bits(d) + F32_BITS * d)

    def decompress(self, state):
        return scatter(state.tensors["codebook"][state.tensors["codes"].long()], state)
