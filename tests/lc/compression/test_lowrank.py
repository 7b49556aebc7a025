"""Low rank: LowRank against torch.linalg.svd truncation, RankSelection against brute force over every rank,
the global budget against a scan of α, conv schemes and their export as two convolutions, an LC run on digits."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lc
from lc.compression.lowrank import _breakpoints
from tests import digits


def _matrix(m, n, decay=0.85, seed=0, dtype=torch.float32):
    """A random m×n matrix with singular values decaying geometrically (so that low rank is worth it)."""
    g = torch.Generator().manual_seed(seed)
    q1, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    k = min(m, n)
    s = 3.0 * decay ** torch.arange(k, dtype=torch.float64) * (1 + 0.1 * torch.rand(k, generator=g, dtype=torch.float64))
    return ((q1[:, :k] * s) @ q2[:, :k].T).to(dtype)


def _truncate(w, r):
    """The oracle: rank-r truncation from torch.linalg.svd in float64."""
    U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    return (U[:, :r] * S[:r]) @ Vh[:r]


# ----------------------------------------------------------------------------------------------- LowRank
@pytest.mark.parametrize("shape,r", [((12, 8), 1), ((12, 8), 3), ((8, 12), 4), ((30, 20), 7), ((30, 20), 15)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lowrank_equals_truncated_svd(shape, r, dtype):
    w = torch.randn(shape, dtype=dtype)
    c = lc.LowRank(target_rank=r)
    c.check(w.shape)
    s = c.compress(w, mu=1.0)
    out = c.decompress(s)
    assert out.dtype == dtype and s.meta["rank"] == r
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out.double(), _truncate(w, r), rtol=tol, atol=tol)
    m, n = shape
    width = torch.finfo(dtype).bits                     # "float": values in w's dtype, 32 or 64 bits each
    if r * (m + n) < m * n:
        assert s.meta["form"] == "factors" and s.bits == width * r * (m + n)
        assert s.tensors["U"].shape == (m, r) and s.tensors["V"].shape == (r, n)
        assert s.tensors["U"].dtype == dtype and s.meta["encoding"] == {"U": "float", "V": "float"}
    else:                                               # factors would cost more than the matrix: store it dense
        assert s.meta["form"] == "dense" and s.bits == width * m * n and set(s.tensors) == {"dense"}
        assert s.meta["encoding"] == {"dense": "float"}


@pytest.mark.parametrize("dtype,width", [(torch.float64, 64), (torch.bfloat16, 16), (torch.float16, 16)])
def test_factors_and_dense_are_counted_at_the_width_of_their_dtype(dtype, width):
    """U, V and the dense matrix are w's own values ("float"): stored in its dtype, so counted at its width."""
    w = _matrix(12, 8).to(dtype)
    for c, form in ((lc.LowRank(3), "factors"), (lc.LowRank(6), "dense"), (lc.RankSelection(alpha=1e-3), None)):
        s = c.compress(w, 1.0)
        assert form in (None, s.meta["form"])
        assert set(s.meta["encoding"].values()) == {"float"} and all(t.dtype == dtype for t in s.tensors.values())
        assert s.bits == width * sum(t.numel() for t in s.tensors.values())


def test_lowrank_error_is_the_singular_value_tail():
    w = torch.randn(20, 15, dtype=torch.float64)
    sigma = torch.linalg.svdvals(w)
    for r in (1, 5, 9):
        c = lc.LowRank(r)
        err = float(((w - c.decompress(c.compress(w, 1.0))) ** 2).sum())
        assert err == pytest.approx(float((sigma[r:] ** 2).sum()), rel=1e-10)


