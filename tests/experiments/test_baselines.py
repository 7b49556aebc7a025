"""experiments.baselines: each method against its closed form (a fixed mask, centroids that share a summed or
averaged gradient, the fake-quantized forward on the grid with LSQ's gradients, the cubic schedule, a replayed
early iterate), the small networks' sizes, and the baselines in the tradeoff job's rows and artifacts."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

import lc
import lc.testing
from experiments import compare, sweep
from experiments.baselines import FAMILIES, FloatCast, Job
from experiments.baselines.posttraining import minmax_grid
from experiments.baselines.qat import FakeQuant
from experiments.baselines.retrain import Masked, Tied, cubic_sparsity, early_iterate, gmp, parametrized
from experiments.baselines.small import narrow, parameters, widths_for
from experiments.schemes import family
from tasks.classification import Classification, TaskConfig
from tasks.models import LeNet5, make_model


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


class SGDSteps:
    """A tiny L step: ``n`` SGD steps (Nesterov momentum, a fresh optimizer per call) on a fixed regression."""

    def __init__(self, n=5, lr=0.05):
        g = torch.Generator().manual_seed(1)
        self.x, self.y, self.n, self.lr = torch.randn(32, 6, generator=g), torch.randn(32, 3, generator=g), n, lr

    def __call__(self, model, penalty, step):
        opt = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9, nesterov=True)
        for _ in range(self.n):
            opt.zero_grad()
            F.mse_loss(model(self.x), self.y).backward()
            penalty.add_grad_()
            opt.step()


def job(model, steps, name, l_step=None):
    task = SimpleNamespace(l_step=lambda reference: l_step or SGDSteps())
    return Job(task, model, steps, family(name))


def test_pruned_weights_stay_zero_and_get_no_gradient_while_the_kept_ones_train():
    net = mlp()
    mask = (torch.rand_like(net[0].weight) > 0.7).float()
    with torch.no_grad():
        net[0].weight.mul_(mask)
    kept_before = net[0].weight.detach().clone()
    with parametrized(net, {"0.weight": Masked(mask)}):
        free = net[0].parametrizations.weight.original
        F.mse_loss(net(torch.randn(4, 6)), torch.zeros(4, 3)).backward()
        assert torch.equal(free.grad * (1 - mask), torch.zeros_like(mask))        # ∂L/∂V = ∂L/∂W ⊙ m
        SGDSteps(n=10)(net, lc.penalty.Penalty(0.0, []), 0)
    w = net[0].weight.detach()
    assert torch.equal(w * (1 - mask), torch.zeros_like(w)) and not torch.equal(w, kept_before)
    assert isinstance(net[0].weight, nn.Parameter)                               # a plain parameter again


@pytest.mark.parametrize("mean", [False, True])
def test_centroids_are_shared_and_their_gradient_is_the_sum_or_mean_over_their_cluster(mean):
    net = mlp()
    codes = torch.randint(0, 4, net[2].weight.shape)
    codebook = torch.tensor([-0.3, -0.1, 0.1, 0.3])
    x, y = torch.randn(8, 6), torch.randn(8, 3)
    with parametrized(net, {"2.weight": Tied(codebook, codes, mean=mean)}):
        c = net[2].parametrizations.weight.original
        assert torch.equal(net[2].weight, codebook[codes])
        with parametrize.cached():                                            # ∂L/∂W at the same point
            g_w, = torch.autograd.grad(F.mse_loss(net(x), y), net[2].weight)
        F.mse_loss(net(x), y).backward()
        counts = torch.bincount(codes.reshape(-1), minlength=4).float()
        summed = torch.zeros(4).scatter_add_(0, codes.reshape(-1), g_w.reshape(-1))
        assert torch.allclose(c.grad, summed / counts if mean else summed, atol=1e-7)
        SGDSteps()(net, lc.penalty.Penalty(0.0, []), 0)
        c_after = c.detach().clone()
    w = net[2].weight.detach()
    assert torch.equal(w, c_after[codes]) and not torch.equal(c_after, codebook)   # one value per cluster, moved
    compressed = lc.Compressed.direct(net, {lc.Param("2.weight"): (lc.AsVector, lc.AdaptiveQuantization(k=4))})
    assert torch.equal(compressed.deltas()["2.weight"], w)                        # stored exactly as lc's state


def test_fake_quantization_is_the_grid_forward_with_lsq_gradients():
    torch.manual_seed(3)
    v = torch.randn(5, 7, requires_grad=True)
    scale, zero = torch.tensor([0.1, 0.2, 0.05, 0.3, 0.15]), torch.tensor([7.0, 8.0, 6.0, 7.0, 9.0])
    fq = FakeQuant(scale, zero, bits=4, row_size=7)
    w = fq(v)
    q = torch.clamp(torch.round(v / scale[:, None] + zero[:, None]), 0, 15)
    assert torch.equal(w, scale[:, None] * (q - zero[:, None]))                   # the grid S(q − Z), exactly
    w.sum().backward()
    inside = ((v / scale[:, None] + zero[:, None]) >= 0) & ((v / scale[:, None] + zero[:, None]) <= 15)
    assert torch.equal(v.grad, inside.float())                                     # straight through, clipped out
    lsq = torch.where(inside, q - zero[:, None] - v.detach() / scale[:, None], q - zero[:, None]).sum(1)
    assert torch.allclose(fq.scale.grad, lsq / math.sqrt(7 * 15), atol=1e-5)        # LSQ's ∂/∂S, scaled by g
    state = lc.AffineQuantization(bits=4, symmetric=False, per_channel=True).compress(w.detach(), 1.0)
    assert torch.equal(lc.AffineQuantization(bits=4, symmetric=False, per_channel=True).decompress(state),
                       w.detach())                                                  # lc stores that grid as it is


def test_cubic_schedule_and_gmp_keep_its_sparsity_at_every_pruning_step():
    assert [cubic_sparsity(j, 4, 0.9) for j in range(6)] == pytest.approx(
        [0.0, 0.9 * (1 - 0.75 ** 3), 0.9 * (1 - 0.5 ** 3), 0.9 * (1 - 0.25 ** 3), 0.9, 0.9])
    assert cubic_sparsity(0, 0, 0.8) == 0.8
    net = mlp()
    out = gmp(job(net, 9, "gmp"), 0.1)                     # pruning steps 0 … 4 of 9 L steps, joint budget
    size = sum(net.get_parameter(n).numel() for n in ("0.weight", "2.weight", "4.weight"))
    kappa = round(0.1 * size)
    expected = [round(size * (1 - cubic_sparsity(j, 4, 1 - kappa / size))) for j in range(5)]
    assert out.chosen["kept_per_step"] == expected and expected[0] == size and expected[-1] == kappa
    assert out.steps == 9 and out.chosen["projection_change"] == 0.0
    assert sum(int(torch.count_nonzero(out.model.get_parameter(n))) for n in ("0.weight", "2.weight",
                                                                                "4.weight")) == kappa


def test_minmax_grid_is_absmax_over_127_and_lc_keeps_it():
    w = torch.tensor([[0.5, -1.27, 0.013], [0.2, 0.1, -0.05]])
    s = 1.27 / 127
    assert torch.allclose(minmax_grid(w, 8, per_channel=False), torch.round(w / s) * s)
    per_row = minmax_grid(w, 8, per_channel=True)
    assert torch.allclose(per_row[1], torch.round(w[1] / (0.2 / 127)) * (0.2 / 127))
    net = mlp()
    out = FAMILIES["ptq-int-channel"].run(job(net, 0, "ptq-int-channel"), 8)
    assert out.chosen["projection_change"] == 0.0 and out.steps == 0


def test_float_cast_is_a_conforming_c_step_stored_at_16_bits():
    for dtype in ("float16", "bfloat16"):
        lc.testing.check_compression(FloatCast(dtype), (7, 5), feasible=lambda d, t=dtype: torch.equal(
            d, d.to(getattr(torch, t)).to(d.dtype)))
    with pytest.raises(lc.CompressionError):
        FloatCast("int8").check((3, 3))


def test_small_networks_are_sized_to_the_ratio_and_only_chains_are_narrowed():
    model = make_model("lenet300", (1, 8, 8))
    for ratio in (4, 16, 50):
        widths = widths_for(model, ratio)
        n = parameters(narrow(model, widths))
        assert n <= parameters(model) / ratio < parameters(narrow(model, [w + 1 for w in widths]))
    five = LeNet5((1, 28, 28))
    small = narrow(five, [5, 12, 100])
    assert small(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and small.fc1.in_features == 12 * 16
    with pytest.raises(lc.CompressionError, match="batch norm"):
        narrow(make_model("resnet20", (3, 32, 32)), [1] * 20)


def test_imp_rewinds_to_an_iterate_of_the_references_own_training():
    task = Classification(TaskConfig(ref_epochs=2, epochs_per_step=1))
    reference = task.reference(cache_dir=None)
    replayed, examples = early_iterate(Job(task, reference, 1), 2)               # all of it: the reference itself
    assert all(torch.equal(replayed[k], v) for k, v in reference.state_dict().items())
    assert examples == 2 * len(task.data.y_train)
    with pytest.raises(lc.CompressionError, match="replay"):
        early_iterate(job(mlp(), 1, "imp"), 1)


def test_baselines_in_the_tradeoff_rows_artifacts_and_budget(tmp_path):
    config = sweep.Sweep(families=["ft-prune", "qat-channel", "small-kd", "ptq-float16", "pruning"],
                         values={"ft-prune": [0.05], "qat-channel": [2], "small-kd": [8], "ptq-float16": [16],
                                 "pruning": [0.05]},
                         steps=2, latency=False, progress=False, out=str(tmp_path / "out"),
                         cache_dir=str(tmp_path / "cache"))
    task = Classification(TaskConfig(ref_epochs=3, epochs_per_step=1))
    rows = {r["family"]: r for r in sweep.run(task, config)}
    assert {r["method"] for r in rows.values()} == {"fine-tune", "qat-lsq", "small-kd", "post-training", "lc"}
    assert rows["ft-prune"]["kind"] == rows["pruning"]["kind"] == "pruning"
    assert rows["ft-prune"]["epochs"] == rows["pruning"]["epochs"] == rows["small-kd"]["epochs"] == 2
    assert rows["ptq-float16"]["epochs"] == 0 and rows["ptq-float16"]["ratio"] == pytest.approx(2.0)
    assert rows["ft-prune"]["ratio"] == pytest.approx(rows["pruning"]["ratio"], rel=0.01)   # positions differ
    assert rows["small-kd"]["ratio"] >= 8 and rows["small-kd"]["chosen"]["method"]["widths"]
    reference = task.reference(cache_dir=tmp_path / "cache")
    for name in ("ft-prune", "qat-channel", "ptq-float16"):                      # the artifact is what was tested
        r = rows[name]
        net = make_model("lenet300", (1, 8, 8))
        lc.load(tmp_path / "out" / "artifacts" / f"{r['run_id']}.lc", net)
        assert task.evaluate(net)["error"] == r["test_error"], name
        assert r["realised_ratio"] == pytest.approx(sum(p.numel() * 4 for p in reference.parameters())
                                                    / r["file_bytes"])
    cheaper = sweep.run(task, sweep.Sweep(**{**vars(config), "families": ["ft-prune"], "budget": 0.5}))
    half = next(r for r in cheaper if r["family"] == "ft-prune" and r["budget"] == 0.5)
    assert half["steps"] == 1 and half["epochs"] == 1 and half["run_id"] != rows["ft-prune"]["run_id"]


def test_compare_fronts_and_spread(tmp_path):
    def row(family, method, value, ratio, errors):
        return [{"task": "t", "split": "s", "family": family, "method": method, "kind": "pruning", "value": value,
                 "ratio": ratio, "test_error": e, "reference_error": 0.02, "seed": i, "parameter": "p"}
                for i, e in enumerate(errors)]
    rows = (row("pruning", "lc", 0.1, 8.0, [0.020, 0.022]) + row("pruning", "lc", 0.02, 40.0, [0.03, 0.03])
            + row("gmp", "gmp", 0.1, 8.1, [0.019, 0.019]) + row("gmp", "gmp", 0.02, 40.2, [0.05, 0.07])
            + row("imp", "imp-rewind", 0.02, 40.1, [0.001]))           # one seed of two: not in the verdict
    table, answer = compare.verdict(rows, compare.Config(rows=[], out=str(tmp_path)))
    assert [round(t["ratio"]) for t in table] == [8, 40]
    assert not table[0]["lc_at_or_better"] and table[0]["baseline_family"] == "gmp"      # 2.1 vs 1.9: gmp wins
    assert table[1]["lc_at_or_better"] and table[1]["margin"] == pytest.approx(3.0)
    assert table[1]["lc_beyond_spread"] and answer["lc_beyond_spread_above_high"] == 1
    assert answer["largest_ratio_within"]["pruning"] == pytest.approx(40.0) and len(answer["baseline_better"]) == 1
    assert answer["left_out"] == ["imp=0.02"]


def test_a_diverged_run_is_a_row_not_a_crash(tmp_path):
    task = Classification(TaskConfig(ref_epochs=2, epochs_per_step=1, lr=1e12))       # an L step that blows up
    rows = sweep.run(task, sweep.Sweep(families=["ft-svd", "quantization"], values={"ft-svd": [4],
                                                                                    "quantization": [2]},
                                       steps=2, latency=False, progress=False, out=str(tmp_path / "out"),
                                       cache_dir=str(tmp_path / "c")))
    svd, lc_row = sorted(rows, key=lambda r: r["family"])
    assert "diverged" in svd["warning"] and svd["file_bytes"] is None and svd["ratio"] == pytest.approx(4, rel=0.05)
    assert svd["steps"] == 1 and not (tmp_path / "out" / "artifacts" / f"{svd['run_id']}.lc").exists()
    assert "diverged after LC step" in lc_row["warning"] and lc_row["method"] == "lc"             # LC's too
    assert lc_row["file_bytes"] is None and lc_row["test_error"] > 0.5 and lc_row["ratio"] > 20
    assert not (tmp_path / "out" / "checkpoints" / lc_row["run_id"]).exists()


def test_compare_writes_summary_verdict_and_plot_for_one_budget(tmp_path, capsys):
    import json
    rows = [{"run_id": f"{f}{b}{s}", "task": "t", "split": "s", "family": f, "method": m, "kind": "pruning",
             "value": 0.1, "parameter": "kept fraction", "ratio": 8.0, "test_error": e, "reference_error": 0.02,
             "seed": s, "budget": b, "higher_is_better": False, "epochs": 40 * (b or 0), "steps": 20,
             "wall_time": 1.0}
            for s in (0, 1) for f, m, b, e in (("pruning", "lc", 1.0, 0.021), ("gmp", "gmp", 1.0, 0.030),
                                               ("gmp", "gmp", 0.25, 0.040), ("ptq-prune-global", "post-training",
                                                                             None, 0.2))]
    for s in (0, 1):
        (tmp_path / f"s{s}").mkdir()
        (tmp_path / f"s{s}" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["seed"] == s))
    out = tmp_path / "cmp"
    assert compare.main([str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(out), "--budget", "0.25"]) == 0
    summary = {r["family"]: r for r in __import__("csv").DictReader(open(out / "summary.csv"))}
    assert float(summary["gmp"]["error_mean"]) == pytest.approx(4.0) and summary["gmp"]["seeds"] == "2"
    assert json.loads((out / "target.json").read_text())["lc_at_or_better"] == 1
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG" and "1 of 1 ratios" in capsys.readouterr().out
    tables = (out / "tables.md").read_text().splitlines()
    assert "| pruning | `gmp` | gmp | 0.1: 4.00 ± 0.00 (8.0×) | 10 | 1.0 |" in tables      # the 0.25 budget's row
    assert "| pruning | `pruning` | lc | 0.1: 2.10 ± 0.00 (8.0×) | 40 | 1.0 |" in tables
    assert ("| 8.0× | `pruning=0.1` 2.10 ± 0.00 (8.0×) | `gmp=0.1` 4.00 ± 0.00 (8.0×) | +1.90 | 0.00 | "
            "LC better beyond the spread |") in tables


def test_compare_markdown_marks_points_with_fewer_seeds():
    base = {"task": "t", "kind": "small", "method": "small", "family": "small", "parameter": "ratio", "start": "first",
            "realised_ratio": None, "error_min": 0, "error_max": 0, "reference_error": 2.0, "steps": 20}
    rows = [{**base, "value": 4, "seeds": 3, "ratio": 4.0, "error_mean": 2.5, "error_std": 0.25, "epochs": 40,
             "wall_time": 2.0},
            {**base, "value": 8, "seeds": 1, "ratio": 8.1, "error_mean": 3.0, "error_std": 0.0, "epochs": None,
             "wall_time": 4.0}]
    assert compare.markdown(rows, []).splitlines()[2] == ("| small | `small` | small | 4: 2.50 ± 0.25 (4.0×); "
                                                          "8: 3.00 ± 0.00 (8.1×) [1 seed] | 40 | 3.0 |")
    assert compare.markdown([], []) == ""
