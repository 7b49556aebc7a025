"""PrunedQuantization: the exact joint pruning + codebook C step, against brute force and the greedy baseline."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import lc


def brute_force(w: np.ndarray, kappa: int, k: int) -> float:
    """min ‖w − θ‖² over every labelling of the values by {0, 1…k}: label 0 → 0, label c → the mean of its
    values (the best centre for that labelling), with at most κ values labelled nonzero."""
    best = np.inf
    for labels in itertools.product(range(k + 1), repeat=w.size):
        labels = np.array(labels)
        if (labels > 0).sum() > kappa:
            continue
        theta = np.zeros_like(w)
        for c in range(1, k + 1):
            if (labels == c).any():
                theta[labels == c] = w[labels == c].mean()
        best = min(best, float(((w - theta) ** 2).sum()))
    return best


INPUTS = {
    "gauss": np.random.default_rng(0).normal(size=6),
    "ties": np.array([0.5, 0.5, 0.5, -1.0, 2.0, 0.5, -1.0]),
    "negative": -np.abs(np.random.default_rng(1).normal(size=6)) - 0.1,
    "zeros": np.array([0.0, 0.0, 1.5, -0.2, 3.0, 0.0]),
    "skewed": np.random.default_rng(2).exponential(size=6) - 0.3,
}


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("kappa,k", [(0, 2), (1, 1), (2, 1), (3, 2), (4, 2), (6, 2), (7, 3), (5, 3)])
def test_equals_brute_force(name, kappa, k):
    w = INPUTS[name]
    kappa = min(kappa, w.size)
    q = lc.PrunedQuantization(kappa=kappa, k=k)
    t = torch.tensor(w, dtype=torch.float64)
    q.check(t.shape)
    theta = q.decompress(q.compress(t, mu=1.0))
    assert int((theta != 0).sum()) <= kappa
    assert theta[theta != 0].unique().numel() <= k
    cost = float(((t - theta) ** 2).sum())
    assert cost == pytest.approx(brute_force(w, kappa, k), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dist", ["gauss", "laplace"])
def test_never_worse_than_pruning_then_quantizing(dist):
    rng = np.random.default_rng(3)
    w = torch.tensor(rng.normal(size=2000) if dist == "gauss" else rng.laplace(size=2000), dtype=torch.float32)
    kappa, k = 200, 4
    joint = lc.PrunedQuantization(kappa=kappa, k=k)
    theta = joint.decompress(joint.compress(w, mu=1.0))
    prune = lc.ConstraintL0Pruning(kappa=kappa)
    kept = prune.decompress(prune.compress(w, 1.0))
    nz = kept != 0
    quant = lc.AdaptiveQuantization(k=k)
    greedy = kept.clone()
    greedy[nz] = quant.decompress(quant.compress(kept[nz], 1.0))
    err_joint, err_greedy = float(((w - theta) ** 2).sum()), float(((w - greedy) ** 2).sum())
    assert int((theta != 0).sum()) <= kappa and theta[theta != 0].unique().numel() <= k
    assert err_joint <= err_greedy * (1 + 1e-6)
    # with κ ≥ N it is k-means with a free level at zero: never worse than AdaptiveQuantization(k) alone
    free = lc.PrunedQuantization(kappa=w.numel(), k=k)
    full = quant.decompress(quant.compress(w, 1.0))
    assert float(((w - free.decompress(free.compress(w, 1.0))) ** 2).sum()) <= float(((w - full) ** 2).sum()) * (1 + 1e-6)


def sse(w, q):
    return float(((w - q.decompress(q.compress(w, 1.0))) ** 2).sum())


def test_equals_the_free_zero_level_quantization_once_that_is_feasible():
    """With κ = N the problem is k-means with an extra level fixed at 0 (a relaxation of every κ). Once κ reaches
    that solution's count of nonzeros it is feasible, so the optimum equals it; below, the optimum is no better."""
    w = torch.tensor(np.random.default_rng(4).standard_t(3, size=2000))
    k = 3
    free = lc.PrunedQuantization(kappa=w.numel(), k=k)
    nnz = int((free.decompress(free.compress(w, 1.0)) != 0).sum())
    assert nnz < w.numel()
    assert sse(w, lc.PrunedQuantization(kappa=nnz, k=k)) == pytest.approx(sse(w, free), rel=1e-9)
    assert sse(w, lc.PrunedQuantization(kappa=nnz - 50, k=k)) > sse(w, free)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_cases(dtype):
    w = torch.tensor([0.25, -1.5, 0.25, 0.0, 3.0, -1.5], dtype=dtype)
    assert torch.equal(lc.PrunedQuantization(kappa=0, k=3).decompress(lc.PrunedQuantization(kappa=0, k=3)
                                                                       .compress(w, 1.0)), torch.zeros_like(w))
    q = lc.PrunedQuantization(kappa=6, k=3)                   # κ ≥ N and ≤ k distinct nonzero values: w itself
    state = q.compress(w, 1.0)
    assert torch.equal(q.decompress(state), w) and state.tensors["codebook"].tolist() == [-1.5, 0.25, 3.0]
    # a centre that rounds to 0 in float32 (how the codebook is stored) prunes its run instead of joining another
    tiny = torch.tensor([1e-46, 1e-46, 5.0, 7.0], dtype=torch.float64)
    q = lc.PrunedQuantization(kappa=4, k=3)
    assert torch.equal(q.decompress(q.compress(tiny, 1.0)), torch.tensor([0.0, 0.0, 5.0, 7.0], dtype=torch.float64))


def test_storage_counts_positions_codes_and_codebook():
    w = torch.tensor([0.0, 3.0, 0.1, -2.0, 3.0, 0.0, -2.0, 0.05])
    state = lc.PrunedQuantization(kappa=4, k=2).compress(w, 1.0)
    assert torch.equal(lc.PrunedQuantization(kappa=4, k=2).decompress(state),
                       torch.tensor([0.0, 3.0, 0.0, -2.0, 3.0, 0.0, -2.0, 0.0]))
    from lc.compression._coding import position_bits
    assert state.bits == position_bits(state.tensors["indices"], 8)[0] + 4 * 1 + 2 * 32


@pytest.mark.parametrize("bad,match", [(dict(kappa=11, k=2), "between 0 and 10"), (dict(kappa=-1, k=2), "kappa"),
                                       (dict(kappa=3, k=0), "k is the number"), (dict(kappa=2.5, k=2), "integer")])
def test_bad_hyperparameters_say_what_to_change(bad, match):
    with pytest.raises(lc.CompressionError, match=match):
        lc.PrunedQuantization(**bad).check(torch.Size([10]))


def test_nan_weights_are_refused():
    with pytest.raises(lc.CompressionError, match="NaN"):
        lc.PrunedQuantization(kappa=2, k=2).compress(torch.tensor([1.0, float("nan"), 0.5]), 1.0)