@pytest.mark.parametrize("c,shape,message", [
    (lc.LowRank(3), (40,), "needs a matrix"),
    (lc.LowRank(3), (4, 3, 3, 3), "use the view lc.AsIs"),
    (lc.LowRank(8), (12, 8), "between 1 and 7, the largest useful rank"),
    (lc.LowRank(0), (12, 8), "between 1 and 7"),
    (lc.LowRank(2.0), (12, 8), "must be an integer"),
    (lc.LowRank(1), (1, 8), "low rank cannot compress it"),
    (lc.RankSelection(), (12, 8), "exactly one of alpha"),
    (lc.RankSelection(alpha=1.0, budget=lc.RankBudget(2.0)), (12, 8), "exactly one of alpha"),
    (lc.RankSelection(alpha=-1.0), (12, 8), "finite number ≥ 0"),
    (lc.RankSelection(alpha=1.0, criterion="params"), (12, 8), "criterion must be one of"),
    (lc.RankSelection(alpha=1.0), (12,), "needs a matrix"),
])
def test_validation_messages(c, shape, message):
    with pytest.raises(lc.CompressionError, match=message):
        c.check(torch.Size(shape))


def test_validation_through_the_algorithm_names_the_task():
    net = torch.nn.Sequential(torch.nn.Linear(6, 4))
    with pytest.raises(lc.CompressionError, match=r"task '0.bias'.*use the view lc.AsIs"):
        lc.Algorithm(net, {lc.Param("0.bias"): (lc.AsIs, lc.LowRank(1))}, [1.0], lambda *a: None)
    with pytest.raises(lc.CompressionError, match=r"task '0.weight'.*largest useful rank"):
        lc.Algorithm(net, {lc.Param("0.weight"): (lc.AsIs, lc.LowRank(4))}, [1.0], lambda *a: None)


# ----------------------------------------------------------------------------------------------- RankSelection
def _table(w, positions=1):
    """Every r = 0…min(m, n): (r, honest cost C(r) — the dense matrix when the factors would cost more —, Δ_r the
    rank-r truncation by numpy's SVD, ‖w − Δ_r‖²)."""
    m, n = w.shape
    x = w.double().numpy()
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    rows = []
    for r in range(min(m, n) + 1):
        delta = (u[:, :r] * s[:r]) @ vt[:r]
        rows.append((r, min(r * (m + n), m * n) * positions, delta, float(((x - delta) ** 2).sum())))
    return rows


def _brute_force(w, alpha, mu, positions=1, table=None):
    """argmin over every r of α·C(r) + μ/2 ‖w − Δ_r‖² (the first on ties). Returns (rank, cost, Δ, objective)."""
    best = None
    for r, cost, delta, err in table or _table(w, positions):
        obj = alpha * cost + mu / 2 * err
        if best is None or obj < best[3] - 1e-12 * abs(obj):
            best = (r, cost, delta, obj)
    return best


def _objective(w, delta, cost, alpha, mu):
    return alpha * cost + mu / 2 * float(((w.double() - delta.double()) ** 2).sum())


@pytest.mark.parametrize("shape", [(12, 8), (8, 20), (30, 30)])
@pytest.mark.parametrize("alpha,mu", [(1e-3, 1.0), (1e-2, 1.0), (0.03, 2.0), (0.2, 1.0), (0.01, 1e-3), (0.0, 1.0)])
def test_rank_selection_equals_brute_force(shape, alpha, mu):
    w = _matrix(*shape, decay=0.8, seed=shape[0] + shape[1])
    c = lc.RankSelection(alpha=alpha)
    c.check(w.shape)
    s = c.compress(w, mu)
    out = c.decompress(s)
    r, _, delta, obj = _brute_force(w, alpha, mu)
    m, n = shape
    assert s.meta["rank"] == r
    assert _objective(w, out, s.bits / 32, alpha, mu) == pytest.approx(obj, rel=1e-5, abs=1e-9)
    torch.testing.assert_close(out.double(), torch.from_numpy(delta), rtol=1e-4, atol=1e-5)
    assert (s.meta["form"] == "dense") == (r * (m + n) >= m * n)
    assert s.meta["alpha"] == alpha


def test_rank_selection_visits_many_ranks_and_never_a_dearer_low_rank():
    """Over a sweep of α the choice covers ranks 0 … (last useful) and the dense matrix, nothing in between."""
    w = _matrix(16, 10, decay=0.7)
    m, n = w.shape
    seen, table = set(), _table(w)
    for alpha in np.geomspace(1e-6, 10, 80):
        s = lc.RankSelection(alpha=float(alpha)).compress(w, 1.0)
        seen.add(s.meta["rank"])
        assert s.meta["rank"] == _brute_force(w, float(alpha), 1.0, table=table)[0]
    useful = [r for r in range(min(m, n)) if r * (m + n) < m * n]        # 0 … 6 for 16×10
    assert seen <= set(useful) | {min(m, n)} and {0, min(m, n)} <= seen and len(seen) >= 5


