"""Quantization C steps against independent oracles: brute force on tiny inputs, the exact DP on larger ones,
fine grid searches for the affine scale."""
import itertools
import math

import pytest
import torch

import lc
from lc._steps import Viewed
from lc.compression import _kmeans1d

# ------------------------------------------------------------------------------------------------ helpers


def sq(a, b):
    return float(((a.double() - b.double()) ** 2).sum())


def distortion(w, centroids):
    """Σ_i min_j (w_i − c_j)²: the k-means objective of a codebook (each weight to its nearest entry)."""
    w = w.double().reshape(-1)
    return float(((w[:, None] - centroids.double()[None, :]) ** 2).min(1).values.sum())


def brute_contiguous(x, k):
    """min over all cuts of sorted x into k contiguous non-empty runs of the within-run scatter."""
    x = sorted(x)
    n, best = len(x), math.inf
    for cuts in itertools.combinations(range(1, n), k - 1):
        c = [0, *cuts, n]
        total = 0.0
        for a, b in zip(c[:-1], c[1:]):
            m = sum(x[a:b]) / (b - a)
            total += sum((v - m) ** 2 for v in x[a:b])
        best = min(best, total)
    return best


def brute_assignments(x, k):
    """min over every assignment of the points to k labels (no contiguity assumed) of the within-cluster scatter."""
    best = math.inf
    for labels in itertools.product(range(k), repeat=len(x)):
        total = 0.0
        for j in range(k):
            pts = [v for v, l in zip(x, labels) if l == j]
            if pts:
                m = sum(pts) / len(pts)
                total += sum((v - m) ** 2 for v in pts)
        best = min(best, total)
    return best


def sample(kind, n, g):
    if kind == "gauss":
        return torch.randn(n, generator=g, dtype=torch.float64)
    if kind == "laplace":
        return torch.empty(n, dtype=torch.float64).exponential_(generator=g) * torch.randn(n, generator=g).sign()
    if kind == "mixture":
        means = torch.tensor([-3.0, 0.0, 0.5, 4.0], dtype=torch.float64)
        sds = torch.tensor([0.3, 1.0, 0.1, 0.5], dtype=torch.float64)
        return means[torch.randint(0, 4, (n,), generator=g)] + sds[torch.randint(0, 4, (n,), generator=g)] * \
            torch.randn(n, generator=g, dtype=torch.float64)
    if kind == "duplicates":        # a few hundred distinct values, each repeated many times
        return torch.round(torch.randn(n, generator=g, dtype=torch.float64) * 300) / 100
    if kind == "uniform":
        return torch.rand(n, generator=g, dtype=torch.float64)
    if kind == "cauchy":            # extreme outliers: clusters of one or two points in the tails
        return torch.randn(n, generator=g, dtype=torch.float64) / torch.randn(n, generator=g, dtype=torch.float64)
    raise ValueError(kind)


KINDS = ["gauss", "laplace", "mixture", "duplicates", "uniform", "cauchy"]

# ------------------------------------------------------------------------------------ adaptive (k-means)


