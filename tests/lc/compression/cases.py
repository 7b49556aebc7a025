"""The registry of the conformance suite: every compression joins it with one line here.

A case is a compression, the shape of the tensor its C step sees, and a predicate that says whether a
decompressed tensor is feasible (satisfies the compression's constraint)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

import lc


@dataclass(frozen=True)
class Case:
    compression: lc.Compression
    shape: tuple[int, ...]
    feasible: Callable[[torch.Tensor], bool]
    mu: float = 1.0
    # False only where the C step is not a projection: soft thresholding (ℓ1 penalty) shrinks its own output
    # again, by design. Everything else must return Δ(Θ) unchanged when given Δ(Θ).
    idempotent: bool = True

    @property
    def id(self):
        return f"{self.compression!r}-{'x'.join(map(str, self.shape))}"


def nnz_at_most(k):
    return lambda x: int((x != 0).sum()) <= k


def l1_at_most(r):
    return lambda x: float(x.abs().sum()) <= r * (1 + 1e-5) + 1e-6


def nonzeros_above(t):
    return lambda x: bool((x[x != 0].abs() > t).all())


def rank_at_most(r):
    # in a half type, Δ = U V is rounded to that type: singular values of that rounding's size do not count
    return lambda x: int(torch.linalg.matrix_rank(x.double(), rtol=max(1e-12, 16 * torch.finfo(x.dtype).eps))) <= r


def distinct_at_most(k):
    return lambda x: x.unique().numel() <= k


def distinct_per_row_at_most(k):
    return lambda x: all(r.unique().numel() <= k for r in x.reshape(x.shape[0], -1))


def pruned_codebook(kappa, k):
    """At most κ nonzeros, and at most k distinct nonzero values."""
    return lambda x: int((x != 0).sum()) <= kappa and x[x != 0].unique().numel() <= k


def values_in(*allowed):
    return lambda x: bool(torch.isin(x, torch.tensor(allowed, dtype=x.dtype, device=x.device)).all())


def symmetric_levels(with_zero):
    """At most {−a, +a} (or {−a, 0, +a}) for one a ≥ 0."""
    def ok(x):
        a = x.abs().max()
        allowed = torch.stack([-a, a] + ([torch.zeros_like(a)] if with_zero else []))
        return bool(torch.isin(x, allowed).all()) and (with_zero or not bool((x == 0).any()) or float(a) == 0)
    return ok


def on_affine_grid(bits, per_channel=False):
    """Each row (or the whole tensor) lies on {S·(q − Z)}: a uniform lattice through 0 of at most 2^bits levels."""
    def row_ok(r):
        v = torch.unique(torch.cat([r.reshape(-1).double(), r.new_zeros(1, dtype=torch.float64)]))
        if v.numel() > 2 ** bits + 1:                      # at most 2^bits levels (+ the 0 added here)
            return False
        if v.numel() == 1:
            return True
        k = v / torch.diff(v).min()
        # in a half type Δ is the grid point rounded to that type: allow that rounding; where it is as large as
        # the grid's step (8 bits in bfloat16), the count of levels above is all that can be checked
        slack = max(1e-3, 2 * torch.finfo(r.dtype).eps * float(k.abs().max()))
        return slack >= 0.25 or (bool((k - k.round()).abs().max() < slack)
                                 and int(k.round().max() - k.round().min()) <= 2 ** bits - 1)
    return lambda x: all(row_ok(r) for r in (x.reshape(x.shape[0], -1) if per_channel else x.reshape(1, -1)))


CASES = [
    Case(lc.ConstraintL0Pruning(kappa=7), (50,), nnz_at_most(7)),
    Case(lc.ConstraintL0Pruning(kappa=0), (12, 5), nnz_at_most(0)),
    Case(lc.ConstraintL0Pruning(kappa=60), (12, 5), lambda x: True),
    Case(lc.ConstraintL1Pruning(kappa=3.0), (40,), l1_at_most(3.0)),
    Case(lc.ConstraintL1Pruning(kappa=1e6), (40,), l1_at_most(1e6)),
    Case(lc.PenaltyL0Pruning(alpha=0.1), (200,), nonzeros_above((2 * 0.1 / 2.0) ** 0.5), mu=2.0),
    Case(lc.PenaltyL1Pruning(alpha=0.5), (30, 4), lambda x: True, mu=1.0, idempotent=False),
    Case(lc.LowRank(target_rank=3), (12, 8), rank_at_most(3)),
    Case(lc.LowRank(target_rank=6), (12, 8), rank_at_most(6)),                 # 6·20 ≥ 96: stored dense
    # α·mn > μ/2‖w‖² (≈ 48 here): dense is worse than rank 0, so a rank < mn/(m+n) is chosen
    Case(lc.RankSelection(alpha=0.6), (12, 8), rank_at_most(4)),
    Case(lc.RankSelection(budget=lc.RankBudget(ratio=4.0)), (12, 8), rank_at_most(1)),  # r·20 ≤ 96/4
    Case(lc.AdaptiveQuantization(k=4), (50,), distinct_at_most(4)),
    Case(lc.AdaptiveQuantization(k=2), (12, 5), distinct_at_most(2)),
    Case(lc.AdaptiveQuantization(k=1), (20,), distinct_at_most(1)),
    Case(lc.AdaptiveQuantization(k=64), (30,), distinct_at_most(64)),
    Case(lc.AdaptiveQuantization(k=5, exact=True), (7, 9), distinct_at_most(5)),
    Case(lc.AdaptiveQuantization(k=3, per_channel=True), (6, 10), distinct_per_row_at_most(3)),
    Case(lc.AdaptiveQuantization(k=4, per_channel=True), (5, 3), distinct_per_row_at_most(4)),   # rows < k values
    Case(lc.AdaptiveQuantization(k=2, per_channel=True), (30,), distinct_at_most(2)),             # a vector: one row
    Case(lc.PrunedQuantization(kappa=10, k=3), (60,), pruned_codebook(10, 3)),
    Case(lc.PrunedQuantization(kappa=0, k=2), (12, 5), pruned_codebook(0, 2)),
    Case(lc.PrunedQuantization(kappa=60, k=4), (12, 5), pruned_codebook(60, 4)),
    Case(lc.PrunedQuantization(kappa=30, k=1), (6, 8), pruned_codebook(30, 1)),
    Case(lc.BinaryQuantization(), (40,), values_in(-1.0, 1.0)),
    Case(lc.ScaledBinaryQuantization(), (10, 6), symmetric_levels(with_zero=False)),
    Case(lc.ScaledTernaryQuantization(), (50,), symmetric_levels(with_zero=True)),
    Case(lc.AffineQuantization(bits=4), (50,), on_affine_grid(4)),
    Case(lc.AffineQuantization(bits=2, symmetric=False), (40,), on_affine_grid(2)),
    Case(lc.AffineQuantization(bits=8, per_channel=True), (6, 40), on_affine_grid(8, per_channel=True)),
    Case(lc.AffineQuantization(bits=3, symmetric=False, per_channel=True), (12, 20),
         on_affine_grid(3, per_channel=True)),
]


def rows_kept_at_most(k):
    """At most k rows of the matrix nonzero, each row either zero or kept whole."""
    return lambda x: int((x.reshape(x.shape[0], -1) != 0).any(1).sum()) <= k


def whole_rows(x):
    return True


CASES += [
    Case(lc.ChannelPruning(keep=0.5, cost="count"), (8, 5), rows_kept_at_most(4)),
    Case(lc.ChannelPruning(keep=0.3, cost="params"), (6, 4), rows_kept_at_most(1)),
    Case(lc.ChannelPruning(keep=1.0), (5, 3), lambda x: True),
    Case(lc.ChannelPruning(keep=0.4, cost="flops", allocation="uniform"), (10, 3), rows_kept_at_most(4)),
    Case(lc.ChannelPruning(keep=0.5, cost="count", min_keep=0.25), (8, 5), rows_kept_at_most(4)),
    Case(lc.ChannelPenaltyL0(alpha=0.5, cost="count"), (10, 3), whole_rows),
    Case(lc.ChannelPenaltyL21(alpha=0.3, cost="count"), (10, 3), whole_rows, idempotent=False),
]


def _positive(shape, seed=0):
    """Fixed weights > 0 for the data-weighted C steps (what a calibration batch gives them through bind)."""
    return 0.1 + torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def at_most_n_of_m(n, m):
    return lambda x: bool(((x.reshape(-1, m) != 0).sum(1) <= n).all())


_MOMENTS = (lambda a: a @ a.T / 10)(torch.randn(8, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64))

CASES += [
    Case(lc.WeightedAdaptiveQuantization(k=4).weighted_by(_positive((50,))), (50,), distinct_at_most(4)),
    Case(lc.WeightedAdaptiveQuantization(k=3, per_channel=True).weighted_by(_positive((6, 10))), (6, 10),
         distinct_per_row_at_most(3)),
    Case(lc.WeightedL0Pruning(kappa=7).weighted_by(_positive((12, 5))), (12, 5), nnz_at_most(7)),
    Case(lc.NMPruning(n=2, m=4), (6, 8), at_most_n_of_m(2, 4)),
    Case(lc.WeightedNMPruning(n=1, m=4).weighted_by(_positive((6, 8))), (6, 8), at_most_n_of_m(1, 4)),
    Case(lc.WhitenedLowRank(target_rank=3).whitened_by(_MOMENTS), (12, 8), rank_at_most(3)),
]