class _ConvNet(torch.nn.Module):
    """Conv 3→8 (3×3, stride 2, padding 1) on 10×10 inputs gives 5×5 outputs; then a Linear 200→10."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8 * 25, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_flops_criterion_finds_output_positions_and_equals_brute_force():
    torch.manual_seed(0)
    net = _ConvNet()
    net.train()
    x = torch.randn(2, 3, 10, 10)
    tasks = {lc.Param(net.conv.weight): (lc.AsIs, lc.RankSelection(alpha=1e-4, criterion="flops")),
             lc.Param(net.fc.weight): (lc.AsIs, lc.RankSelection(alpha=1e-4, criterion="flops"))}
    alg = lc.Algorithm(net, tasks, [1.0], lambda *a: None, example_input=x)
    assert net.training and net.conv.training                 # the probe's forward pass restores the modes
    conv_c, fc_c = (t.step.compression for t in alg.tasks)
    h_out = (10 + 2 * 1 - 3) // 2 + 1
    assert conv_c.costs((8, 27)) == ((8 + 27) * h_out ** 2, 8 * 27 * h_out ** 2)      # P = 25 for the conv
    assert fc_c.costs((10, 200)) == (210, 2000)                                       # P = 1 for a Linear
    for c, w, p in [(conv_c, net.conv.weight.detach().reshape(8, 27), h_out ** 2),
                    (fc_c, net.fc.weight.detach(), 1)]:
        for alpha, mu in [(1e-5, 1.0), (1e-4, 1.0), (1e-3, 5.0)]:
            s = _with_alpha(c, alpha).compress(w, mu)
            assert s.meta["rank"] == _brute_force(w, alpha, mu, positions=p)[0]


def _with_alpha(c, alpha):
    """The same bound compression with another α (a copy keeps the bound output positions)."""
    new = copy.copy(c)
    object.__setattr__(new, "alpha", alpha)
    return new


def test_flops_without_example_input_is_an_error_at_construction():
    net = _ConvNet()
    with pytest.raises(lc.CompressionError, match=r"task 'conv.weight'.*example_input=x"):
        lc.Algorithm(net, {lc.Param(net.conv.weight): (lc.AsIs, lc.RankSelection(1e-4, "flops"))}, [1.0],
                     lambda *a: None)
    with pytest.raises(lc.CompressionError, match="through lc.Algorithm"):
        lc.RankSelection(1e-4, "flops").compress(torch.randn(4, 3), 1.0)


def test_flops_on_a_layer_the_forward_pass_never_calls_is_an_error():
    net = torch.nn.ModuleDict({"used": torch.nn.Linear(4, 3), "unused": torch.nn.Linear(4, 3)})
    net.forward = lambda x: net["used"](x)
    with pytest.raises(lc.CompressionError, match="never called the layer 'unused'"):
        lc.Algorithm(net, {lc.Param("unused.weight"): (lc.AsIs, lc.RankSelection(1e-4, "flops"))}, [1.0],
                     lambda *a: None, example_input=torch.randn(1, 4))


def test_flops_with_an_example_input_the_model_rejects_is_an_error():
    net = _ConvNet()
    with pytest.raises(lc.CompressionError, match="running the model on example_input failed"):
        lc.Algorithm(net, {lc.Param(net.conv.weight): (lc.AsIs, lc.RankSelection(1e-4, "flops"))}, [1.0],
                     lambda *a: None, example_input=torch.randn(1, 5, 10, 10))


# ----------------------------------------------------------------------------------------------- budget
LAYERS = [(40, 30), (30, 20), (20, 10), (64, 16)]


def _choices(tables, alpha, mu):
    """Each layer's brute-force RankSelection choice for one α: [(rank, cost)]."""
    return [_brute_force(None, alpha, mu, table=t)[:2] for t in tables]


