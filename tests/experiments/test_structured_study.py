"""The structured-pruning study's mechanics, on tiny models: the FLOPs of a pruned model counted without building it,
pruned channels that stay removed through fine-tuning, the Monte Carlo search within its FLOPs and training budgets,
Torch-Pruning at its FLOPs target (and its known failure on option-A ResNets), and the harness end to end."""
import copy
import dataclasses

import numpy as np
import pytest
import torch

import lc
from experiments import channel_baselines as cb
from experiments import structured_study
from experiments.structured import kept_channels
from tasks.classification import Classification, TaskConfig
from tasks.models import CifarResNet, LeNet5


@pytest.mark.parametrize("build", [LeNet5, lambda: CifarResNet(20, input_shape=(1, 28, 28))])
def test_the_flops_of_a_pruned_model_are_counted_exactly_without_building_it(build):
    torch.manual_seed(0)
    model, x = build().eval(), torch.randn(1, 1, 28, 28)
    channels = cb.Channels(model, x)
    rng = np.random.default_rng(0)
    for _ in range(3):
        kept = rng.random(channels.count) < 0.6
        for ix in channels.classes.values():
            kept[ix[0]] = True                                   # no layer emptied
        small = cb.prune(model, x, channels, kept)
        assert channels.flops(kept) == lc.measure.flops(small, x) < lc.measure.flops(model, x)
        with torch.no_grad():
            torch.testing.assert_close(small(x), cb.zeroed(model, channels, kept)(x), rtol=1e-4, atol=1e-5)


