"""Your own model, L step, evaluation and reference through the tradeoff job: from Python (tasks.custom.Custom +
experiments.sweep.run) and from the command line (--model MODULE:ATTR --weights FILE --dataset MODULE:ATTR | .npz),
with clear errors before any training."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import lc
from experiments import tradeoff
from experiments.sweep import Sweep, run
from tasks.custom import Custom, weights_sha256
from tasks.data import load

ROOT = Path(__file__).resolve().parents[2]


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))


class AdamLStep:
    """A user's L step that keeps one Adam across the L steps of a run."""

    made = 0

    def __init__(self):
        AdamLStep.made += 1
        self.opt = None

    def __call__(self, model, lc_penalty, step):
        data = load("digits")
        self.opt = self.opt or torch.optim.Adam(model.parameters(), lr=3e-3)
        for idx in torch.randperm(len(data.y_train)).split(128):
            self.opt.zero_grad()
            F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
            self.opt.step()
            if lc_penalty is not None:
                lc_penalty.step(self.opt)


def digits_error(model):
    data = load("digits")
    with torch.no_grad():
        return float((model(data.x_test).argmax(1) != data.y_test).float().mean())


@pytest.fixture(scope="module")
def trained():
    net = small_cnn()
    train = AdamLStep()
    for _ in range(3):
        train(net, None, 0)
    return net


def sweep(out, **kw):
    return Sweep(**{"families": ["pruning", "quantization"], "values": {"pruning": [0.2], "quantization": [4]},
                    "steps": 3, "mu0": 1e-2, "mu_multiplier": 2.0, "latency": False, "progress": False,
                    "out": str(out), **kw})


# ---------------------------------------------------------------------------------------------- Python
def test_a_users_model_runs_through_the_sweep_and_resumes(trained, tmp_path):
    before = weights_sha256(trained)
    task = Custom(reference=trained, l_step=AdamLStep, evaluate=digits_error,
                  example_input=load("digits").x_test[:5], name="digits/cnn", key="v1", chance=0.85)
    made = AdamLStep.made
    rows = run(task, sweep(tmp_path / "out"))
    assert AdamLStep.made == made + 2                      # a class: one L step (one Adam) per run
    assert weights_sha256(trained) == before               # the user's model is not touched, not retrained
    ref = digits_error(trained)
    assert [(r["family"], r["task"], r["split"]) for r in rows] == [("pruning", "digits/cnn", "your evaluation"),
                                                                     ("quantization", "digits/cnn", "your evaluation")]
    for r in rows:
        assert r["reference_error"] == ref and r["test_error"] < 0.5 and r["warning"] is None
        assert set(r["chosen"]) == {"0.weight", "3.weight"}
    pruned, quantized = rows
    assert sum(c["kept"] for c in pruned["chosen"].values()) == round(0.2 * (36 + 2560))
    assert [c["codebook"] for c in quantized["chosen"].values()] == [4, 4]
    net = small_cnn()                                      # the artifact loads into a fresh copy of the model
    lc.load(tmp_path / "out" / "artifacts" / f"{quantized['run_id']}.lc", net)
    assert digits_error(net) == quantized["test_error"]
    assert (tmp_path / "out" / "tradeoff.png").exists()
    # resume: the same task again runs nothing
    again = run(task, sweep(tmp_path / "out"))
    assert again == rows and AdamLStep.made == made + 2
    # another reference (other weights) or another key: another fingerprint, refused on the same --out
    other = small_cnn()
    for changed in (Custom(reference=other, l_step=AdamLStep, evaluate=digits_error,
                           example_input=load("digits").x_test[:1], name="digits/cnn", key="v1", chance=0.85),
                    Custom(reference=trained, l_step=AdamLStep, evaluate=digits_error,
                           example_input=load("digits").x_test[:1], name="digits/cnn", key="v2", chance=0.85)):
        assert changed.fingerprint() != task.fingerprint()
        with pytest.raises(lc.CompressionError, match="--overwrite"):
            run(changed, sweep(tmp_path / "out"))


