"""Additive combinations Δ = Σ_k Δ_k(Θ_k): block-coordinate descent never increases ‖w − ΣΔ_k‖² (constraint
forms), any number of parts, any number of additive tasks mixed with plain ones, storage = sum of the parts."""
import copy

import pytest
import torch

import lc
from lc._steps import AdditiveStep, Viewed
from tests import digits


def _step(pairs, shape, **kw):
    shapes = (torch.Size(shape),)
    return AdditiveStep(tuple(Viewed(v, c, shapes) for v, c in pairs), **kw)


def _dist(step, ws, state):
    return float(sum(((w - d) ** 2).sum() for w, d in zip(ws, step.decompress(state))))


PARTS = {
    "lowrank+sparse": [(lc.AsIs(), lc.LowRank(2)), (lc.AsVector(), lc.ConstraintL0Pruning(kappa=30))],
    "sparse+lowrank": [(lc.AsVector(), lc.ConstraintL0Pruning(kappa=30)), (lc.AsIs(), lc.LowRank(2))],
    "three parts": [(lc.AsIs(), lc.LowRank(1)), (lc.AsVector(), lc.ConstraintL0Pruning(kappa=20)),
                    (lc.AsIs(), lc.LowRank(2))],
    "l1 ball + lowrank": [(lc.AsVector(), lc.ConstraintL1Pruning(kappa=5.0)), (lc.AsIs(), lc.LowRank(3))],
    # the LC papers' pruning + binarization-like mix: a sparse correction on top of a 2-value codebook
    "sparse + k=2 quantization": [(lc.AsVector(), lc.ConstraintL0Pruning(kappa=30)),
                                  (lc.AsVector(), lc.AdaptiveQuantization(k=2))],
}


def _w(seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(20, 3, generator=g) @ torch.randn(3, 16, generator=g)
    spikes = torch.zeros(20 * 16)
    spikes[torch.randperm(320, generator=g)[:25]] = 5 * torch.randn(25, generator=g)
    return [low + spikes.reshape(20, 16) + 0.1 * torch.randn(20, 16, generator=g)]


@pytest.mark.parametrize("name", list(PARTS))
def test_objective_never_increases_from_round_to_round(name):
    ws = _w()
    # with tol = 0 the first k rounds of a (c_step_reps = k) step are the same for every k: their objectives are
    # the round-by-round sequence
    seq = [_dist(step, ws, step.compress(ws, 1.0))
           for step in (_step(PARTS[name], (20, 16), c_step_reps=k, tol=0.0) for k in range(1, 9))]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(seq, seq[1:])), seq
    assert seq[-1] < seq[0]                              # it makes progress after the first round
    # the first round starts with the first part alone on w, and the others can only improve on it
    view, c = PARTS[name][0]
    assert seq[0] <= float(((ws[0] - _alone(view, c, ws)) ** 2).sum()) * (1 + 1e-6)


def _alone(view, c, ws):
    (d,) = view.unflatten(c.decompress(c.compress(view.flatten(ws), 1.0)), [ws[0].shape])
    return d


@pytest.mark.parametrize("name", ["lowrank+sparse", "sparse+lowrank"])
def test_the_last_part_is_its_exact_c_step_on_the_residual(name):
    """Each block step is the part's own exact C step on w − Σ_{others}: checked on the last part, whose
    residual is the final one (the low-rank part is the truncated SVD, the sparse part the top-30 entries)."""
    ws = _w(1)
    step = _step(PARTS[name], (20, 16), c_step_reps=4, tol=0.0)
    s = step.compress(ws, 1.0)
    first, last = (p.decompress(st)[0] for p, st in zip(step.parts, s.parts))
    resid = ws[0] - first
    if name == "lowrank+sparse":
        keep = torch.topk(resid.reshape(-1).abs(), 30).indices
        expect = torch.zeros(320)
        expect[keep] = resid.reshape(-1)[keep]
        torch.testing.assert_close(last.reshape(-1), expect)
    else:
        U, S, Vh = torch.linalg.svd(resid.double())
        torch.testing.assert_close(last.double(), (U[:, :2] * S[:2]) @ Vh[:2], rtol=1e-5, atol=1e-5)


def test_stopping_rule_and_rounds():
    ws = _w()
    pairs = PARTS["lowrank+sparse"]
    assert _step(pairs, (20, 16), c_step_reps=7, tol=0.0).compress(ws, 1.0).meta["rounds"] == 7
    loose = _step(pairs, (20, 16), c_step_reps=50, tol=0.5).compress(ws, 1.0).meta["rounds"]
    tight = _step(pairs, (20, 16), c_step_reps=50, tol=1e-9).compress(ws, 1.0).meta["rounds"]
    assert 1 <= loose < tight                            # the default-style tol does not stop after one round


def test_storage_is_the_sum_of_the_parts():
    ws = _w()
    step = _step(PARTS["three parts"], (20, 16))
    s = step.compress(ws, 1.0)
    assert len(s.parts) == 3 and s.bits == sum(p.bits for p in s.parts)
    assert s.parts[0].bits == 32 * 1 * 36 and s.parts[2].bits == 32 * 2 * 36