def test_pruned_channels_stay_removed_through_fine_tuning():
    task = Classification(TaskConfig(model="lenet300", ref_epochs=1))
    model = task.reference().eval()
    x = task.example_input(1)
    channels = cb.Channels(model, x)
    kept = channels.keep_largest({c: len(ix) // 2 for c, ix in channels.classes.items()})
    small = cb.prune(model, x, channels, kept)
    before, flops = kept_channels(model, small), lc.measure.flops(small, x)
    assert before == {"fc1": [150, 300], "fc2": [50, 100], "fc3": [10, 10]}
    weights = copy.deepcopy(small.state_dict())
    cb.fine_tune(task, small, 1, 0.01, teacher=model)
    assert kept_channels(model, small) == before and lc.measure.flops(small, x) == flops       # the same structure
    assert any(not torch.equal(weights[k], v) for k, v in small.state_dict().items())      # trained


def test_the_search_samples_within_the_flops_budget_and_counts_its_evaluations():
    torch.manual_seed(0)
    model, x = LeNet5().eval(), torch.randn(1, 1, 28, 28)
    dense = lc.measure.flops(model, x)
    scored, tuned = [], []

    def score(m):                                          # the candidate: a zeroed model, pruned as it would be
        small, _ = lc.structure.remove_channels(m, x)
        scored.append(lc.measure.flops(small, x))
        return (float(torch.rand(1)),)

    search = cb.Search(stages=2, samples=4)
    found = cb.mc_search(model, x, 3.0, score, lambda m, stage: tuned.append(stage), search,
                         np.random.default_rng(0))
    assert found["evaluations"] == len(scored) == 8 and tuned == [1, 2]
    assert all(f <= dense / 3 ** 0.5 for f in scored[:4]) and all(f <= dense / 3 for f in scored[4:])
    assert dense / 3 * 0.9 < lc.measure.flops(found["model"], x) <= dense / 3     # the target met, nearly exactly
    assert sum(found["share"].values()) == pytest.approx(1.0, abs=1e-3)             # (rounded to 4 digits)


def test_the_search_spends_the_same_training_budget_as_lc(tmp_path):
    config = structured_study.Config(task=TaskConfig(model="lenet300", ref_epochs=1, epochs_per_step=1), steps=6,
                                     validation_images=300,
                                     search_stages=2, search_samples=3, targets=[2.0], seeds=[0],
                                     cache_dir=str(tmp_path))
    data = structured_study.split(Classification(config.task).data, config.validation_images)
    s = structured_study._seed(config, data, 0)
    net, info = structured_study.run_search(config, s, 2.0)
    searching = 6 * 300 / (3 * len(data[0].y_train))                       # 6 passes over 300 images
    assert info["evaluations"] == 6 and info["finetune_epochs"] == [2, 3]
    assert info["epochs_used"] == pytest.approx(5 + searching) and info["epochs_used"] <= config.budget() == 6
    with pytest.raises(lc.CompressionError, match="leave 1 epochs of the budget of 2 for fine-tuning"):
        structured_study.run_search(structured_study.Config(**{**config.__dict__, "steps": 2}), s, 2.0)


def test_torch_pruning_meets_its_flops_target_on_lenet5_and_fails_on_option_a_resnets():
    pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    x = torch.randn(1, 1, 28, 28)
    model = LeNet5().eval()
    dense = lc.measure.flops(model, x)
    small = cb.torch_pruning(model, x, 2.0)
    assert 2.0 <= dense / lc.measure.flops(small, x) < 2.3 and small(x).shape == (1, 10)
    assert lc.measure.flops(model, x) == dense                               # a pruned copy
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        cb.torch_pruning(CifarResNet(20, input_shape=(1, 28, 28)).eval(), x, 2.0)


def test_the_study_end_to_end_on_digits(tmp_path, capsys):
    pytest.importorskip("torch_pruning")
    config = structured_study.Config(task=TaskConfig(model="lenet300", ref_epochs=2, epochs_per_step=1), steps=3,
                                     validation_images=300,
                                     search_stages=1, search_samples=2, targets=[1.5, 2.0], seeds=[0],
                                     out=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    rows = structured_study.run(config)
    assert sorted((r["method"], r["target"]) for r in rows) == sorted(
        [(m, t) for m in structured_study.METHODS for t in (1.5, 2.0)] + [("lc-global", 1.25)])
    for r in rows:
        assert r["epochs_used"] <= r["budget_epochs"] == 3 and 0 <= r["test_error"] < 0.5
        assert r["flops_reduction"] == pytest.approx(r["flops_dense"] / r["flops"])
        assert r["channels"]["fc3"] == [10, 10] and r["split"].endswith("into training/validation")
        if r["method"] != "lc-global":                      # calibrated on the model they end with
            assert r["flops_reduction"] >= r["target"]
    by = {(r["method"], r["target"]): r for r in rows}
    uniform = by["lc-uniform", 2.0]["channels"]
    assert uniform["fc1"][0] / 300 == pytest.approx(uniform["fc2"][0] / 100, abs=0.01)   # one fraction per layer
    table = structured_study.summary(rows, [1.5, 2.0])
    assert {r["method"] for r in table if "lc_at_or_below" in r} <= {"lc-uniform", "torch-pruning", "mc-search"}
    assert (tmp_path / "out" / "structured.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "summary.csv").read_text().startswith("method,flops_reduction,seeds,test_error_mean")
    again = structured_study.run(config)                                     # resumed: nothing run again
    assert [r["run_id"] for r in again] == [r["run_id"] for r in rows]
    empty = tmp_path / "no-references"
    report = structured_study.run(structured_study.Config(**{**config.__dict__, "report_only": True,
                                                             "cache_dir": str(empty)}))
    assert [r["run_id"] for r in report] == [r["run_id"] for r in rows] and not empty.exists()   # none trained


def test_each_seeds_curve_is_read_at_the_grid_in_log_reduction_and_the_seeds_averaged():
    run = lambda method, seed, x, e: dict(method=method, seed=seed, flops_reduction=x, test_error=e)  # noqa: E731
    rows = [run("lc-global", 0, 1.4, 0.010), run("lc-global", 0, 2.8, 0.020), run("lc-global", 1, 1.5, 0.012),
            run("lc-global", 1, 4.0, 0.030), run("mc-search", 0, 2.05, 0.017), run("mc-search", 0, 4.1, 0.040)]
    assert structured_study.curve(rows[:2], 2.0) == pytest.approx(1.0 + 1.0 * np.log(2 / 1.4) / np.log(2))
    assert structured_study.curve(rows[4:], 2.0) == pytest.approx(1.7)          # 2.05×: within 5 %, read as is
    assert structured_study.curve(rows[4:], 1.5) is None                        # beyond: not read
    table = {(r["method"], r["flops_reduction"]): r for r in structured_study.summary(rows, [1.5, 2.0, 4.0])}
    assert ("mc-search", 1.5) not in table and table["lc-global", 4.0]["seeds"] == 1
    at2 = table["mc-search", 2.0]
    lc2 = [structured_study.curve(rows[:2], 2.0), structured_study.curve(rows[2:4], 2.0)]
    assert at2["lc_global_mean"] == pytest.approx(np.mean(lc2)) and at2["lc_at_or_below"]
    assert at2["lc_minus_other_paired"] == pytest.approx(lc2[0] - 1.7)          # seed 0, which both have


def test_the_study_configs_load():
    from pathlib import Path

    from experiments import cli
    paths = sorted(Path("experiments/configs/structured").glob("*.toml"))
    assert [p.stem for p in paths] == ["lenet5", "resnet20"]
    for path in paths:
        config = cli.parse(structured_study.Config, ["--config", str(path)])
        assert config.task.model == path.stem and config.task.data_dir == "../shared/data/mnist-test"


def test_a_diverged_lc_run_is_a_row_at_its_target(tmp_path):
    config = structured_study.Config(task=TaskConfig(model="lenet300", ref_epochs=1, epochs_per_step=1, lr=1e6),
                                     steps=2, validation_images=300, cache_dir=str(tmp_path))
    s = structured_study._seed(config, structured_study.split(Classification(config.task).data, 300), 0)
    row = structured_study._one(config, s, "lc-global", 2.0, "id")
    assert row["diverged"].startswith("after LC step") and "NaN" in row["diverged"]
    assert row["flops_reduction"] == 2.0 and row["flops"] is None and row["channels"] is None   # its target's
    assert row["test_error"] > 0.5                                            # the diverged weights, at chance
    table = structured_study.summary([row], [2.0])
    assert table[0]["test_error_mean"] == pytest.approx(100 * row["test_error"])
    (tmp_path / "out").mkdir()
    structured_study.report([row], tmp_path / "out", [2.0])           # every run diverged: the plot still draws
    assert (tmp_path / "out" / "structured.png").stat().st_size > 0 and (tmp_path / "out" / "summary.csv").exists()


def test_lc_global_with_a_floor_keeps_it_and_reaches_its_target(tmp_path):
    config = structured_study.Config(task=TaskConfig(model="lenet300", ref_epochs=1, epochs_per_step=1),
                                     steps=2, validation_images=300, cache_dir=str(tmp_path), min_keep=0.3)
    s = structured_study._seed(config, structured_study.split(Classification(config.task).data, 300), 0)
    keep = structured_study._lc_keep(s, 3.0, "global", 0.3)
    c = lc.Compressed.direct(s.reference, structured_study._lc_tasks(s, keep, "global", 0.3), example_input=s.example)
    net = lc.export(c.apply(copy.deepcopy(s.reference)), c, channels=True, example=s.example)
    assert net.fc1.out_features >= 90 and net.fc2.out_features >= 30            # ⌈0.3 · 300⌉, ⌈0.3 · 100⌉
    assert lc.measure.flops(s.reference, s.example) / lc.measure.flops(net, s.example) >= 3.0
    keep = structured_study._lc_keep(s, 8.0, "global", 0.3)    # beyond the floor's 5.7x: the floor, and no more
    c = lc.Compressed.direct(s.reference, structured_study._lc_tasks(s, keep, "global", 0.3), example_input=s.example)
    net = lc.export(c.apply(copy.deepcopy(s.reference)), c, channels=True, example=s.example)
    assert (net.fc1.out_features, net.fc2.out_features) == (90, 30)
    fields = [config.method_fields(m) for m in ("lc-global", "lc-uniform")]
    assert fields[0]["min_keep"] == 0.3 and "min_keep" not in fields[1] and fields[0]["bn"] == "recalibrated before export"


def test_lc_exports_delta_with_its_batch_norm_statistics_recalibrated_before_folding():
    task = Classification(TaskConfig(model="resnet20", ref_epochs=1))
    torch.manual_seed(0)
    net, x = task.make_model().eval(), task.example_input(4)
    with torch.no_grad():                                  # statistics that fit nothing: as stale as w's can be
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 3)
                m.running_var.uniform_(5, 10)
    c = lc.Compressed.direct(net, lc.channel_tasks(net, lc.ChannelPruning(keep=0.5, min_keep=0.25), x),
                             example_input=x)
    exported = structured_study.export_lc(task, net, c, x)
    fresh = task.recalibrate(c.apply(copy.deepcopy(net))).eval()
    stale = lc.export(net, c, channels=True, example=x)
    images = task.data.x_test[:64]
    with torch.no_grad():
        assert torch.allclose(exported(images), fresh(images), atol=1e-4)
        assert not torch.allclose(stale(images), fresh(images), atol=1e-2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in exported.modules())      # folded


def test_lc_with_distillation_is_another_run_and_a_bad_weight_is_refused_before_training(tmp_path):
    base = structured_study.Config(task=TaskConfig(model="lenet300", ref_epochs=1, epochs_per_step=1), steps=2,
                                   validation_images=300, cache_dir=str(tmp_path / "cache"))
    kd = dataclasses.replace(base, lc_distill=0.5)
    task = Classification(base.task)
    assert "distill" not in base.method_fields("lc-global") and kd.method_fields("lc-uniform")["distill"] == 0.5
    ids = {structured_study._run_id(c, task, "lc-global", 2.0) for c in (base, kd)}
    assert len(ids) == 2
    s = structured_study._seed(base, structured_study.split(task.data, 300), 0)
    plain, taught = (structured_study.run_lc(c, s, 2.0, "global")[0] for c in (base, kd))
    x = s.task.example_input(8)
    assert not torch.allclose(plain(x), taught(x))                  # the same seed: only the teacher differs
    bad = dataclasses.replace(base, lc_distill=1.5, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "none"))
    with pytest.raises(lc.CompressionError, match=r"lc_distill=1.5 .* must lie in \[0, 1\]"):
        structured_study.run(bad)
    assert not (tmp_path / "none").exists()                         # refused before a reference was trained
