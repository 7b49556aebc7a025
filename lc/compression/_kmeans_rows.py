"""1-D k-means of every row of a matrix at once (``AdaptiveQuantization(per_channel=True)``): no Python loop over rows.

The problem separates over rows; each row is the 1-D k-means of :mod:`._kmeans1d`. Here all rows are solved together,
each step one vectorised pass over every row:

1. sort each row (values only) and take per-row float64 prefix sums of the values and their squares, centred on the
   row's median: 20 bytes a weight;
2. rows with at most k distinct values: the codebook is those values (zero distortion);
3. small inputs (``rows · n · log₂ n · k`` ≤ ``EXACT_WORK``) or ``exact=True``: the exact dynamic programme of
   :func:`._kmeans1d.dp_rows` on every row, each layer one divide and conquer over all rows;
4. otherwise: the same programme on a summary of each row (``CHUNKS`` chunks of equal counts, each summarised by its
   mean and count: the best clustering whose cuts fall on chunk edges), then Lloyd iterations on the full rows
   (cuts by a batched ``searchsorted`` of the midpoints between centroids, centroids from the prefix sums, O(k log n)
   per row and iteration), until no row's cuts move.

Step 4 is a Lloyd fixed point started from the chunk optimum, not proved optimal (the per-tensor path refines further
with exact programmes over moves of the cuts); ``tests/lc/compression/test_quantization.py`` measures it against the
exact programme.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._kmeans1d import MAX_LLOYD, dp_rows
from ._primitives import sorted_values

EXACT_WORK = 1 << 22     # rows · n · log₂ n · k below which every row gets the exact programme
CHUNKS = 64              # chunks per row of the summary solved exactly (step 4), at least 4k


def kmeans_rows(w: torch.Tensor, k: int, init: torch.Tensor | None = None, exact: bool = False) -> torch.Tensor:
    """The centroids (rows, d) (sorted per row, float64, on w's device) of the optimal 1-D k-means of each row of
    ``w`` (rows, n); d = min(k, the most distinct values of any row), and a row with fewer distinct values repeats its
    largest. ``init`` (rows, k), a previous codebook, is a second start of the fast path."""
    x = sorted_values(w if w.dtype in (torch.float32, torch.float64) else w.float())
    rows, n = x.shape
    distinct = 1 + (x[:, 1:] != x[:, :-1]).sum(1)
    d = int(min(k, int(distinct.max())))
    out = torch.empty(rows, d, dtype=torch.float64, device=w.device)
    few = distinct <= d                                                       # the codebook is the values
    if bool(few.any()):
        out[few] = _values(x[few], d)
    many = ~few
    if bool(many.any()):
        xm = x[many]
        if exact or xm.numel() * max(math.log2(n), 1) * k <= EXACT_WORK:
            cuts = torch.from_numpy(dp_rows(xm.cpu().to(torch.float64).numpy(), np.ones(tuple(xm.shape)), k))
            out[many] = _Rows(xm).mean(cuts.to(w.device))
        else:
            ok = init is not None and init.shape == (rows, k) and bool(torch.isfinite(init).all())
            out[many] = _Rows(xm).fast(k, init[many] if ok else None)
    return out


def _values(x: torch.Tensor, d: int) -> torch.Tensor:
    """The distinct values of each sorted row (at most d of them), padded with the row's largest: (rows, d)."""
    new = torch.ones_like(x, dtype=torch.bool)
    new[:, 1:] = x[:, 1:] != x[:, :-1]
    rank = torch.cumsum(new, 1) - 1                                           # which distinct value each is
    out = x[:, -1:].to(torch.float64).repeat(1, d)
    out.scatter_(1, rank, x.to(torch.float64))                                # equal values write the same
    return out


class _Rows:
    """Sorted rows x with per-row float64 prefix sums of x − shift and (x − shift)², the shift each row's median."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        rows, n = x.shape
        self.shift = x[:, n // 2].to(torch.float64)
        self.s1 = torch.zeros(rows, n + 1, dtype=torch.float64, device=x.device)
        self.s1[:, 1:] = x
        self.s1[:, 1:].sub_(self.shift[:, None])
        self.s2 = self.s1.square()                                            # 20 bytes a weight with x
        self.s1.cumsum_(1)
        self.s2.cumsum_(1)

    def _sums(self, s: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
        """Σ over the runs between consecutive cuts of each row, from the row prefix sums s."""
        g = s.gather(1, cuts)
        return g[:, 1:] - g[:, :-1]

    def mean(self, cuts: torch.Tensor) -> torch.Tensor:
        """The centroids of the runs between consecutive cuts (rows, k + 1) of each row."""
        return self._sums(self.s1, cuts) / (cuts[:, 1:] - cuts[:, :-1]) + self.shift[:, None]

    def cost(self, cuts: torch.Tensor) -> torch.Tensor:
        """Σ_runs Σ (x − mean)² of each row."""
        s, cnt = self._sums(self.s1, cuts), (cuts[:, 1:] - cuts[:, :-1]).to(torch.float64)
        return (self._sums(self.s2, cuts) - s * s / cnt).sum(1)

    def fast(self, k: int, init: torch.Tensor | None = None) -> torch.Tensor:
        """Step 4 of the module docstring: the chunk programme, then Lloyd on the full rows; ``init`` (rows, k), a
        previous codebook, is a second start of Lloyd, and each row keeps the better result."""
        edges = self._edges(min(self.x.shape[1], max(CHUNKS, 4 * k)))
        cnt = torch.diff(edges, dim=1)
        mean = torch.diff(self.s1.gather(1, edges), dim=1) / cnt                  # chunks: mean and count
        chunk = torch.from_numpy(dp_rows(mean.cpu().numpy(), cnt.to(torch.float64).cpu().numpy(), k))
        cuts = self._lloyd(edges.gather(1, chunk.to(self.x.device)))
        if init is not None:
            c = torch.sort(init.to(torch.float64), 1).values
            inner = torch.searchsorted(self.x, ((c[:, 1:] + c[:, :-1]) / 2).to(self.x.dtype))
            warm = torch.cat([cuts[:, :1], inner, cuts[:, -1:]], 1)
            ok = (warm[:, 1:] > warm[:, :-1]).all(1)
            warm = self._lloyd(torch.where(ok[:, None], warm, cuts))
            cuts = torch.where((self.cost(warm) < self.cost(cuts))[:, None], warm, cuts)
        return self.mean(cuts)

    def _edges(self, b: int) -> torch.Tensor:
        """b + 1 increasing chunk edges of each row (0 and n among them): half at equal counts, half at equal value
        steps (fine in the tails, where the outer clusters are small), nudged apart where they coincide."""
        rows, n = self.x.shape
        dev = self.x.device
        by_count = torch.round(torch.linspace(0, n, b // 2 + 1, dtype=torch.float64, device=dev)).long()
        t = torch.linspace(0, 1, b - b // 2, dtype=torch.float64, device=dev)[1:-1]
        lo, hi = self.x[:, :1].to(torch.float64), self.x[:, -1:].to(torch.float64)
        by_value = torch.searchsorted(self.x, (lo + (hi - lo) * t).to(self.x.dtype))
        e = torch.sort(torch.cat([by_count.expand(rows, -1), by_value], 1), 1).values      # b + 1 a row
        j = torch.arange(e.shape[1], device=dev)
        e = torch.cummax(e - j, 1).values + j                                 # strictly increasing …
        return torch.minimum(e, n - j[-1] + j)                                # … and ending at n

    def _lloyd(self, cuts: torch.Tensor) -> torch.Tensor:
        """Lloyd iterations on every row until no row's cuts move (cuts by a batched ``searchsorted`` of the
        midpoints: x < midpoint → left cluster); a row whose step would empty a cluster keeps its cuts."""
        cuts = cuts.clone()
        for _ in range(MAX_LLOYD):
            centre = self.mean(cuts)
            inner = torch.searchsorted(self.x, ((centre[:, 1:] + centre[:, :-1]) / 2).to(self.x.dtype))
            new = torch.cat([cuts[:, :1], inner, cuts[:, -1:]], 1)
            move = (new[:, 1:] > new[:, :-1]).all(1) & (new != cuts).any(1)
            if not bool(move.any()):
                break
            cuts[move] = new[move]
        return cuts