@pytest.mark.parametrize("ratio", [1.5, 3.0, 6.0, 20.0])
def test_budget_meets_its_target_from_below_and_as_closely_as_any_alpha(ratio):
    ws = [_matrix(m, n, decay=0.9, seed=i) for i, (m, n) in enumerate(LAYERS)]
    budget = lc.RankBudget(ratio=ratio)
    cs = [lc.RankSelection(budget=budget) for _ in ws]
    for c, w in zip(cs, ws):
        c.check(w.shape)
    budget.check(cs)
    mu = 0.5
    states = budget.compress(cs, ws, mu)
    dense = sum(m * n for m, n in LAYERS)
    target = dense / ratio
    cost = sum(s.bits for s in states) / 32
    assert cost <= target                                                 # never over the budget
    assert all(s.meta["budget_fraction"] == pytest.approx(cost / dense) for s in states)
    # every layer solves its own problem with the common α found
    alpha = states[0].meta["alpha"]
    tables = [_table(w) for w in ws]
    assert [s.meta["rank"] for s in states] == [r for r, _ in _choices(tables, alpha, mu)]
    # stated tolerance: within one rank of one layer of the target (these spectra visit every rank)
    assert target - cost < max(m + n for m, n in LAYERS)
    # and no α of a fine independent scan gets closer to the target from below
    scan = [sum(c for _, c in _choices(tables, float(a), mu)) for a in np.geomspace(1e-6, 10, 400)]
    assert cost >= max(c for c in scan if c <= target)


def test_budget_relative_tolerance_on_realistic_layers():
    """The documented tolerance in relative terms: on layers of a few hundred rows the gap is well below 2%."""
    shapes = [(256, 128), (128, 128), (128, 64)]
    ws = [_matrix(m, n, decay=0.97, seed=i) for i, (m, n) in enumerate(shapes)]
    budget = lc.RankBudget(ratio=4.0)
    states = budget.compress([lc.RankSelection(budget=budget) for _ in ws], ws, 1.0)
    cost = sum(s.bits for s in states) / 32
    target = sum(m * n for m, n in shapes) / 4.0
    assert 0.98 * target <= cost <= target


def test_budget_on_one_layer_through_compress():
    w = _matrix(30, 20, decay=0.9)
    s = lc.RankSelection(budget=lc.RankBudget(5.0)).compress(w, 1.0)
    assert s.meta["rank"] == 600 // 5 // 50                 # the largest r with 50r ≤ 600/5 (decaying spectrum)


def test_budget_flops_through_the_algorithm():
    torch.manual_seed(0)
    net = _ConvNet()
    b = lc.RankBudget(ratio=3.0)
    tasks = {lc.Param(net.conv.weight): (lc.AsIs, lc.RankSelection(criterion="flops", budget=b)),
             lc.Param(net.fc.weight): (lc.AsIs, lc.RankSelection(criterion="flops", budget=b))}
    alg = lc.Algorithm(net, tasks, [1e-2], lambda *a: None, example_input=torch.randn(1, 3, 10, 10))
    alg.run()
    info = alg.history[0].info
    flops = [info["conv.weight"]["rank"] * 35 * 25, info["fc.weight"]["rank"] * 210]
    flops = [min(f, d) for f, d in zip(flops, [8 * 27 * 25, 2000])]
    dense = 8 * 27 * 25 + 2000
    assert sum(flops) <= dense / 3.0
    assert info["conv.weight"]["budget_fraction"] == pytest.approx(sum(flops) / dense)
    assert info["conv.weight"]["alpha"] == info["fc.weight"]["alpha"]


