"""Structured pruning: the exact knapsack against brute force, the C steps against their definitions, channel groups
found on LeNet5, VGG16 (batch norm), a CIFAR ResNet (residual adds, option-A shortcuts that pad channels) and an
MLP, and channels removed physically with the outputs unchanged and the counts as computed."""
import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import lc
from lc.compression import channels
from lc.structure import channel_groups, remove_channels
from tasks.models import CifarResNet, LeNet5, LeNet300, VGG16


def _brute(values, costs, budget):
    best, arg = -1.0, None
    for r in range(len(values) + 1):
        for subset in itertools.combinations(range(len(values)), r):
            if sum(costs[i] for i in subset) <= budget and sum(values[i] for i in subset) > best:
                best, arg = sum(values[i] for i in subset), subset
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_knapsack_is_exact_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    classes = rng.choice([6, 10, 15, 35, 77], size=3)                 # groups of a layer share a cost
    costs = rng.choice(classes, size=n).astype(np.int64)
    values = rng.exponential(size=n)
    budget = int(rng.integers(0, costs.sum() + 1))
    keep, exact = channels.knapsack(values, costs, budget)
    assert exact and costs[keep].sum() <= budget
    assert values[keep].sum() == pytest.approx(_brute(values, costs, budget))


@pytest.mark.parametrize("seed", range(12))
def test_the_floored_global_allocation_is_exact_against_brute_force(seed):
    """max Σ v s.t. Σ c ≤ budget and ≥ ⌈min_keep · n_L⌉ groups of every class L (a class's groups share a cost): the
    C step with ``min_keep`` on a bound structure against every subset."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 11))
    classes = rng.integers(0, 3, size=n)
    class_cost = rng.choice([6, 10, 15, 35], size=3)
    costs = class_cost[classes].astype(np.int64)
    values = rng.exponential(size=n)
    min_keep = float(rng.uniform(0, 0.6))
    need = {c: math.ceil(min_keep * int((classes == c).sum()) - 1e-9) for c in set(classes.tolist())}
    floor_cost = sum(need[c] * int(class_cost[c]) for c in need)
    budget = int(rng.integers(floor_cost, costs.sum() + 1))
    c = lc.ChannelPruning(keep=budget / costs.sum(), cost="count", min_keep=min_keep)
    structure = channels._Structure(((n, n),), np.arange(n), costs, classes)
    object.__setattr__(c, "_bound", structure)
    c.check(torch.Size([n]))
    w = torch.as_tensor(np.sqrt(values))
    kept = c.decompress(c.compress(w, 1.0)) != 0
    mask = kept.numpy()
    best = max(sum(values[list(s)]) for r in range(n + 1) for s in itertools.combinations(range(n), r)
               if sum(costs[list(s)]) <= budget and all(sum(classes[i] == k for i in s) >= m for k, m in need.items()))
    assert costs[mask].sum() <= budget
    assert all(int(mask[classes == k].sum()) >= m for k, m in need.items())
    assert values[mask].sum() == pytest.approx(best)


def test_a_floor_the_budget_cannot_pay_for_is_refused_before_training():
    model = CifarResNet(20)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(lc.CompressionError, match="lower min_keep or raise keep"):
        lc.Algorithm(model, lc.channel_tasks(model, lc.ChannelPruning(keep=0.2, min_keep=0.5), x),
                     lc.geometric_mu(1e-3, 1.1, 2), lambda *a: None, example_input=x)
    with pytest.raises(lc.CompressionError, match="allocation='global'"):
        lc.ChannelPruning(keep=0.5, allocation="uniform", min_keep=0.1).check(torch.Size([4, 3]))
    lc.ChannelPruning(keep=0.5, min_keep=0.5).check(torch.Size([4, 3]))      # 2 of 4 rows: within ⌊0.5 · 4⌋


def test_the_floor_keeps_the_residual_stream_of_a_cifar_resnet():
    """The exact allocation at a low budget empties layer classes; with min_keep every class keeps its share."""
    torch.manual_seed(0)
    model = CifarResNet(20).eval()
    x = torch.randn(1, 3, 32, 32)
    graph = channel_groups(model, x)

    def alive_per_class(compression):
        net = lc.Compressed.direct(model, lc.channel_tasks(model, compression, x), example_input=x).apply(
            copy.deepcopy(model))
        params, classes = dict(net.named_parameters()), {}
        for group in graph.groups:
            alive = any(bool(params[n].detach()[j].any()) for n, j in group.members)
            classes.setdefault(tuple(sorted(group.layers)), []).append(alive)
        return {k: (sum(a), len(a)) for k, a in classes.items()}

    floored = alive_per_class(lc.ChannelPruning(keep=0.4, min_keep=0.25))
    assert all(k >= math.ceil(0.25 * n) for k, n in floored.values())
    free = alive_per_class(lc.ChannelPruning(keep=0.4))
    assert any(k < math.ceil(0.25 * n) for k, n in free.values())      # without it some class falls below


def test_the_knapsack_with_coarser_units_keeps_the_budget(monkeypatch):
    monkeypatch.setattr(channels, "MAX_UNITS", 7)
    rng = np.random.default_rng(0)
    values, costs = rng.exponential(size=9), rng.integers(1, 50, size=9)
    keep, exact = channels.knapsack(values, costs, 100)
    assert not exact and costs[keep].sum() <= 100 and keep.any()


def _rows_brute(w, cost_of_row, budget):
    """Best ‖kept‖² over every subset of rows within the budget."""
    v = (w.reshape(w.shape[0], -1).double() ** 2).sum(1).tolist()
    return _brute(v, [cost_of_row] * len(v), budget)


def test_channel_pruning_on_a_matrix_keeps_whole_rows_within_the_budget_optimally():
    torch.manual_seed(0)
    w = torch.randn(9, 4)
    for keep, cost in ((0.4, "count"), (0.25, "params"), (0.0, "count"), (1.0, "flops")):
        c = lc.ChannelPruning(keep=keep, cost=cost)
        d = c.decompress(c.compress(w, 1.0))
        kept = (d != 0).any(1)
        assert torch.equal(d[kept], w[kept]) and not d[~kept].any()             # rows kept whole or zero
        per_row = 1 if cost == "count" else 4
        budget = math.floor(keep * 9 * per_row)
        assert int(kept.sum()) * per_row <= budget
        assert float((d.double() ** 2).sum()) == pytest.approx(_rows_brute(w, per_row, budget), rel=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_the_uniform_allocation_is_exact_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 11))
    classes = rng.integers(0, 3, size=n)
    values, keep = rng.exponential(size=n), float(rng.uniform(0, 1))
    mask = channels.uniform(values, classes, keep)
    quota = {c: math.floor(keep * int((classes == c).sum()) + 1e-9) for c in set(classes.tolist())}
    best = max(sum(values[list(s)]) for r in range(n + 1) for s in itertools.combinations(range(n), r)
               if all(sum(classes[i] == c for i in s) <= q for c, q in quota.items()))
    assert all(int(mask[classes == c].sum()) == q for c, q in quota.items())
    assert values[mask].sum() == pytest.approx(best)


def test_the_uniform_allocation_keeps_the_same_fraction_of_every_layer_class():
    torch.manual_seed(0)
    model = CifarResNet(20).eval()
    x = torch.randn(1, 3, 32, 32)
    kept = {}
    for allocation in ("uniform", "global"):
        c = lc.Compressed.direct(model, lc.channel_tasks(model, lc.ChannelPruning(keep=0.5, allocation=allocation),
                                                         x), example_input=x)
        net = c.apply(copy.deepcopy(model))
        graph = channel_groups(model, x)
        params = dict(net.named_parameters())
        classes = {}
        for group in graph.groups:
            alive = any(bool(params[n].detach()[j].any()) for n, j in group.members)
            classes.setdefault(tuple(sorted(group.layers)), []).append(alive)
        kept[allocation] = {layers: (sum(a), len(a)) for layers, a in classes.items()}
    assert len(kept["uniform"]) == 12       # the 9 blocks' first convs, and the three residual streams (16, 16, 32)
    assert all(k == math.floor(0.5 * n) for k, n in kept["uniform"].values())
    assert kept["global"] != kept["uniform"]       # the knapsack allocates otherwise


def test_the_penalty_forms_are_their_closed_forms():
    torch.manual_seed(1)
    w, mu = torch.randn(12, 3), 2.0
    norms = w.pow(2).sum(1)
    l0 = lc.ChannelPenaltyL0(alpha=0.5, cost="count")
    d = l0.decompress(l0.compress(w, mu))
    assert torch.equal((d != 0).any(1), mu / 2 * norms > 0.5)                   # keep iff μ/2‖w_g‖² > α c_g
    l21 = lc.ChannelPenaltyL21(alpha=0.6, cost="count")
    d = l21.decompress(l21.compress(w, mu))
    scale = torch.clamp(1 - 0.6 / (mu * norms.sqrt()), min=0)
    torch.testing.assert_close(d, w * scale[:, None])
    assert not l0.decompress(l0.compress(w, 0.0)).any()                         # μ → 0⁺: nothing kept


ARCHITECTURES = {
    "mlp": (LeNet300, (4, 1, 28, 28)),
    "lenet5": (LeNet5, (4, 1, 28, 28)),
    "vgg16": (VGG16, (2, 3, 32, 32)),
    "resnet20": (lambda: CifarResNet(20), (2, 3, 32, 32)),
}


def _randomise_norms(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)


def _expected_counts(model, graph, dead, x):
    """Parameters and multiply-adds of the model with the dead groups' channels removed, counted from the kept
    channel counts of every layer (inputs of a layer: the kept channels of what it consumes)."""
    kept = {name: m.weight.shape[0] - sum(1 for g in dead if name in graph.groups[g].layers)
            for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    slots = graph._slots
    gm = graph._graph
    params, flops = 0, 0
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = gm.get_submodule(node.target)
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            ids = slots[node.args[0].name]
            alive_in = sum(graph._roots.get(graph._find.find(int(s))) not in dead for s in ids)
            k = math.prod(m.kernel_size) if isinstance(m, nn.Conv2d) else 1
            out = kept[node.target]
            params += out * alive_in * k + (out if m.bias is not None else 0)
            positions = math.prod(node.meta["tensor_meta"].shape[2:]) if isinstance(m, nn.Conv2d) else 1
            flops += out * alive_in * k * positions
        elif isinstance(m, nn.BatchNorm2d):
            ids = slots[node.name]
            params += 2 * sum(graph._roots.get(graph._find.find(int(s))) not in dead for s in ids)
    return params, flops


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_channels_are_found_and_removed_with_the_outputs_unchanged(arch):
    build, shape = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model = build().eval()
    _randomise_norms(model)
    x = torch.randn(*shape)
    c = lc.Compressed.direct(model, lc.channel_tasks(model, lc.ChannelPruning(keep=0.5, cost="flops"), x),
                             example_input=x)
    net = c.apply(copy.deepcopy(model)).eval()
    graph = channel_groups(net, x)
    params = {n: p.detach() for n, p in net.named_parameters()}
    dead = {g for g, group in enumerate(graph.groups)
            if all(float(params[n][j].abs().max()) == 0 for n, j in group.members)}
    assert dead                                                            # the C step zeroed whole channels
    small, removed = remove_channels(net, x)
    assert removed >= len(dead) - 8                                       # (a layer left empty keeps one channel)
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), rtol=1e-4, atol=1e-5)
    revived = len(dead) - removed
    if revived == 0:
        expected_params, expected_flops = _expected_counts(net, graph, dead, x[:1])
        assert lc.measure.flops(small, x[:1]) == expected_flops
        assert sum(p.numel() for p in small.parameters()) == expected_params
    assert lc.measure.flops(small, x[:1]) < lc.measure.flops(model, x[:1])
    exported = lc.export(model, c, channels=True, example=x)               # the same through lc.export
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), rtol=1e-4, atol=1e-5)
    assert lc.measure.flops(exported, x[:1]) == lc.measure.flops(small, x[:1])


def test_resnet_groups_span_the_residual_stream_across_the_padded_shortcuts():
    model = CifarResNet(20).eval()
    graph = channel_groups(model, torch.randn(1, 3, 32, 32))
    stream = [g for g in graph.groups if "conv1" in g.layers]
    assert len(stream) == 16                                             # one per channel of the first stage
    assert all(set(g.layers) == {"conv1"} | {f"blocks.{i}.conv2" for i in range(9)} for g in stream)
    assert graph.frozen == 10                                            # the classifier's outputs


def test_what_channel_groups_cannot_handle_is_a_clear_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x                      # data-dependent control flow
    with pytest.raises(lc.CompressionError, match="torch.fx can trace; Branchy cannot be"):
        channel_groups(Branchy(), torch.randn(2, 4))
    grouped = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 2, 1))
    with pytest.raises(lc.CompressionError, match="layer '0' is a grouped convolution"):
        channel_groups(grouped, torch.randn(1, 4, 6, 6))
    model = LeNet300()
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(lc.CompressionError, match=r"part of some channels only; add \['fc1.bias'\]"):
        lc.Compressed.direct(model, {lc.Param("fc1.weight"): (lc.AsVector, lc.ChannelPruning(keep=0.5))},
                             example_input=x)
    with pytest.raises(lc.CompressionError, match="example_input"):
        lc.Compressed.direct(model, lc.channel_tasks(model, lc.ChannelPruning(keep=0.5), x))
    with pytest.raises(lc.CompressionError, match="channels=True.*give example=x"):
        lc.export(model, lc.Compressed.none(), channels=True)


def test_lc_with_channel_pruning_ends_with_whole_channels_removed():
    from tests import digits
    net = digits.reference()
    x = digits.data()[0][:8]
    tasks = lc.channel_tasks(net, lc.ChannelPruning(keep=0.5, cost="count"), x)
    alg = lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 1.5, 6), digits.l_step(epochs=1), digits.test_error,
                       example_input=x)
    history = alg.run()
    rows = (net[0].weight != 0).any(1) | (net[0].bias != 0)
    assert int(rows.sum()) <= 16 and history[-1].info[alg.tasks[0].name]["groups_kept"] <= 16
    small = lc.export(net, alg, channels=True, example=x)
    assert small.get_submodule("0").out_features == int(rows.sum())
    assert digits.test_error(small) == digits.test_error(net)
    assert history[-1].evaluation < 0.2


def test_export_removes_channels_before_choosing_sparse_layers():
    torch.manual_seed(0)
    model, x = LeNet300().eval(), torch.randn(2, 1, 28, 28)
    c = lc.Compressed.direct(model, lc.channel_tasks(model, lc.ChannelPruning(keep=0.2, cost="count"), x),
                             example_input=x)
    small = lc.export(model, c, channels=True, example=x, sparse="always")    # fc1 is 80 % zero rows before removal
    assert small.fc1.out_features + small.fc2.out_features <= 80 and isinstance(small.fc1, torch.nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(small(x), c.apply(copy.deepcopy(model))(x), rtol=1e-4, atol=1e-5)