def test_warm_start_continues_from_the_last_step():
    ws = _w()
    step = lambda k: _step(PARTS["lowrank+sparse"], (20, 16), c_step_reps=k, tol=0.0)  # noqa: E731
    three = step(3).compress(ws, 1.0)
    # 3 rounds, then 2 more warm-started from them, are the same as 5 rounds in one go
    torch.testing.assert_close(step(2).decompress(step(2).compress(ws, 1.0, previous=three))[0],
                               step(5).decompress(step(5).compress(ws, 1.0))[0])
    # on new weights (the next LC step) the warm start's objective is where the descent begins
    ws2 = [ws[0] + 0.05 * torch.randn(20, 16)]
    assert _dist(step(1), ws2, step(1).compress(ws2, 1.0, previous=three)) <= _dist(step(1), ws2, three)


class _Three(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = torch.nn.Linear(12, 10), torch.nn.Linear(10, 8), torch.nn.Linear(8, 6)

    def forward(self, x):
        return self.c(self.b(self.a(x)))


def test_several_additive_tasks_mixed_with_plain_ones_in_the_loop():
    net = _Three()
    tasks = {
        lc.Param(net.a.weight): [(lc.AsIs, lc.LowRank(2)), (lc.AsVector, lc.ConstraintL0Pruning(kappa=10))],
        lc.Param(net.a.bias): (lc.AsVector, lc.ConstraintL0Pruning(kappa=4)),
        lc.Param(net.b.weight): lc.Additive([(lc.AsIs, lc.LowRank(1)), (lc.AsIs, lc.LowRank(1)),
                                             (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))], c_step_reps=3),
        lc.Param(net.c.weight): (lc.AsIs, lc.RankSelection(alpha=1e-3)),
        lc.Param(net.c.bias): [(lc.AsVector, lc.ConstraintL0Pruning(kappa=2))],      # one pair: a plain task
    }
    w0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    alg = lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 2.0, 3), lambda *a: None, multipliers=False)
    history = alg.run()
    info = history[-1].info
    assert info["a.weight"]["parts"][0]["rank"] == 2 and info["b.weight"]["rounds"] <= 3
    assert [p["rank"] for p in info["b.weight"]["parts"][:2]] == [1, 1]
    assert "rank" in info["c.weight"] and "parts" not in info["c.bias"]
    assert history[-1].bits == sum(s.bits for s in alg.states)
    assert alg.states[0].bits == sum(p.bits for p in alg.states[0].parts)
    # the model holds Σ_k Δ_k: rank ≤ 2 + a sparse matrix of 10 entries
    a = net.a.weight.detach()
    sparse = alg.tasks[0].step.parts[1].decompress(alg.states[0].parts[1])[0]
    assert int((sparse != 0).sum()) <= 10 and int(torch.linalg.matrix_rank(a - sparse)) <= 2
    # no L step and λ = 0: every C step sees the same w, and each continues the descent where the last LC step
    # left it (warm start), so the distances never increase from step to step
    assert torch.equal(alg.uncompressed["a.weight"], w0["a.weight"])
    for name in ("a.weight", "b.weight"):
        d = [r.distance[name] for r in history]
        assert all(b <= a * (1 + 1e-6) for a, b in zip(d, d[1:])) and d[-1] < d[0], (name, d)


@pytest.mark.parametrize("value,message", [
    ([], "empty"),
    (lc.Additive([]), "empty"),
    (lc.Additive([(lc.AsIs, lc.LowRank(1))], c_step_reps=0), "integer ≥ 1"),
    (lc.Additive([(lc.AsIs, lc.LowRank(1))], tol=-1.0), "finite number ≥ 0"),
    ([(lc.AsIs, lc.LowRank(1)), lc.Additive([(lc.AsIs, lc.LowRank(1))])], "must be a \\(View, Compression\\) pair"),
    ([(lc.AsIs, lc.LowRank(1)), (lc.AsVector, lc.LowRank(1))], "needs a matrix"),
])
def test_validation(value, message):
    net = _Three()
    with pytest.raises(lc.CompressionError, match=message):
        lc.Algorithm(net, {lc.Param(net.a.weight): value}, [1.0], lambda *a: None)


def test_repr_is_its_hyperparameters():
    a = lc.Additive([(lc.AsIs(), lc.LowRank(2))], c_step_reps=4)
    assert repr(a) == "Additive(parts=((AsIs(scheme=1), LowRank(target_rank=2)),), c_step_reps=4, tol=1e-06)"


def test_lc_lowrank_plus_sparse_on_digits():
    """fc1 = rank 4 + 100 sparse weights: storage below the reference, test error within 3 points of it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = digits.reference()
        net = copy.deepcopy(reference)
        tasks = {lc.Param(net[0].weight): [(lc.AsIs, lc.LowRank(4)),
                                           (lc.AsVector, lc.ConstraintL0Pruning(kappa=100))]}
        history = lc.Algorithm(net, tasks, lc.geometric_mu(1e-3, 1.5, 12), digits.l_step(1),
                               digits.test_error).run()
    finally:
        torch.set_num_threads(threads)
    assert history[-1].bits <= 32 * 4 * 96 + 32 * 100 + 2048          # factors + values + positions (bitmap)
    assert history[-1].ratio > 1.5
    assert digits.test_error(net) <= digits.test_error(reference) + 0.03
