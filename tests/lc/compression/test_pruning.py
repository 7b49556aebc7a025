"""Oracle tests for the pruning C steps: brute force over supports, and an independent QP for the ℓ1 ball."""
import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import torch

import lc
from lc.compression._coding import gap_code_bits, gaps, position_bits
from lc.compression.pruning import project_l1_ball


def _rand(n, seed):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _dc(c, w, mu=1.0):
    return c.decompress(c.compress(w, mu))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kappa", [0, 1, 3, 7])
def test_l0_constraint_equals_brute_force(seed, kappa):
    w = _rand(7, seed)
    best = min((float(((w - torch.where(torch.isin(torch.arange(7), torch.tensor(s, dtype=torch.long)), w, 0)) ** 2)
                      .sum()), s) for r in range(kappa + 1) for s in itertools.combinations(range(7), r))
    theta = _dc(lc.ConstraintL0Pruning(kappa=kappa), w)
    assert float(((w - theta) ** 2).sum()) == pytest.approx(best[0], abs=1e-12)
    assert int((theta != 0).sum()) <= kappa


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha,mu", [(0.1, 1.0), (0.5, 2.0), (0.02, 0.5)])
def test_l0_penalty_equals_brute_force(seed, alpha, mu):
    w = _rand(7, seed)

    def objective(support):
        theta = torch.zeros_like(w)
        theta[list(support)] = w[list(support)]
        return alpha * len(support) + mu / 2 * float(((w - theta) ** 2).sum())

    best = min(objective(s) for r in range(8) for s in itertools.combinations(range(7), r))
    theta = _dc(lc.PenaltyL0Pruning(alpha=alpha), w, mu)
    assert objective(torch.nonzero(theta).flatten().tolist()) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha,mu", [(0.1, 1.0), (0.5, 2.0), (1.0, 0.7)])
def test_l1_penalty_equals_numerical_minimum(seed, alpha, mu):
    w = _rand(6, seed).numpy()
    f = lambda t: alpha * np.abs(t).sum() + mu / 2 * ((w - t) ** 2).sum()  # noqa: E731
    theta = _dc(lc.PenaltyL1Pruning(alpha=alpha), torch.tensor(w), mu).numpy()
    # the objective is separable and convex: check each coordinate against a bounded scalar minimisation
    for i in range(len(w)):
        r = scipy.optimize.minimize_scalar(lambda t: alpha * abs(t) + mu / 2 * (w[i] - t) ** 2,
                                           bounds=(-5, 5), method="bounded", options={"xatol": 1e-10})
        assert theta[i] == pytest.approx(r.x, abs=1e-6)
    assert f(theta) <= f(theta + 1e-4 * np.random.default_rng(seed).standard_normal(len(w)))


def _l1_qp(w, radius):
    """Independent solver: the QP min ‖p − n − w‖² s.t. p, n ≥ 0, Σ(p + n) ≤ radius (interior point)."""
    n = len(w)
    obj = lambda z: ((z[:n] - z[n:] - w) ** 2).sum()  # noqa: E731
    grad = lambda z: np.concatenate([2 * (z[:n] - z[n:] - w), -2 * (z[:n] - z[n:] - w)])  # noqa: E731
    hess = lambda z: 2 * np.block([[np.eye(n), -np.eye(n)], [-np.eye(n), np.eye(n)]])  # noqa: E731
    r = scipy.optimize.minimize(obj, np.full(2 * n, radius / (4 * n)), jac=grad, hess=hess, method="trust-constr",
                                bounds=scipy.optimize.Bounds(0, np.inf),
                                constraints=[scipy.optimize.LinearConstraint(np.ones((1, 2 * n)), -np.inf, radius)],
                                options={"gtol": 1e-12, "xtol": 1e-14, "maxiter": 5000})
    return r.x[:n] - r.x[n:]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("radius", [0.0, 0.3, 1.5, 4.0, 100.0])
def test_l1_constraint_equals_qp(seed, radius):
    w = _rand(8, seed).numpy()
    theta = _dc(lc.ConstraintL1Pruning(kappa=radius), torch.tensor(w)).numpy()
    np.testing.assert_allclose(theta, _l1_qp(w, radius), atol=1e-5)
    assert np.abs(theta).sum() <= radius + 1e-9