def test_evaluation_a_number_or_a_dict_with_the_metric(trained):
    x = load("digits").x_test[:1]
    as_number = Custom(trained, AdamLStep, digits_error, x)
    assert as_number.evaluate(trained) == {"error": digits_error(trained)}
    as_dict = Custom(trained, AdamLStep, lambda m: {"accuracy": 1 - digits_error(m), "n": 540}, x,
                     metric="accuracy", higher_is_better=True)
    assert as_dict.evaluate(trained)["accuracy"] == pytest.approx(1 - digits_error(trained))
    wrong_key = Custom(trained, AdamLStep, lambda m: {"acc": 0.5}, x)
    with pytest.raises(lc.CompressionError, match=r"key metric='error'"):
        wrong_key.evaluate(trained)
    with pytest.raises(lc.CompressionError, match="returned a str"):
        Custom(trained, AdamLStep, lambda m: "good", x).evaluate(trained)


def test_an_l_step_function_is_used_as_it_is_and_bad_pieces_are_refused(trained):
    x = load("digits").x_test[:1]

    def l_step(model, lc_penalty, step):
        pass
    assert Custom(trained, l_step, digits_error, x).l_step() is l_step
    with pytest.raises(lc.CompressionError, match="neither"):
        Custom(trained, lambda model: None, digits_error, x)
    with pytest.raises(lc.CompressionError, match="does not run on an input of shape"):
        Custom(trained, l_step, digits_error, torch.zeros(1, 3, 8, 8))
    with pytest.raises(lc.CompressionError, match="nn.Module"):
        Custom({"w": 1}, l_step, digits_error, x)
    with pytest.raises(lc.CompressionError, match="no parameters"):
        Custom(trained, l_step, digits_error, x, names=["9.weight"])
    assert Custom(trained, l_step, digits_error, x).example_input(3).shape == (3, 1, 8, 8)


# ---------------------------------------------------------------------------------------------- command line
MODELS = '''
import torch
from torch import nn

class SmallCNN(nn.Module):
    def __init__(self, input_shape=(1, 8, 8), num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], 4, 3, padding=1)
        self.fc = nn.Linear(4 * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))

def wide():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

not_a_model = 3

def returns_a_string():
    return "model"
'''

DATA = '''
from tasks.data import load

def digits():
    d = load("digits")
    return d.x_train, d.y_train, d.x_test, d.y_test

def bad():
    return "no data here"
'''


@pytest.fixture(scope="module")
def user_package(tmp_path_factory):
    """A package of the user's on sys.path: lcuser.models (SmallCNN, …), lcuser.data (digits, bad), and the
    trained SmallCNN's state_dict in weights.pt."""
    root = tmp_path_factory.mktemp("user")
    pkg = root / "lcuser"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(MODELS))
    (pkg / "data.py").write_text(textwrap.dedent(DATA))
    sys.path.insert(0, str(root))
    try:
        from lcuser.models import SmallCNN
        torch.manual_seed(0)
        net = SmallCNN()
        train = AdamLStep()
        for _ in range(3):
            train(net, None, 0)
        torch.save(net.state_dict(), root / "weights.pt")
        d = load("digits")
        np.savez(root / "digits.npz", x_train=d.x_train.numpy(), y_train=d.y_train.numpy(),
                 x_test=d.x_test.numpy(), y_test=d.y_test.numpy())
        yield root, digits_error(net)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "lcuser" or m.startswith("lcuser.")]:
            del sys.modules[name]


def cli(root, out, *extra):
    return ["--model", "lcuser.models:SmallCNN", "--weights", str(root / "weights.pt"), "--families", "pruning",
            "--values", "pruning=0.2", "--steps", "2", "--epochs-per-step", "1", "--no-progress", "--no-latency",
            "--out", str(out), "--cache-dir", str(out.parent / "cache"), *extra]


@pytest.mark.parametrize("dataset", ["lcuser.data:digits", "digits.npz", "digits"])
def test_the_command_line_takes_a_users_model_weights_and_data(user_package, tmp_path, dataset):
    root, reference_error = user_package
    dataset = str(root / dataset) if dataset.endswith(".npz") else dataset
    out = tmp_path / "out"
    assert tradeoff.main(cli(root, out, "--dataset", dataset)) == 0
    (row,) = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert row["reference_error"] == pytest.approx(reference_error)       # the user's weights, as they are
    assert not (tmp_path / "cache").exists()                             # nothing trained, nothing cached
    assert row["task"] == f"{dataset}/lcuser.models:SmallCNN" and row["test_error"] < 0.5
    assert set(row["chosen"]) == {"conv.weight", "fc.weight"}
    config = json.loads((out / "config.json").read_text())["task"]
    assert "weights" not in config and len(config["weights_sha256"]) == 64 and config["model_source_sha256"]
    assert ("data" in config) == (dataset != "digits")                  # the user's data: hashed into the key