def test_budget_run_resumes_from_a_checkpoint(tmp_path):
    """Rank choices, α and factors survive a checkpoint: an interrupted run resumed equals an uninterrupted one."""
    def build(checkpoint_dir=None, callbacks=()):
        torch.manual_seed(0)
        net = _ConvNet()
        b = lc.RankBudget(ratio=3.0)
        tasks = {lc.Param(net.conv.weight): (lc.AsIs, lc.RankSelection(criterion="flops", budget=b)),
                 lc.Param(net.fc.weight): (lc.AsIs, lc.RankSelection(criterion="flops", budget=b))}
        def l_step(model, lc_penalty, step):                       # deterministic: one full-batch step
            calls.append(step)
            g = torch.Generator().manual_seed(step)
            x = torch.randn(8, 3, 10, 10, generator=g)
            model.zero_grad()
            (model(x).pow(2).mean() + lc_penalty()).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
        return lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 3.0, 4), l_step, checkpoint_dir=checkpoint_dir,
                            callbacks=callbacks, example_input=torch.randn(1, 3, 10, 10))

    calls = []
    whole = build().run()

    def crash(algorithm, record):
        if record.step == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, [crash]).run()
    calls.clear()
    resumed = build(tmp_path).run()
    assert calls == [1, 2, 3]                                        # it went on from the checkpoint of step 1
    assert [r.info for r in resumed] == [r.info for r in whole]
    assert [r.bits for r in resumed] == [r.bits for r in whole]


@pytest.mark.parametrize("tasks,message", [
    (lambda net, b: {lc.Param(net.conv.weight): (lc.AsIs, lc.RankSelection(criterion="flops", budget=b)),
                     lc.Param(net.fc.weight): (lc.AsIs, lc.RankSelection(budget=b))},
     "layers that share a budget must count the same cost"),
    (lambda net, b: {lc.Param(net.fc.weight): [(lc.AsIs, lc.RankSelection(budget=b)),
                                               (lc.AsVector, lc.ConstraintL0Pruning(kappa=10))]},
     "cannot be a part of an additive combination"),
    (lambda net, b: {lc.Param(net.fc.weight): (lc.AsIs, lc.RankSelection(budget=lc.RankBudget(0.5)))},
     "finite number ≥ 1"),
    (lambda net, b: {lc.Param(net.fc.weight): (lc.AsIs, lc.RankSelection(budget=2.0))},
     "budget must be an lc.RankBudget"),
])
def test_budget_validation(tasks, message):
    net = _ConvNet()
    with pytest.raises(lc.CompressionError, match=message):
        lc.Algorithm(net, tasks(net, lc.RankBudget(2.0)), [1.0], lambda *a: None,
                     example_input=torch.randn(1, 3, 10, 10))


def test_breakpoints_are_where_the_choice_changes():
    w = _matrix(12, 9, decay=0.75)
    c = lc.RankSelection(alpha=1.0)
    _, costs, errors = c.options(torch.linalg.svdvals(w), w.shape)
    choose = lambda a: c.choose(costs, errors, a, 1.0)  # noqa: E731
    breaks = _breakpoints(costs, errors, 1.0)
    assert breaks == sorted(breaks, reverse=True)       # α falls along the hull, from cheap to dear
    for b in breaks:
        assert choose(b * (1 - 1e-6)) != choose(b * (1 + 1e-6))
    inside = [math.sqrt(a * b) for a, b in zip(breaks, breaks[1:])]
    assert len({choose(a) for a in inside}) == len(inside)


# ----------------------------------------------------------------------------------------------- conv schemes
def _factors(w, scheme, r):
    view = lc.AsIs(scheme=scheme)
    s = lc.LowRank(r).compress(view.flatten([w]), 1.0)
    (delta,) = view.unflatten(lc.LowRank(r).decompress(s), [w.shape])
    return s.tensors["U"], s.tensors["V"], delta


def test_scheme1_exports_as_kxk_conv_to_r_channels_then_1x1():
    torch.manual_seed(0)
    o, i, kh, kw, r = 8, 3, 3, 5, 2
    w, x = torch.randn(o, i, kh, kw, dtype=torch.float64), torch.randn(2, i, 11, 12, dtype=torch.float64)
    U, V, delta = _factors(w, 1, r)
    y = F.conv2d(F.conv2d(x, V.reshape(r, i, kh, kw), stride=2, padding=(1, 2)), U.reshape(o, r, 1, 1))
    torch.testing.assert_close(y, F.conv2d(x, delta, stride=2, padding=(1, 2)))


