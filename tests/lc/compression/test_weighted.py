"""Oracle tests for the data-aware C steps (brute force over assignments, supports and N:M patterns; an eigen-
decomposition for whitened low rank), the statistics they bind from a calibration batch, and the groups view."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import lc
from lc.compression import _kmeans1d
from lc.compression.weighted import _weighted_rows


def _rand(shape, seed, scale=1.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _weights(shape, seed):
    return 0.05 + torch.rand(shape, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64) * 3


def _objective(w, d, delta):
    return float((d * (w - delta) ** 2).sum())


def _dc(c, w):
    return c.decompress(c.compress(w, 1.0))


def _brute_kmeans(w, d, k):
    """min over every assignment of the values to k clusters (centroids: weighted means)."""
    x, d = w.reshape(-1), d.reshape(-1)
    best = np.inf
    for z in itertools.product(range(k), repeat=x.numel()):
        z = torch.tensor(z)
        cost = 0.0
        for j in range(k):
            m = z == j
            if m.any():
                c = (d[m] * x[m]).sum() / d[m].sum()
                cost += float((d[m] * (x[m] - c) ** 2).sum())
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3])
def test_weighted_kmeans_equals_brute_force(seed, k):
    w, d = _rand(7, seed), _weights(7, seed)
    c = lc.WeightedAdaptiveQuantization(k=k, damp=1e-12).weighted_by(d)
    got = _objective(w, d / d.mean() + 1e-12, _dc(c, w))
    assert got == pytest.approx(_brute_kmeans(w, d / d.mean() + 1e-12, k), rel=1e-9, abs=1e-12)


def test_weighted_kmeans_moves_the_codebook_towards_heavy_weights():
    w = torch.tensor([0.0, 1.0, 2.0, 10.0], dtype=torch.float64)
    heavy = torch.tensor([1.0, 1.0, 100.0, 1.0], dtype=torch.float64)    # 2.0 matters most
    delta = _dc(lc.WeightedAdaptiveQuantization(k=2, damp=1e-9).weighted_by(heavy), w)
    plain = _dc(lc.AdaptiveQuantization(k=2), w)
    assert abs(float(delta[2]) - 2.0) < 0.05 and abs(float(plain[2]) - 2.0) > 0.5


@pytest.mark.parametrize("kind", ["gauss", "laplace", "duplicates"])
def test_weighted_fast_path_equals_exact_dp(kind, monkeypatch):
    g = torch.Generator().manual_seed(3)
    w = {"gauss": torch.randn(2500, generator=g), "laplace": torch.distributions.Laplace(0, 1).sample((2500,)),
         "duplicates": torch.randint(-40, 40, (2500,), generator=g).double() / 7}[kind].double()
    d = _weights(2500, 5)
    exact = _kmeans1d.kmeans(w, 8, exact=True, weights=d)
    monkeypatch.setattr(_kmeans1d, "SUMMARY", 64)
    fast = _kmeans1d.kmeans(w, 8, weights=d)

    def cost(c):
        q = c[torch.argmin((w[:, None] - c[None]).abs(), 1)]
        return float((d * (w - q) ** 2).sum())
    assert cost(fast) == pytest.approx(cost(exact), rel=1e-9)


def test_weighted_kmeans_per_row_equals_each_row_alone():
    x, d = _rand((5, 40), 1), _weights((5, 40), 1)
    rows = _weighted_rows(x, d, 4)
    for r in range(5):
        alone = _kmeans1d.kmeans(x[r], 4, exact=True, weights=d[r])
        assert torch.allclose(rows[r], alone, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kappa", [0, 2, 5])
def test_weighted_l0_equals_brute_force(seed, kappa):
    w, d = _rand(7, seed), _weights(7, seed)
    dn = d / d.mean() + 0.01
    best = min(_objective(w, dn, torch.where(torch.isin(torch.arange(7), torch.tensor(s, dtype=torch.long)), w, 0))
               for s in itertools.combinations(range(7), kappa))
    assert _objective(w, dn, _dc(lc.WeightedL0Pruning(kappa=kappa).weighted_by(d), w)) == pytest.approx(best)


@pytest.mark.parametrize("weighted", [False, True])
def test_nm_pruning_equals_brute_force_per_group(weighted):
    w, d = _rand((3, 8), 2), _weights((3, 8), 2)
    c = lc.WeightedNMPruning(n=2, m=4).weighted_by(d) if weighted else lc.NMPruning(n=2, m=4)
    dn = d / d.mean() + 0.01 if weighted else torch.ones_like(w)
    delta = _dc(c, w)
    best = 0.0
    for g in range(6):
        wg, dg = w.reshape(-1, 4)[g], dn.reshape(-1, 4)[g]
        best += min(float((dg * wg ** 2).sum() - (dg[list(s)] * wg[list(s)] ** 2).sum())
                    for s in itertools.combinations(range(4), 2))
        assert int((delta.reshape(-1, 4)[g] != 0).sum()) <= 2
    assert _objective(w, dn, delta) == pytest.approx(best)


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("r", [1, 3])
def test_whitened_low_rank_against_an_eigendecomposition(axis, r):
    w = _rand((6, 9), 4)
    n_in = w.shape[axis]
    x = _rand((n_in, 50), 5) * torch.linspace(0.1, 3, n_in, dtype=torch.float64)[:, None]
    h = x @ x.T / 50
    c = lc.WhitenedLowRank(r, damp=1e-9).whitened_by(h, axis=axis)
    delta = _dc(c, w)
    a = w if axis == 1 else w.T                                         # (out, in)
    hd = h + 1e-9 * h.diagonal().mean() * torch.eye(n_in, dtype=torch.float64)
    # the optimum: Δ = A P with P the hd-orthogonal projector on the top-r eigenvectors of hd^½ Aᵀ A hd^½
    evals, evecs = torch.linalg.eigh(hd)
    root = evecs @ torch.diag(evals.sqrt()) @ evecs.T
    _, vecs = torch.linalg.eigh(root @ a.T @ a @ root)
    v = vecs[:, -r:]
    best = a @ root @ v @ v.T @ torch.linalg.inv(root)
    err = lambda d: float(torch.trace((a - d) @ hd @ (a - d).T))      # noqa: E731
    ours = delta if axis == 1 else delta.T
    assert int(torch.linalg.matrix_rank(ours)) <= r
    assert err(ours) == pytest.approx(err(best), rel=1e-8, abs=1e-12)
    plain = _dc(lc.LowRank(r), w)
    assert err(ours) <= err(plain if axis == 1 else plain.T) + 1e-12


def test_statistics_need_a_calibration_batch_and_a_linear_layer():
    net = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 10))
    x = torch.randint(0, 10, (4, 5))
    with pytest.raises(lc.CompressionError, match="example_input"):
        lc.Compressed.direct(net, {lc.Param("1.weight"): (lc.AsIs, lc.WeightedL0Pruning(kappa=4))})
    with pytest.raises(lc.CompressionError, match="not the weight of a linear layer"):
        lc.Compressed.direct(net, {lc.Param("0.weight"): (lc.AsIs, lc.WeightedL0Pruning(kappa=4))}, example_input=x)
    with pytest.raises(lc.CompressionError, match="needs its layer's input statistics"):
        lc.WeightedL0Pruning(kappa=4).compress(torch.randn(3, 3), 1.0)


def test_bound_weights_are_the_inputs_mean_squares_and_are_not_stored(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 3, bias=False))
    x = torch.randn(32, 4) * torch.tensor([0.1, 1.0, 2.0, 5.0])
    c = lc.WeightedAdaptiveQuantization(k=2)
    comp = lc.Compressed.direct(net, {lc.Param("0.weight"): (lc.AsIs, c)}, example_input=x)
    bound = comp.tasks[0].step.compression
    h = (x ** 2).mean(0).double()
    expected = (h / h.mean())[None].expand(6, 4) + 0.01
    assert torch.allclose(bound.weights(net[0].weight.detach()), expected)
    assert bound == c and "_stats" not in repr(bound)                   # not a hyperparameter
    lc.save(tmp_path / "m.lc", net, comp)
    fresh = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 3, bias=False))
    lc.load(tmp_path / "m.lc", fresh)                                   # Δ(Θ) without the statistics
    assert torch.equal(fresh[0].weight, comp.deltas()["0.weight"])


def test_a_tied_weight_gets_the_statistics_of_the_layer_that_multiplies_an_input_by_it():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.head = nn.Embedding(5, 4), nn.Linear(4, 5, bias=False)
            self.head.weight = self.tok.weight

        def forward(self, ids):
            return self.head(2 * self.tok(ids))
    net = Tied()
    ids = torch.randint(0, 5, (3, 7))
    comp = lc.Compressed.direct(net, {lc.Param("tok.weight"): (lc.AsIs, lc.WeightedL0Pruning(kappa=8))},
                                example_input=ids)
    (axis, moments), = comp.tasks[0].step.compression._stats[3]
    assert axis == 1 and torch.allclose(moments, (2 * net.tok(ids)).detach().reshape(-1, 4).double().pow(2).mean(0))


def test_as_groups_view_gives_one_scale_per_group():
    net = nn.Linear(8, 3, bias=False)
    c = lc.AffineQuantization(bits=2, symmetric=False, per_channel=True)
    comp = lc.Compressed.direct(net, {lc.Param("weight"): (lc.AsGroups(4), c)})
    state = comp.states[0]
    assert state.tensors["scale"].numel() == 6 and state.bits == 24 * 2 + 6 * (32 + 2)
    delta = comp.deltas()["weight"]
    for g in delta.reshape(6, 4):                                       # each group on its own 4-level grid
        assert g.unique().numel() <= 4
    t = torch.randn(8, 3)
    view = lc.AsGroups(4, axis=0)
    assert torch.equal(view.unflatten(view.flatten([t]), [t.shape])[0], t)
    assert torch.equal(view.flatten([t])[0], t[:4, 0])                   # a group runs along the input axis
    with pytest.raises(lc.CompressionError, match="not a multiple of the group size"):
        lc.Compressed.direct(net, {lc.Param("weight"): (lc.AsGroups(3), c)})


def test_as_groups_with_codebooks_counts_one_codebook_per_group_plain_or_weighted():
    torch.manual_seed(1)
    net = nn.Linear(16, 4, bias=False)
    x = torch.randn(64, 16) * torch.linspace(0.1, 3, 16)
    for c in (lc.AdaptiveQuantization(k=2, per_channel=True), lc.WeightedAdaptiveQuantization(k=2, per_channel=True)):
        comp = lc.Compressed.direct(net, {lc.Param("weight"): (lc.AsGroups(8), c)}, example_input=x)
        assert comp.states[0].bits == 64 * 1 + 8 * 2 * 32                  # 1-bit codes, 8 groups × 2 float32 entries
        assert all(g.unique().numel() <= 2 for g in comp.deltas()["weight"].reshape(8, 8))