def test_the_command_line_in_a_process_of_its_own(user_package, tmp_path):
    root, reference_error = user_package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}
    argv = [a for a in cli(root, tmp_path / "out") if a != "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "experiments.tradeoff", *argv, "--dataset", "lcuser.data:digits"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # progress to a pipe (a log, not a terminal): plain lines, no escape codes, no carriage returns
    assert "runs 1/1: pruning kept fraction=0.2\n" in done.stderr and "  pruning 0.2 3/3: error=" in done.stderr
    assert "\x1b[" not in done.stderr and "\r" not in done.stderr
    assert f"reference: {100 * reference_error:.2f}% error" in done.stdout


@pytest.mark.parametrize("args, match", [
    (["--model", "mine"], r"unknown model 'mine'; choose one of lenet300, .*, or give your own as MODULE:ATTR"),
    (["--model", "nopkg.models:SmallCNN"], r"cannot import 'nopkg.models'.*PYTHONPATH"),
    (["--model", "lcuser.models:SmallCNNN"], r"no attribute 'SmallCNNN'; did you mean SmallCNN"),
    (["--model", "lcuser.models:not_a_model"], r"is a int: give an nn.Module class"),
    (["--model", "lcuser.models:returns_a_string"], r"returned a str, not a torch.nn.Module"),
    (["--model", "lcuser.models:wide"], r"does not fit Sequential: missing in the file: 1.bias, 1.weight, 3.bias, "
                                        r"3.weight; not in the model: conv.bias, conv.weight, fc.bias, fc.weight"),
    (["--weights", "missing.pt"], r"--weights missing.pt: no such file"),
    (["--weights", "{root}/lcuser/models.py"], r"not a state_dict that torch.load\(weights_only=True\) reads"),
    (["--dataset", "lcuser.data:bad"], r"--dataset lcuser.data:bad gave a str; give a tasks.data.Dataset or a tuple"),
    (["--dataset", "lcuser.data:nothing"], r"no attribute 'nothing'"),
    (["--dataset", "{root}/weights.npz"], r"no such file"),
    (["--model", "lcuser.models:SmallCNN", "--dataset", "cifar10", "--data-dir", "{root}"], r"cifar10: .*lacks"),
])
def test_what_does_not_load_is_an_error_before_any_training(user_package, tmp_path, monkeypatch, capsys, args,
                                                            match):
    root, _ = user_package
    monkeypatch.setattr(tradeoff.Classification, "train_epoch", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / "out"
    argv = cli(root, out)
    for flag, value in zip(args[::2], args[1::2]):
        value = value.format(root=root)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert tradeoff.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(match, err), err
    assert not out.exists()                                              # nothing written, nothing run


def test_weights_of_another_shape_are_listed(user_package, tmp_path):
    root, _ = user_package
    from lcuser.models import SmallCNN
    torch.save(SmallCNN(num_classes=7).state_dict(), tmp_path / "seven.pt")
    with pytest.raises(lc.CompressionError, match=r"other shapes: fc.weight: file \(7, 256\), model \(10, 256\), "
                                                  r"fc.bias: file \(7,\), model \(10,\)"):
        tradeoff.run_sweep(tradeoff.load_config(cli(root, tmp_path / "out", "--weights", str(tmp_path / "seven.pt"))))


def test_a_users_model_without_weights_is_trained_by_the_jobs_recipe_and_cached(user_package, tmp_path):
    from tasks.classification import Classification, TaskConfig
    root, _ = user_package
    task = Classification(TaskConfig(model="lcuser.models:SmallCNN", ref_epochs=1))
    net = task.reference(cache_dir=tmp_path)
    (cached,) = tmp_path.iterdir()
    assert cached.name.startswith("digits-lcuser.models_SmallCNN-")          # a file name, whatever the spec
    again = task.reference(cache_dir=tmp_path)
    assert weights_sha256(again) == weights_sha256(net)                      # loaded, not trained again
    # the model's source is in the key: an edited module is another reference
    before = task.reference_key()
    models = root / "lcuser" / "models.py"
    text = models.read_text()
    try:
        models.write_text(text + "\n# edited\n")
        assert Classification(TaskConfig(model="lcuser.models:SmallCNN", ref_epochs=1)).reference_key() != before
    finally:
        models.write_text(text)
