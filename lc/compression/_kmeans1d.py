"""Globally optimal 1-D k-means: an exact dynamic programme, and a fast path checked against it.

In 1-D the clusters of an optimal k-means solution are contiguous runs of the sorted values, so the problem is to
cut the sorted values x_1 ≤ … ≤ x_N into k runs minimising the sum of within-run squared deviations. With prefix
sums of counts, x and x² the cost of any run is O(1), and

    D_j(i) = min_{m < i} D_{j−1}(m) + cost(m, i)        (the first i values in j runs)

is an exact dynamic programme. Its optimal split m*(i) is monotone in i (the cost satisfies the quadrangle
inequality), so each layer is solved by divide and conquer in O(N log N) (Grønlund et al., "Fast exact k-means,
k-medians and Bregman divergence clustering in 1D", 2017); here each level of the recursion is one vectorised
pass. :func:`dp` is that solver, on distinct values with multiplicities: O(kN log N) time, O(kN) memory. It is the
exact path and the test oracle.

:func:`kmeans` runs, on the weights' device:

1. sort once, merge equal values (value, count), float64 prefix sums: the only O(N log N) and O(N) work;
2. with at most ``SUMMARY`` distinct values (or ``exact=True``): :func:`dp`, exact, done. Otherwise the fast path:
   summarise by about ``SUMMARY`` chunks (half at equal counts, half at equal value steps, so that the tails, where
   the outer clusters are small, are resolved) and solve the chunk problem exactly with :func:`dp`: the optimal
   clustering among those whose cuts fall on chunk edges;
3. Lloyd iterations from there: cuts by ``searchsorted`` of the midpoints between centroids, centroids from the
   prefix sums: O(k log N) per iteration, whatever N;
4. an exact DP over moves of every cut (each within ±NEAR positions, then at distances growing by GROWTH up to the
   ends), alternating with step 3 until neither moves the cuts; then one exact DP over the union of all those
   candidates and the chunk edges, which can also hand a cluster from one region to another; repeated while it
   improves.

The result is a Lloyd fixed point that no move of the cuts within those candidate sets improves. It is not proved
optimal; ``tests/lc/compression/test_quantization.py`` checks it against :func:`dp` (Gaussian, Laplacian, mixtures,
heavy duplicates, uniform, Cauchy). A warm start (a previous codebook) is a second start of steps 3–4; the better
result is kept.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ._primitives import sorted_values

log = logging.getLogger(__name__)

SUMMARY = 4096          # chunks of the summary solved exactly (step 2); fewer distinct values → exact DP
NEAR = 16              # every position within ±NEAR of a current cut is a candidate of the refining DP …
GROWTH = 1.1           # … and positions at distances NEAR·GROWTH^t beyond
MAX_LLOYD = 20000       # safety cap on Lloyd iterations per round (the cuts are discrete, so Lloyd terminates)
MAX_ROUNDS = 20         # alternations of Lloyd and the DPs over moves


class _Prefix:
    """Prefix sums of counts, n·x and n·x² of sorted values x with multiplicities n, in float64: the cost of any
    run in O(1). Holds torch tensors (the fast path, on the weights' device) or numpy arrays (the DP)."""

    def __init__(self, x: np.ndarray, counts: np.ndarray | None = None, shift=0.0):
        """Numpy sums of (x − shift) (centring loses less to cancellation); ``counts=None``: every multiplicity 1.
        ``x`` of shape (rows, n): each row its own sums, laid end to end (n + 1 entries a row, position i of row r
        at r·(n + 1) + i), so that runs within any row cost O(1) with one set of flat indices."""
        self.unit = counts is None                             # every multiplicity 1: Σ counts over [m, i) is i − m
        n = np.ones_like(x) if counts is None else counts
        x = x - shift
        self._n, self.s1, self.s2 = (np.concatenate([np.zeros(v.shape[:-1] + (1,)), np.cumsum(v, -1)], -1).reshape(-1)
                                     for v in (n, n * x, n * x * x))

    @classmethod
    def of(cls, x: torch.Tensor, n: torch.Tensor | None, shift: float) -> "_Prefix":
        """Torch sums of sorted ``x`` with the multiplicities ``n[1:]`` (float64, len(x) + 1 entries), which become
        their own prefix sums in place; ``n=None``: every multiplicity is 1, so the counts' prefix is i itself and
        is not stored. 16 bytes a value (24 with multiplicities), no other copy of x in float64."""
        p = cls.__new__(cls)
        p.shift = shift
        p.s1 = _cumsum0(x, shift, None if n is None else n[1:], power=1)
        p.s2 = _cumsum0(x, shift, None if n is None else n[1:], power=2)
        if n is not None:
            n[1:].cumsum_(0)
        p._n = n
        return p

    def counts(self) -> torch.Tensor:
        """The multiplicities (float64), from their prefix sums."""
        return torch.ones_like(self.s1[1:]) if self._n is None else torch.diff(self._n)

    def n(self, i):
        """Σ counts before position i."""
        return i.to(self.s1.dtype) if self._n is None else self._n[i]

    def mean(self, m, i):
        """Centroid of the run [m, i) (m < i)."""
        return (self.s1[i] - self.s1[m]) / (self.n(i) - self.n(m))

    def cost(self, m: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Σ_{m ≤ t < i} n_t (x_t − mean)² of the runs [m, i) (numpy); +inf where m ≥ i."""
        return _run_cost(*((a[m], a[i]) for a in (self._n, self.s1, self.s2)))

    def cost_to(self, m: np.ndarray, mid: np.ndarray, length: np.ndarray) -> np.ndarray:
        """:meth:`cost` of the runs [m, i) for i = ``mid`` repeated ``length`` times, each known to be nonempty
        (m < i, positive counts): fewer passes, no infinities."""
        s = np.repeat(self.s1[mid], length) - self.s1[m]
        out = np.repeat(self.s2[mid], length) - self.s2[m]
        cnt = np.repeat(mid, length) - m if self.unit else np.repeat(self._n[mid], length) - self._n[m]
        out -= s * s / cnt
        return np.maximum(out, 0, out=out)


def _cumsum0(x: torch.Tensor, shift, counts: torch.Tensor | None, power: int) -> torch.Tensor:
    """0, v_0, v_0 + v_1, … for v = counts·(x − shift)^power, in float64, computed in place in its output: no
    float64 copy of the weights besides the prefix sums themselves (on a large tensor, memory traffic is the cost)."""
    out = torch.empty(x.numel() + 1, dtype=torch.float64, device=x.device)
    out[0] = 0
    v = out[1:]
    v.copy_(x).sub_(shift)
    if power == 2:
        v.square_()
    if counts is not None:
        v.mul_(counts)
    v.cumsum_(0)
    return out


def _run_cost(n, s1, s2) -> np.ndarray:
    """The cost of the run between two prefix entries (the pairs (start, end) of n, s1, s2); +inf if it is empty."""
    cnt, s = n[1] - n[0], s1[1] - s1[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.maximum((s2[1] - s2[0]) - s * s / cnt, 0)
    return np.where(cnt > 0, out, np.inf)


def _layer(prev: np.ndarray, p: _Prefix, ilo, ihi, olo, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cur(i) = min_{olo ≤ m < i} prev(m) + cost(m, i) for ilo ≤ i ≤ ihi, with the argmin, by divide and conquer
    on the monotone argmin; every level of the recursion is one vectorised pass. ``ilo``, ``ihi``, ``olo`` may be
    arrays: one independent range each (the rows of a :class:`_Prefix` of several rows), solved together. ``out``:
    where to write cur (else a new array)."""
    cur = np.full_like(prev, np.inf) if out is None else out
    if out is not None:
        cur.fill(np.inf)
    arg = np.zeros(prev.size, dtype=np.int64)
    # pending subproblems: i in [a, b], argmin known to lie in [lo, hi]
    a, b, lo, hi = (np.atleast_1d(np.asarray(v, dtype=np.int64)) for v in (ilo, ihi, olo, np.asarray(ihi) - 1))
    while a.size:
        mid = (a + b) // 2
        length = np.minimum(mid - 1, hi) - lo + 1
        start = np.cumsum(length) - length
        m = np.repeat(lo - start, length) + np.arange(int(start[-1] + length[-1]))   # lo … min(mid − 1, hi)
        val = p.cost_to(m, mid, length)                    # m < mid: every run is nonempty
        val += prev[m]
        best = np.minimum.reduceat(val, start)
        am = np.minimum.reduceat(np.where(val <= np.repeat(best, length), m, prev.size), start)
        cur[mid] = best
        arg[mid] = am
        left, right = a <= mid - 1, mid + 1 <= b
        a, b, lo, hi = (np.concatenate([a[left], mid[right] + 1]), np.concatenate([mid[left] - 1, b[right]]),
                        np.concatenate([lo[left], am[right]]), np.concatenate([am[left], hi[right]]))
    return cur, arg


def dp(x: torch.Tensor, counts: torch.Tensor, k: int) -> torch.Tensor:
    """Exact 1-D k-means of sorted, strictly increasing values ``x`` with multiplicities ``counts``, k ≤ len(x).
    Returns the k + 1 cuts 0 = c_0 < c_1 < … < c_k = len(x): cluster j is ``x[c_j:c_{j+1}]``. O(kN log N) time,
    O(kN) memory. It runs in numpy on the CPU: its passes are many and small, where torch's per-call overhead
    (and, on a busy CPU, its thread pool) would dominate."""
    xs = x.detach().cpu().to(torch.float64).numpy()
    return torch.from_numpy(dp_rows(xs[None], counts.detach().cpu().to(torch.float64).numpy()[None], k)[0]).to(x.device)


def dp_rows(x: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """:func:`dp` of each row of ``x`` (rows, n) with multiplicities ``counts`` (rows, n), all rows together (each
    layer of the programme is one divide and conquer over every row): the (rows, k + 1) cuts. Sorted rows, not
    necessarily strictly increasing: equal values may then fall in different runs (at no extra cost)."""
    rows, n = x.shape
    p = _Prefix(x - x.mean(1, keepdims=True), counts)
    o = np.arange(rows) * (n + 1)                        # where each row's sums start
    idx = (o[:, None] + np.arange(n + 1)).reshape(-1)
    cost = p.cost(np.repeat(o, n + 1), idx)              # D_1(i) = cost(0, i), every row
    args = []
    for j in range(2, k):                                # D_j(i) for j ≤ i ≤ n − (k − j)
        cost, arg = _layer(cost, p, o + j, o + n - (k - j), o + j - 1)
        args.append(arg)
    cuts = np.zeros((rows, k + 1), dtype=np.int64)
    cuts[:, k] = n
    if k >= 2:                                           # D_k(n) = min_m D_{k−1}(m) + cost(m, n)
        m = o[:, None] + np.arange(k - 1, n)
        total = cost[m] + p.cost(m, np.broadcast_to((o + n)[:, None], m.shape))
        cuts[:, k - 1] = np.argmin(total, 1) + k - 1
        for j, arg in zip(range(k - 2, 0, -1), reversed(args)):
            cuts[:, j] = arg[o + cuts[:, j + 1]] - o
    return cuts


def _lloyd(x: torch.Tensor, p: _Prefix, cuts: torch.Tensor) -> torch.Tensor | None:
    """Lloyd iterations on sorted ``x`` from ``cuts``, until the cuts stop moving. None if a cluster empties."""
    for _ in range(MAX_LLOYD):
        c = p.mean(cuts[:-1], cuts[1:]) + p.shift
        inner = torch.searchsorted(x, ((c[1:] + c[:-1]) / 2).to(x.dtype))   # x < midpoint → left cluster
        new = torch.cat([cuts[:1], inner, cuts[-1:]])
        if bool((new[1:] <= new[:-1]).any()):
            return None
        if torch.equal(new, cuts):
            return cuts
        cuts = new
    log.debug("1-D k-means: Lloyd stopped after %d iterations without converging", MAX_LLOYD)
    return cuts


def _total(p: _Prefix, cuts: torch.Tensor) -> float:
    """Σ_j cost(cluster j) for cuts on a torch prefix."""
    m, i = cuts[:-1], cuts[1:]
    s = p.s1[i] - p.s1[m]
    return float(((p.s2[i] - p.s2[m]) - s * s / (p.n(i) - p.n(m))).sum())


def _chunk_dp(p: _Prefix, edges: torch.Tensor, k: int) -> torch.Tensor:
    """The optimal cuts among ``edges`` (sorted positions, 0 and n included): the exact DP on the chunks between
    consecutive edges, each summarised by its mean and count (its inner scatter is the same for every choice)."""
    return edges[dp(p.mean(edges[:-1], edges[1:]), p.n(edges[1:]) - p.n(edges[:-1]), k)]


def _offsets(n: int, device) -> torch.Tensor:
    """Moves tried for each cut by the refining DP: every shift up to ±NEAR, then shifts growing by GROWTH up to
    the whole range (so that a cut may still jump far, at a coarser resolution)."""
    far = NEAR * GROWTH ** torch.arange(1, int(math.log(max(n / NEAR, 1.0)) / math.log(GROWTH)) + 2,
                                        device=device, dtype=torch.float64)
    far = torch.unique(far.round().long())
    return torch.cat([-far.flip(0), torch.arange(-NEAR, NEAR + 1, device=device), far])


def _moves(x: torch.Tensor, p: _Prefix, cuts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The best cuts with cut j chosen among cuts[j] + offsets: an exact DP over these candidates, one (L × L)
    step per cut, in numpy on the prefix sums gathered at the candidates."""
    n, k = x.numel(), cuts.numel() - 1
    want = cuts[1:-1, None] + offsets                                        # (k−1, L)
    cand = want.clamp(1, n - 1)
    idx = torch.cat([torch.tensor([0, n], device=x.device), cand.reshape(-1)])
    pre = torch.stack([p.n(idx), p.s1[idx], p.s2[idx]]).cpu().numpy()       # prefix sums at the candidates
    ends, g = pre[:, :2], pre[:, 2:].reshape(3, k - 1, -1)
    c, ok = cand.cpu().numpy(), (want == cand).cpu().numpy()

    def cost(a, b):
        return _run_cost(*zip(a, b))

    e = np.where(ok[0], cost(ends[:, :1], g[:, 0]), np.inf)
    back = []
    for j in range(1, k - 1):
        total = e[:, None] + cost(g[:, j - 1][:, :, None], g[:, j][:, None, :])   # inf unless the cuts increase
        arg = np.argmin(total, 0)
        e = np.where(ok[j], total[arg, np.arange(arg.size)], np.inf)
        back.append(arg)
    r = int(np.argmin(e + cost(g[:, -1], ends[:, 1:])))
    inner = [int(c[-1, r])]
    for j in range(k - 3, -1, -1):
        r = int(back[j][r])
        inner.append(int(c[j, r]))
    return torch.tensor([0] + inner[::-1] + [n], device=x.device)


def _refine(x: torch.Tensor, p: _Prefix, cuts: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """Lloyd, then the DP over moves of each cut, until neither changes the cuts; then one exact DP over all the
    candidate positions together (``base`` and the moves of every cut): it may also hand a cluster from one
    region to another, which moves of each cut near its own place cannot. Repeat while that improves."""
    k, n = cuts.numel() - 1, x.numel()
    offsets = _offsets(n, x.device)
    best = math.inf
    for _ in range(MAX_ROUNDS):
        cuts = _lloyd(x, p, cuts)
        if cuts is None:
            return None
        best = _total(p, cuts)
        if k < 2:
            break
        moved = _moves(x, p, cuts, offsets)
        if torch.equal(moved, cuts) or not _total(p, moved) < best * (1 - 1e-13):
            near = (cuts[1:-1, None] + offsets).reshape(-1).clamp(0, n)
            moved = _chunk_dp(p, torch.unique(torch.cat([base, near])), k)
            if torch.equal(moved, cuts) or not _total(p, moved) < best * (1 - 1e-13):
                break
        cuts = moved
    return cuts, best


def _summary_edges(x: torch.Tensor, p: _Prefix, b: int) -> torch.Tensor:
    """About b chunk edges of sorted distinct ``x``: half at equal counts (fine where the values are dense), half at
    equal value steps (fine in the tails, where the outer clusters are small)."""
    d = x.numel()
    quantiles = torch.linspace(0, float(p.n(torch.tensor(d))), b // 2 + 1, dtype=torch.float64, device=x.device)
    by_count = quantiles.round().long() if p._n is None else torch.searchsorted(p._n, quantiles)
    by_value = torch.searchsorted(x, torch.linspace(float(x[0]), float(x[-1]), b // 2 + 1, dtype=x.dtype,
                                                    device=x.device))
    return torch.unique(torch.cat([by_count.clamp(0, d), by_value.clamp(0, d), by_count.new_tensor([0, d])]))


def _distinct(w: torch.Tensor, k: int, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, _Prefix | None]:
    """The sorted distinct values of ``w`` and their prefix sums (None if there are at most k of them). The counts
    of repeated values go straight into the buffer that becomes their prefix sums: about 28 bytes a value at the
    peak (sorted values, counts, three prefix sums), not 36. With ``weights`` (one > 0 per value of w) the
    multiplicity of a distinct value is the sum of its weights."""
    if weights is not None:
        x, order = torch.sort(w.reshape(-1))
        x, inverse = torch.unique_consecutive(x, return_inverse=True)
        n = torch.zeros(x.numel() + 1, dtype=torch.float64, device=x.device)
        n[1:].index_add_(0, inverse, weights.reshape(-1)[order].to(torch.float64))
        del order, inverse
        return (x, None) if x.numel() <= k else (x, _Prefix.of(x, n, float(x[x.numel() // 2])))
    x, n = sorted_values(w.reshape(-1)), None
    if bool((x[1:] == x[:-1]).any()):
        x, counts = torch.unique_consecutive(x, return_counts=True)
        n = torch.empty(x.numel() + 1, dtype=torch.float64, device=x.device)
        n[0] = 0
        n[1:] = counts
        del counts
    if x.numel() <= k:
        return x, None
    return x, _Prefix.of(x, n, float(x[x.numel() // 2]))     # centring the sums loses less to cancellation


def kmeans(w: torch.Tensor, k: int, init: torch.Tensor | None = None, exact: bool = False,
           weights: torch.Tensor | None = None) -> torch.Tensor:
    """The centroids (sorted, float64, on w's device) of the optimal 1-D k-means of the values of ``w``.

    With d ≤ k distinct values the answer is those d values (zero distortion, d clusters: none empty). ``init``
    (a previous codebook) is an extra starting point of the fast path; ``exact=True`` runs :func:`dp` on all the
    distinct values. ``weights`` (w's shape, every one > 0): weighted k-means, min Σ_i d_i (w_i − c_{z_i})²; the
    optimal clusters are still contiguous runs of the sorted values, and every step above holds with the weights
    as multiplicities (centroids are weighted means; a value still goes to its nearest centroid)."""
    x, p = _distinct(w, k, weights)
    if p is None:
        return x.to(torch.float64)
    shift = p.shift
    if exact or x.numel() <= SUMMARY:
        cuts = dp(x, p.counts(), k)
        return p.mean(cuts[:-1], cuts[1:]) + shift
    edges = _summary_edges(x, p, SUMMARY)
    starts = [_chunk_dp(p, edges, k)]                        # step 2: the chunk problem, exactly
    if init is not None and init.numel() == k and bool(torch.isfinite(init).all()):
        c = torch.sort(init.to(torch.float64).reshape(-1)).values
        starts.append(torch.cat([edges[:1], torch.searchsorted(x, ((c[1:] + c[:-1]) / 2).to(x.dtype)),
                                 edges[-1:]]))
    best, best_cost = None, math.inf
    for cuts in starts:
        if bool((cuts[1:] <= cuts[:-1]).any()):
            continue
        out = _refine(x, p, cuts, edges)
        if out is not None and out[1] < best_cost:
            best, best_cost = out
    if best is None:                                         # every start emptied a cluster: solve exactly
        log.debug("1-D k-means: the fast path emptied a cluster; solving by the exact DP")
        best = dp(x, p.counts(), k)
    return p.mean(best[:-1], best[1:]) + shift