def test_scheme2_exports_as_1xkw_conv_then_khx1_conv():
    torch.manual_seed(0)
    o, i, kh, kw, r = 6, 4, 3, 5, 3
    w, x = torch.randn(o, i, kh, kw, dtype=torch.float64), torch.randn(2, i, 11, 12, dtype=torch.float64)
    U, V, delta = _factors(w, 2, r)
    first = V.reshape(r, i, 1, kw)                                  # V: r × (i·kw)
    second = U.reshape(o, kh, r).permute(0, 2, 1).reshape(o, r, kh, 1)   # U: (o·kh) × r
    y = F.conv2d(F.conv2d(x, first, stride=(1, 2), padding=(0, 2)), second, stride=(2, 1), padding=(1, 0))
    torch.testing.assert_close(y, F.conv2d(x, delta, stride=2, padding=(1, 2)))


def test_lowrank_of_a_conv_kernel_through_the_algorithm():
    net = _ConvNet()
    alg = lc.Algorithm(net, {lc.Param(net.conv.weight): (lc.AsIs(scheme=2), lc.LowRank(2))}, [1.0],
                       lambda *a: None)
    alg.run()
    flat = lc.AsIs(scheme=2).flatten([net.conv.weight.detach()])
    assert int(torch.linalg.matrix_rank(flat)) == 2 and alg.history[0].info["conv.weight"]["rank"] == 2
    assert alg.history[0].bits == 32 * 2 * (8 * 3 + 3 * 3)


# ----------------------------------------------------------------------------------------------- LC on digits
@pytest.fixture(scope="module")
def reference():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield digits.reference()
    torch.set_num_threads(threads)


def test_lc_rank_selection_on_digits(reference):
    """RankSelection on both layers: ranks recorded every step, storage below the reference, test error within
    3 points of the reference's."""
    net = copy.deepcopy(reference)
    tasks = {lc.Param(net[0].weight): (lc.AsIs, lc.RankSelection(alpha=1e-4)),
             lc.Param(net[2].weight): (lc.AsIs, lc.RankSelection(alpha=1e-4))}
    alg = lc.Algorithm(net, tasks, lc.geometric_mu(1e-3, 1.5, 12), digits.l_step(1), digits.test_error,
                       multipliers=False)
    history = alg.run()
    last = history[-1].info
    ranks = {name: last[name]["rank"] for name in ("0.weight", "2.weight")}
    assert all(set(r.info) == {"0.weight", "2.weight"} and isinstance(r.info["0.weight"]["rank"], int)
               for r in history)
    assert ranks["0.weight"] < 21                         # fc1 (32×64) stored as factors: r·96 < 2048
    assert int(torch.linalg.matrix_rank(net[0].weight.detach())) <= ranks["0.weight"]   # the model holds Δ(Θ)
    total = sum(p.numel() for p in net.parameters())
    assert history[-1].bits + 32 * (32 + 10) < 32 * total and history[-1].ratio > 1.3
    assert digits.test_error(net) <= digits.test_error(reference) + 0.03


def test_lc_budget_on_digits(reference):
    """A shared FLOPs budget (Linear layers: P = 1) meets its ratio at every step; test error within 3 points."""
    net = copy.deepcopy(reference)
    b = lc.RankBudget(ratio=2.0)
    tasks = {lc.Param(net[0].weight): (lc.AsIs, lc.RankSelection(criterion="flops", budget=b)),
             lc.Param(net[2].weight): (lc.AsIs, lc.RankSelection(criterion="flops", budget=b))}
    xte = digits.data()[2]
    alg = lc.Algorithm(net, tasks, lc.geometric_mu(1e-3, 1.5, 12), digits.l_step(1), digits.test_error,
                       example_input=xte[:1])
    history = alg.run()
    for r in history:
        assert 0.5 - 96 / 2368 < r.info["0.weight"]["budget_fraction"] <= 0.5     # within one rank of fc1
        assert r.bits <= 32 * (32 * 64 + 10 * 32) / 2.0
    assert digits.test_error(net) <= digits.test_error(reference) + 0.03