@pytest.mark.parametrize("seed", range(40))
def test_kmeans_equals_exhaustive_enumeration_on_tiny_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 10, (1,), generator=g))
    k = int(torch.randint(1, n + 1, (1,), generator=g))
    x = sample(KINDS[seed % len(KINDS)], n, g)
    if seed % 4 == 0:
        x = torch.round(x * 2) / 2                                    # repeated values
    c = _kmeans1d.kmeans(x, k)
    assert c.numel() <= k and bool(torch.isfinite(c).all())
    assert distortion(x, c) == pytest.approx(brute_contiguous(x.tolist(), k), rel=1e-10, abs=1e-12)
    # the compression itself: float32 codebook, nearest entry per weight
    q = lc.AdaptiveQuantization(k)
    out = q.decompress(q.compress(x, 1.0))
    assert out.unique().numel() <= k
    assert sq(x, out) == pytest.approx(brute_contiguous(x.tolist(), k), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("n,k", [(6, 2), (6, 3), (7, 3), (5, 4)])
def test_kmeans_equals_brute_force_over_all_assignments(n, k):
    """No contiguity assumed: every labelling of the points."""
    for seed in range(3):
        x = sample("laplace", n, torch.Generator().manual_seed(seed))
        assert distortion(x, _kmeans1d.kmeans(x, k)) == pytest.approx(brute_assignments(x.tolist(), k), rel=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_exact_dp(kind, monkeypatch):
    """The fast path (summary DP, Lloyd, moves of the cuts) against the exact DP on all distinct values. The summary
    is shrunk to 64 chunks so that the fast path runs (and is stressed: 2 to 32 chunks per cluster) on inputs of a
    few thousand values."""
    monkeypatch.setattr(_kmeans1d, "SUMMARY", 64)
    for seed in range(3):
        g = torch.Generator().manual_seed(100 + seed)
        x = sample(kind, 2500, g)
        for k in (2, 3, 5, 8, 16, 32):
            exact = _kmeans1d.kmeans(x, k, exact=True)
            fast = _kmeans1d.kmeans(x, k)
            assert fast.numel() == k and bool((fast[1:] > fast[:-1]).all())
            assert distortion(x, fast) <= distortion(x, exact) * (1 + 1e-9), (kind, seed, k)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_exact_dp_at_full_size(kind):
    """Default summary, 300,000 weights (about a minute per distribution)."""
    x = sample(kind, 300_000, torch.Generator().manual_seed(7)).float()
    for k in (2, 4, 16, 64):
        assert distortion(x, _kmeans1d.kmeans(x, k)) <= distortion(x, _kmeans1d.kmeans(x, k, exact=True)) * \
            (1 + 1e-9), (kind, k)


def test_exact_dp_against_enumeration_with_multiplicities():
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        values = torch.sort(torch.randn(6, generator=g, dtype=torch.float64)).values
        counts = torch.randint(1, 3, (6,), generator=g)
        expanded = values.repeat_interleave(counts)
        for k in range(1, 7):
            cuts = _kmeans1d.dp(values, counts, k)
            assert bool((cuts[1:] > cuts[:-1]).all()) and cuts[0] == 0 and cuts[-1] == 6
            centroids = torch.stack([values[a:b].repeat_interleave(counts[a:b]).mean()
                                     for a, b in zip(cuts[:-1], cuts[1:])])
            assert distortion(expanded, centroids) == pytest.approx(brute_contiguous(expanded.tolist(), k),
                                                                    rel=1e-10, abs=1e-12)


def test_adaptive_state_storage_and_round_trip():
    w = torch.randn(40, 25)
    q = lc.AdaptiveQuantization(k=6)
    s = q.compress(w, 1.0)
    assert s.tensors["codebook"].numel() == 6 and s.tensors["codes"].dtype == torch.uint8
    assert s.meta["encoding"] == {"codebook": "f32", "codes": "uint:3"}
    assert s.bits == 1000 * 3 + 32 * 6
    out = q.decompress(s)
    assert out.shape == w.shape and out.unique().numel() == 6
    # every weight goes to its nearest codebook entry, and every entry is the mean of its weights (to float32)
    cb = s.tensors["codebook"]
    assert torch.equal(s.tensors["codes"].long(), (w.reshape(-1, 1) - cb).abs().argmin(1))
    for j in range(6):
        assert float(cb[j]) == pytest.approx(float(w.reshape(-1)[s.tensors["codes"] == j].mean()), rel=1e-5)


def test_adaptive_k_one_and_k_at_least_distinct():
    w = torch.tensor([0.5, 0.5, -1.0, 2.0, 2.0, 2.0])
    s1 = lc.AdaptiveQuantization(1).compress(w, 1.0)
    assert s1.bits == 32 and s1.meta["encoding"]["codes"] == "uint:0"
    assert torch.allclose(lc.AdaptiveQuantization(1).decompress(s1), torch.full_like(w, float(w.mean())))
    for k in (3, 4, 100):                     # 3 distinct values: the weights themselves, 3 entries, none empty
        q = lc.AdaptiveQuantization(k)
        s = q.compress(w, 1.0)
        assert torch.equal(q.decompress(s), w)
        assert s.tensors["codebook"].tolist() == [-1.0, 0.5, 2.0]
        assert s.bits == 6 * 2 + 32 * 3
    same = torch.full((10,), 0.25)
    s = lc.AdaptiveQuantization(4).compress(same, 1.0)
    assert torch.equal(lc.AdaptiveQuantization(4).decompress(s), same) and s.bits == 32


def test_adaptive_rejects_nan_and_bad_k():
    with pytest.raises(lc.CompressionError, match="NaN"):
        lc.AdaptiveQuantization(2).compress(torch.tensor([1.0, float("nan")]), 1.0)
    for k in (0, -3, 2.0, True, "4"):
        with pytest.raises(lc.CompressionError, match="integer ≥ 1"):
            lc.AdaptiveQuantization(k).check(torch.Size([10]))
    with pytest.raises(lc.CompressionError, match="exact"):
        lc.AdaptiveQuantization(2, exact=1).check(torch.Size([10]))


def test_adaptive_warm_start_from_a_bad_codebook_is_still_optimal(monkeypatch):
    monkeypatch.setattr(_kmeans1d, "SUMMARY", 64)
    w = sample("mixture", 3000, torch.Generator().manual_seed(5))
    q = lc.AdaptiveQuantization(8)
    cold = q.compress(w, 1.0)
    bad = lc.State({"codebook": torch.linspace(3.9, 4.1, 8, dtype=torch.float64)}, {}, 0)   # all in one mode
    warm = q.compress(w, 1.0, previous=bad)
    assert sq(w, q.decompress(warm)) <= sq(w, q.decompress(cold)) * (1 + 1e-9)
    assert sq(w, q.decompress(cold)) == pytest.approx(distortion(w, _kmeans1d.kmeans(w, 8, exact=True)), rel=1e-6)


def test_adaptive_shares_one_codebook_across_tensors():
    shapes = (torch.Size([8, 5]), torch.Size([30]), torch.Size([2, 3, 4]))
    ws = [torch.randn(s) * (i + 1) for i, s in enumerate(shapes)]
    task = Viewed(lc.AsVector(), lc.AdaptiveQuantization(3), shapes)
    task.check()
    outs = task.decompress(task.compress(ws, 1.0))
    assert [o.shape for o in outs] == list(shapes)
    assert torch.cat([o.reshape(-1) for o in outs]).unique().numel() == 3
    flat = torch.cat([w.reshape(-1) for w in ws])
    assert sq(flat, torch.cat([o.reshape(-1) for o in outs])) == pytest.approx(
        distortion(flat, _kmeans1d.kmeans(flat, 3, exact=True)), rel=1e-6)

@pytest.mark.parametrize("seed", range(6))
def test_adaptive_per_channel_is_the_brute_force_optimum_of_each_row(seed):
    """One codebook per row: the distortion of each row is the brute-force k-means optimum of that row, and
    the state is a (rows, d) codebook and N codes of ⌈log₂ d⌉ bits."""
    g = torch.Generator().manual_seed(seed)
    rows, n, k = 4, int(torch.randint(3, 8, (1,), generator=g)), int(torch.randint(2, 4, (1,), generator=g))
    w = torch.stack([sample(KINDS[(seed + r) % len(KINDS)], n, g) for r in range(rows)]) * torch.logspace(-2, 1, rows,
                                                                                                   dtype=torch.float64)[:, None]
    if seed % 3 == 0:
        w[1] = w[1, 0]                                                 # a row of one value: fewer than k entries
    q = lc.AdaptiveQuantization(k, per_channel=True)
    s = q.compress(w, 1.0)
    out = q.decompress(s)
    assert out.shape == w.shape and s.tensors["codebook"].shape[0] == rows
    d = s.tensors["codebook"].shape[1]
    assert d <= k and s.bits == w.numel() * (d - 1).bit_length() + 32 * rows * d
    for r in range(rows):
        assert out[r].unique().numel() <= k
        assert sq(w[r], out[r]) == pytest.approx(brute_contiguous(w[r].tolist(), min(k, w[r].unique().numel())),
                                                 rel=1e-6, abs=1e-12)
    whole = lc.AdaptiveQuantization(k)
    assert sq(w, out) <= sq(w, whole.decompress(whole.compress(w, 1.0))) * (1 + 1e-9)


@pytest.mark.parametrize("kind", ["gauss", "laplace"])
def test_adaptive_per_channel_fast_path_against_the_exact_programme(kind):
    """Rows too large for the exact programme on every row: the chunk programme + Lloyd, all rows at once, against
    the exact programme per row (docs/quantization.md quotes these bounds)."""
    from lc.compression._kmeans_rows import kmeans_rows
    x = torch.stack([sample(kind, 3000, torch.Generator().manual_seed(r)) for r in range(12)])

    def per_row(c):
        return torch.tensor([distortion(x[r], c[r]) for r in range(x.shape[0])])
    for k, bound in ((2, 1e-9), (4, 3e-3), (16, 4e-2)):
        excess = per_row(kmeans_rows(x, k)) / per_row(kmeans_rows(x, k, exact=True)) - 1
        assert float(excess.min()) >= -1e-9 and float(excess.max()) <= bound, (k, float(excess.max()))


def test_adaptive_per_channel_warm_start_and_errors():
    w = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    q = lc.AdaptiveQuantization(4, per_channel=True)
    cold = q.compress(w, 1.0)
    torch.testing.assert_close(q.decompress(q.compress(w, 1.0, previous=cold)), q.decompress(cold))
    other = lc.AdaptiveQuantization(4).compress(w, 1.0)                # a 1-D codebook: not a warm start here
    torch.testing.assert_close(q.decompress(q.compress(w, 1.0, previous=other)), q.decompress(cold))
    with pytest.raises(lc.CompressionError, match="per_channel"):
        lc.AdaptiveQuantization(4, per_channel=1).check(torch.Size([3, 50]))


@pytest.mark.parametrize("compression,levels", [(lc.BinaryQuantization(), 2), (lc.ScaledBinaryQuantization(), 2),
                                                (lc.ScaledTernaryQuantization(), 3), (lc.AffineQuantization(3), 8)])
def test_one_scale_across_tensors(compression, levels):
    """With AsVector the tensors share one scale: the same as compressing their concatenation."""
    shapes = (torch.Size([8, 5]), torch.Size([30]))
    ws = [torch.randn(s) * (i + 1) for i, s in enumerate(shapes)]
    task = Viewed(lc.AsVector(), compression, shapes)
    outs = task.decompress(task.compress(ws, 1.0))
    joint = torch.cat([o.reshape(-1) for o in outs])
    assert joint.unique().numel() <= levels
    flat = torch.cat([w.reshape(-1) for w in ws])
    torch.testing.assert_close(joint, compression.decompress(compression.compress(flat, 1.0)))

# ----------------------------------------------------------------------------------- binary and ternary


def test_binary_is_the_sign():
    w = torch.tensor([0.3, -2.0, 0.0, 5.0, -1e-8])
    q = lc.BinaryQuantization()
    s = q.compress(w, 1.0)
    assert q.decompress(s).tolist() == [1.0, -1.0, 1.0, 1.0, -1.0]
    assert s.bits == 5 and s.meta["encoding"] == {"codes": "uint:1"}
    assert q.decompress(q.compress(w.double(), 1.0)).dtype == torch.float64


@pytest.mark.parametrize("seed", range(5))
def test_scaled_binary_against_brute_force(seed):
    w = torch.randn(9, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    best = math.inf
    for signs in itertools.product((-1.0, 1.0), repeat=9):
        s = torch.tensor(signs, dtype=torch.float64)
        a = max(float((w * s).sum()) / 9, 0.0)                           # best a ≥ 0 for these signs
        best = min(best, sq(w, a * s))
    q = lc.ScaledBinaryQuantization()
    state = q.compress(w, 1.0)
    assert float(state.tensors["scale"]) == pytest.approx(float(w.abs().mean()), rel=1e-7)
    assert sq(w, q.decompress(state)) == pytest.approx(best, rel=1e-6)
    assert state.bits == 9 + 32


def ternary_brute(w):
    """min over every code vector z ∈ {−1, 0, 1}^n of min_a ‖w − a z‖² (a = ⟨w, z⟩/‖z‖²)."""
    best = math.inf
    for z in itertools.product((-1.0, 0.0, 1.0), repeat=w.numel()):
        z = torch.tensor(z, dtype=torch.float64)
        zz = float((z * z).sum())
        a = float((w * z).sum()) / zz if zz else 0.0
        best = min(best, sq(w, a * z))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_scaled_ternary_against_brute_force_over_codes(seed):
    w = sample(KINDS[seed], 7, torch.Generator().manual_seed(seed))
    q = lc.ScaledTernaryQuantization()
    assert sq(w, q.decompress(q.compress(w, 1.0))) == pytest.approx(ternary_brute(w), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_scaled_ternary_against_brute_force_over_thresholds(kind):
    """For every threshold t: θ = a·sign(w)·[|w| ≥ t] with its best a; the C step must match the best t."""
    w = sample(kind, 300, torch.Generator().manual_seed(11))
    best = sq(w, torch.zeros_like(w))
    for t in w.abs().unique():
        z = torch.sign(w) * (w.abs() >= t)
        a = float((w * z).sum() / (z * z).sum())
        best = min(best, sq(w, a * z))
    q = lc.ScaledTernaryQuantization()
    s = q.compress(w, 1.0)
    out = q.decompress(s)
    assert sq(w, out) == pytest.approx(best, rel=1e-6)
    assert out.unique().numel() <= 3 and s.bits == 2 * 300 + 32
    assert s.meta["encoding"] == {"codes": "uint:2", "scale": "f32"}


def test_ternary_of_zeros_is_zero():
    q = lc.ScaledTernaryQuantization()
    assert torch.equal(q.decompress(q.compress(torch.zeros(5), 1.0)), torch.zeros(5))

# ----------------------------------------------------------------------------------------------- affine


def affine_error(w, s, z, bits):
    """‖w − s(q − z)‖² with the best codes, for one scale or a 1-D tensor of scales (then one error each)."""
    s = torch.as_tensor(s, dtype=torch.float64).reshape(-1, 1)
    q = torch.clamp(torch.round(w.reshape(1, -1) / s + z), 0, 2 ** bits - 1)
    err = ((w.reshape(1, -1) - s * (q - z)) ** 2).sum(1)
    return float(err[0]) if err.numel() == 1 else err


def grid_optimum(w, bits, symmetric, points=4000):
    """A fine grid over the scale S (and every zero point Z when asymmetric): the best error found."""
    top = float(w.abs().max()) * 2 / max(2 ** bits - 1, 1) * 1.5
    zs = [2 ** (bits - 1)] if symmetric else range(2 ** bits)
    grid = torch.linspace(top / points, top, points, dtype=torch.float64)
    return min(float(affine_error(w, grid, z, bits).min()) for z in zs)


def minmax_error(w, bits, symmetric):
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    if symmetric:
        half = 2 ** (bits - 1)
        s = max(-lo / half, hi / (half - 1))
        return affine_error(w, s, half, bits)
    s = (hi - lo) / (2 ** bits - 1)
    return affine_error(w, s, min(max(round(-lo / s), 0), 2 ** bits - 1), bits)


@pytest.mark.parametrize("bits,symmetric", [(2, True), (3, True), (4, True), (8, True),
                                            (1, False), (2, False), (3, False), (4, False)])
def test_affine_against_fine_grid_and_minmax(bits, symmetric):
    """Never worse than min–max, and (exact at this size) no worse than any of a fine grid of scales (× every Z)."""
    q = lc.AffineQuantization(bits, symmetric=symmetric)
    for seed, kind in enumerate(["gauss", "laplace", "mixture", "uniform"]):
        w = sample(kind, 60, torch.Generator().manual_seed(seed))
        if kind == "uniform":
            w = w + 0.3                                                      # all positive: asymmetric grids
        ours = sq(w, q.decompress(q.compress(w, 1.0)))
        assert ours <= minmax_error(w, bits, symmetric) * (1 + 1e-6)
        assert ours <= grid_optimum(w, bits, symmetric, points=4000 if bits <= 4 else 1500) * (1 + 1e-5), kind


@pytest.mark.parametrize("bits,tol", [(3, 1e-6), (4, 1e-6), (8, 0.01)])
def test_affine_search_alone_against_the_exact_scale(bits, tol, monkeypatch):
    """Beyond the size of the exact sweep the C step is a search: how far above the exact optimum over S it ends
    (the docstring quotes these numbers)."""
    from lc.compression import affine
    q = lc.AffineQuantization(bits)
    for kind in ("gauss", "laplace", "mixture"):
        w = sample(kind, 2000, torch.Generator().manual_seed(1))
        exact = sq(w, q.decompress(q.compress(w, 1.0)))
        monkeypatch.setattr(affine, "EXACT_BUDGET", 0)
        searched = sq(w, q.decompress(q.compress(w, 1.0)))
        monkeypatch.undo()
        assert exact <= searched * (1 + 1e-6)
        assert searched <= exact * (1 + tol), kind


@pytest.mark.parametrize("bits,symmetric", [(8, True), (4, False)])
def test_affine_large_inputs_search_on_order_statistics(bits, symmetric, monkeypatch):
    """Above 2¹⁵ weights the search runs on order statistics: never worse than min–max, and within 1% of the
    search on every weight."""
    from lc.compression import affine
    w = sample("laplace", 40_000, torch.Generator().manual_seed(2))
    q = lc.AffineQuantization(bits, symmetric=symmetric)
    sampled = sq(w, q.decompress(q.compress(w, 1.0)))
    assert sampled <= minmax_error(w, bits, symmetric) * (1 + 1e-6)
    monkeypatch.setattr(affine, "SEARCH_SIZE", 1 << 40)
    assert sampled <= sq(w, q.decompress(q.compress(w, 1.0))) * 1.01


def test_affine_rows_longer_than_2_24():
    """A row of more than 2²⁴ weights: the order statistics' indices are exact (a float32 grid of indices rounded the
    last one up to the row's length, past its end). Mostly zeros, so that it is cheap."""
    w = torch.zeros((1 << 24) + 3)
    w[::4096] = torch.linspace(-1, 1, w[::4096].numel())
    w[-1] = 2.0                                                      # the maximum is the last order statistic
    for q in (lc.AffineQuantization(8), lc.AffineQuantization(4, symmetric=False)):
        out = q.decompress(q.compress(w, 1.0))
        assert sq(w, out) <= minmax_error(w, q.bits, q.symmetric) * (1 + 1e-6)


def test_exact_scale_sweep_against_a_fine_grid():
    from lc.compression.affine import _best_scale
    for seed in range(4):
        w = sample("laplace", 15, torch.Generator().manual_seed(seed))[None, :]
        for bits, z in ((3, 4), (3, 2), (2, 0), (4, 8)):
            s = _best_scale(w, torch.tensor([float(z)], dtype=torch.float64), 2 ** bits - 1)
            ours = affine_error(w[0], s[0], z, bits)
            top = float(w.abs().max()) * 3
            grid = float(affine_error(w[0], torch.linspace(top / 20000, top, 20000, dtype=torch.float64), z,
                                      bits).min())
            assert ours <= grid * (1 + 1e-9)


def test_affine_state_per_channel_and_storage():
    w = torch.randn(6, 20) * torch.logspace(-2, 1, 6)[:, None]
    per_row = lc.AffineQuantization(4, symmetric=False, per_channel=True)
    s = per_row.compress(w, 1.0)
    assert s.tensors["scale"].shape == (6,) and s.tensors["zero_point"].shape == (6,)
    assert s.meta["encoding"] == {"codes": "uint:4", "scale": "f32", "zero_point": "uint:4"}
    assert s.bits == 120 * 4 + 6 * (32 + 4)
    out = per_row.decompress(s)
    one = lc.AffineQuantization(4, symmetric=False)
    for r in range(6):                                  # per channel = each row on its own
        torch.testing.assert_close(out[r], one.decompress(one.compress(w[r], 1.0)))
    assert sq(w, out) < sq(w, one.decompress(one.compress(w, 1.0)))
    codes = s.tensors["codes"]
    assert codes.dtype == torch.uint8 and int(codes.max()) <= 15
    sym = lc.AffineQuantization(8).compress(w, 1.0)
    assert set(sym.tensors) == {"codes", "scale"} and sym.bits == 120 * 8 + 32
    wide = lc.AffineQuantization(12).compress(w, 1.0)
    assert wide.tensors["codes"].dtype == torch.int32 and int(wide.tensors["codes"].max()) <= 4095


def test_affine_keeps_a_grid_exactly():
    s, z = 0.037, 5
    w = s * (torch.tensor([0, 3, 5, 6, 9, 15], dtype=torch.float64) - z)
    q = lc.AffineQuantization(4, symmetric=False)
    torch.testing.assert_close(q.decompress(q.compress(w, 1.0)), w, rtol=1e-6, atol=1e-9)


def test_affine_rejects_impossible_settings():
    for bad in (0, 17, 4.0, True):
        with pytest.raises(lc.CompressionError, match="bits must be an integer from 1 to 16"):
            lc.AffineQuantization(bad).check(torch.Size([5]))
    with pytest.raises(lc.CompressionError, match="ScaledBinaryQuantization"):
        lc.AffineQuantization(1).check(torch.Size([5]))
    with pytest.raises(lc.CompressionError, match="True or False"):
        lc.AffineQuantization(4, symmetric="yes").check(torch.Size([5]))
    with pytest.raises(lc.CompressionError, match="NaN"):
        lc.AffineQuantization(4).compress(torch.tensor([float("inf"), 1.0]), 1.0)

# ------------------------------------------------------------------------------------- an LC run, digits


def test_lc_digits_two_values_per_layer():
    """k = 2 per layer on the 64-32-10 MLP: at most 2 distinct values per layer and test error within 4 points of
    the reference (measured: 2.0% reference, 4.6% after LC, 80% for direct compression). About 3 s."""
    from tests import digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                # tiny tensors: a shared CPU's thread pool would only slow it down
    try:
        net = digits.reference()
        ref = digits.test_error(net)
        tasks = {lc.Param(net[0].weight): (lc.AsVector, lc.AdaptiveQuantization(k=2)),
                 lc.Param(net[2].weight): (lc.AsVector, lc.AdaptiveQuantization(k=2))}
        alg = lc.Algorithm(net, tasks, lc.geometric_mu(5e-3, 1.15, 50), digits.l_step(epochs=2, lr=0.1, decay=0.98),
                           digits.test_error)
        history = alg.run()
    finally:
        torch.set_num_threads(threads)
    for layer in (net[0].weight, net[2].weight):
        assert layer.unique().numel() <= 2
    err = digits.test_error(net)
    assert err == history[-1].evaluation
    assert err <= ref + 0.04, (err, ref)
    assert err < history[0].evaluation / 4          # far better than quantizing the reference directly
    assert history[-1].bits == (64 * 32 + 32 * 10) * 1 + 2 * 2 * 32