def test_l1_projection_lands_on_the_ball_and_is_not_a_rescaling():
    # the ancestor's bug class: a projection must soft-threshold, not scale w down to the ball
    w = torch.tensor([3.0, 1.0, -0.5, 0.2], dtype=torch.float64)
    theta = project_l1_ball(w, 2.0)
    torch.testing.assert_close(theta, torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    w = torch.tensor([3.0, 2.5, -0.5], dtype=torch.float64)
    torch.testing.assert_close(project_l1_ball(w, 2.5), torch.tensor([1.5, 1.0, 0.0], dtype=torch.float64))
    big = _rand(10_000, 3)
    assert float(project_l1_ball(big, 10.0).abs().sum()) == pytest.approx(10.0, rel=1e-10)


def test_penalty_thresholds():
    w = torch.tensor([0.5, -1.5, 2.5, -0.1])
    # hard threshold √(2α/μ) = 1 with α = 0.5, μ = 1
    torch.testing.assert_close(_dc(lc.PenaltyL0Pruning(alpha=0.5), w), torch.tensor([0.0, -1.5, 2.5, 0.0]))
    # soft threshold α/μ = 1
    torch.testing.assert_close(_dc(lc.PenaltyL1Pruning(alpha=0.5), w, 0.5), torch.tensor([0.0, -0.5, 1.5, 0.0]))


def _brute_gap_bits(positions, b):
    m = (1 << b) - 1
    g = gaps(torch.tensor(positions))
    return b * sum(int(x) // m + 1 for x in g)


def test_position_coding_costs():
    positions = [0, 1, 5, 40, 41, 300]
    bits, width = gap_code_bits(torch.tensor(positions))
    assert bits == min(_brute_gap_bits(positions, b) for b in range(1, 33))
    assert bits == _brute_gap_bits(positions, width)
    # a dense-ish tensor uses the bitmap, a very sparse one the gap code
    assert position_bits(torch.arange(100), 100) == (100, "bitmap", 1)
    b, coding, width = position_bits(torch.tensor([7, 90_000]), 100_000)
    assert coding == "gap" and b == _brute_gap_bits([7, 90_000], width) < 100_000
    assert position_bits(torch.tensor([], dtype=torch.long), 50) == (0, "gap", 1)


def test_sparse_state_bits_and_round_trip():
    w = torch.zeros(1000)
    w[[3, 500, 999]] = torch.tensor([1.0, -2.0, 3.0])
    s = lc.ConstraintL0Pruning(kappa=10).compress(w, 1.0)
    assert s.tensors["values"].numel() == 3                 # zeros kept by the budget cost nothing
    assert s.bits == 3 * 32 + position_bits(torch.tensor([3, 500, 999]), 1000)[0]
    assert torch.equal(lc.ConstraintL0Pruning(kappa=10).decompress(s), w)


@pytest.mark.parametrize("dtype,width", [(torch.float64, 64), (torch.bfloat16, 16), (torch.float16, 16),
                                         (torch.float32, 32)])
def test_kept_values_are_counted_at_the_width_of_their_dtype(dtype, width):
    """The kept values are w's own ("float"): stored in its dtype, so counted at its width."""
    w = torch.randn(1000, generator=torch.Generator().manual_seed(0)).to(dtype)
    for c in (lc.ConstraintL0Pruning(kappa=100), lc.ConstraintL1Pruning(kappa=50.0), lc.PenaltyL0Pruning(alpha=0.5),
              lc.PenaltyL1Pruning(alpha=0.5)):
        s = c.compress(w, 1.0)
        values = s.tensors["values"]
        assert s.meta["encoding"] == {"values": "float", "indices": "positions"} and values.dtype == dtype
        assert 0 < values.numel() < 1000
        assert s.bits == width * values.numel() + position_bits(s.tensors["indices"], 1000)[0]


@pytest.mark.parametrize("make", [lambda: lc.ConstraintL0Pruning(kappa=-1), lambda: lc.ConstraintL0Pruning(kappa=11),
                                  lambda: lc.ConstraintL0Pruning(kappa=2.5)])
def test_l0_budget_validated(make):
    with pytest.raises(lc.CompressionError, match="kappa must be an integer between 0 and 10"):
        make().check(torch.Size([10]))


@pytest.mark.parametrize("c,msg", [(lc.ConstraintL1Pruning(kappa=-1.0), "radius of the ℓ1 ball"),
                                   (lc.PenaltyL0Pruning(alpha=-1), "alpha weighs the penalty"),
                                   (lc.PenaltyL1Pruning(alpha=math.inf), "alpha weighs the penalty")])
def test_other_hyperparameters_validated(c, msg):
    with pytest.raises(lc.CompressionError, match=msg):
        c.check(torch.Size([10]))
