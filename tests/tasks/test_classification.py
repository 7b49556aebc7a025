import math

import pytest
import torch

import lc
from tasks.classification import Classification, TaskConfig, _distillation, _save_new, compression_tasks, flops
from tasks.data import load


@pytest.fixture(scope="module")
def task():
    return Classification(TaskConfig(dataset="digits", model="lenet300", ref_epochs=3, epochs_per_step=1))


def test_evaluate_matches_a_direct_count(task):
    net = task.make_model()
    out = task.evaluate(net)
    with torch.no_grad():
        logits = net(task.data.x_test)
    assert out["error"] == pytest.approx(float((logits.argmax(1) != task.data.y_test).float().mean()))
    assert out["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, task.data.y_test)), rel=1e-5)


def test_l_step_reduces_loss_plus_penalty(task):
    torch.manual_seed(0)
    net = task.make_model()
    target = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    mu = 1e-2

    def penalty():
        return mu / 2 * sum(((p - target[n]) ** 2).sum() for n, p in net.named_parameters())

    def objective():
        with torch.no_grad():
            return task.evaluate(net, "train")["loss"] + float(penalty())

    before = objective()
    step = task.l_step()
    step(net, penalty, 0)
    step(net, penalty, 1)
    assert len(step.losses) == 2
    assert objective() < 0.5 * before          # from ≈ 2.3 + penalty at initialisation


def test_reference_is_cached_by_key_and_never_overwritten(task, tmp_path, monkeypatch):
    net = task.reference(cache_dir=tmp_path)
    files = list(tmp_path.glob("digits-lenet300-*.pt"))
    assert len(files) == 1 and files[0].name.endswith(task.reference_key()[:16] + ".pt")
    # a second call loads (no training): the weights are equal, and train_epoch is never called
    monkeypatch.setattr(Classification, "train_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = task.reference(cache_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    # another reference config → another key, another file; an L-step field does not change the key
    other = Classification(TaskConfig(ref_epochs=4), data=task.data)
    same = Classification(TaskConfig(ref_epochs=3, lr=0.5, epochs_per_step=7), data=task.data)
    assert other.reference_key() != task.reference_key() and same.reference_key() == task.reference_key()
    # a file under the key's name that holds another key is an error, and stays as it was
    bytes_before = files[0].read_bytes()
    saved = torch.load(files[0], weights_only=True)
    saved["key"] = "0" * 64
    torch.save(saved, files[0])
    with pytest.raises(lc.CompressionError, match="another config"):
        task.reference(cache_dir=tmp_path)
    assert files[0].read_bytes() != bytes_before             # (our tampering) and not replaced by the call


def test_save_new_never_replaces(tmp_path):
    _save_new({"a": 1}, tmp_path / "x.pt")
    _save_new({"a": 2}, tmp_path / "x.pt")
    assert torch.load(tmp_path / "x.pt")["a"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]       # no temporary left behind


def test_distillation_term():
    z = torch.randn(5, 10)
    assert float(_distillation(z, z, 4.0)) == pytest.approx(0, abs=1e-6)
    t = torch.randn(5, 10)
    p, q = torch.softmax(t / 2, 1), torch.softmax(z / 2, 1)
    kl = float((p * (p.log() - q.log())).sum(1).mean())
    assert float(_distillation(z, t, 2.0)) == pytest.approx(4 * kl, rel=1e-5)


def test_distillation_needs_a_teacher_and_a_valid_weight():
    data = load("digits")
    task = Classification(TaskConfig(distill=0.5), data=data)
    with pytest.raises(lc.CompressionError, match="teacher"):
        task.l_step()
    net = task.make_model()
    step = task.l_step(teacher=net)
    assert step.teacher is not net and not any(p.requires_grad for p in step.teacher.parameters())
    with pytest.raises(lc.CompressionError, match=r"\[0, 1\]"):
        Classification(TaskConfig(distill=1.5), data=data)


def test_compression_tasks_each_and_joint(task):
    net = task.make_model()
    each = compression_tasks(net, lambda shapes: (lc.AsVector,
                                                  lc.ConstraintL0Pruning(kappa=math.prod(shapes[0]) // 10)))
    assert [p.targets for p in each] == [("fc1.weight",), ("fc2.weight",), ("fc3.weight",)]
    assert [v[1].kappa for v in each.values()] == [1920, 3000, 100]
    joint = compression_tasks(net, lambda shapes: (lc.AsVector, lc.ConstraintL0Pruning(kappa=len(shapes))),
                              joint=True)
    (param, value), = joint.items()
    assert param.targets == ("fc1.weight", "fc2.weight", "fc3.weight") and value[1].kappa == 3
    with pytest.raises(lc.CompressionError, match="no parameters"):
        compression_tasks(net, lambda s: None, names=["fc9.weight"])


def test_flops_dense_sparse_and_low_rank():
    data = load("digits")
    task = Classification(TaskConfig(model="lenet300"), data=data)
    net = task.make_model()
    assert flops(net, data.input_shape) == 64 * 300 + 300 * 100 + 100 * 10
    with torch.no_grad():
        net.fc1.weight[:, 10:] = 0                                        # 300 × 10 nonzeros
        u, v = torch.randn(100, 2), torch.randn(2, 300)
        net.fc2.weight.copy_(u @ v)                                       # rank 2: 2 · (100 + 300)
    assert flops(net, data.input_shape) == 3000 + 800 + 1000
    conv = Classification(TaskConfig(model="lenet5"), data=data.__class__(
        "x", torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), torch.zeros(2, 1, 28, 28),
        torch.zeros(2, dtype=torch.long), "none")).make_model()
    # conv1: 20·25 per position × 24², conv2: 50·500 × 8², fc 800·500, fc 500·10
    assert flops(conv, (1, 28, 28)) == 500 * 576 + 25000 * 64 + 400000 + 5000


def test_augment_is_a_shifted_window_possibly_flipped():
    from torch.nn import functional as F

    from tasks.classification import _augment
    x = torch.arange(6 * 2 * 5 * 5, dtype=torch.float32).reshape(6, 2, 5, 5) + 1
    out = _augment(x)
    assert out.shape == x.shape
    for img, src in zip(out, x):
        padded = [F.pad(s, (4, 4, 4, 4)) for s in (src, src.flip(2))]
        windows = [p[:, i:i + 5, j:j + 5] for p in padded for i in range(9) for j in range(9)]
        assert any(torch.equal(img, w) for w in windows)


# ---------------------------------------------------------------------------------------------- the L step's optimizer
def _prune_5_percent(net):
    return compression_tasks(net, lambda shapes: (lc.AsVector, lc.ConstraintL0Pruning(
        kappa=round(0.05 * sum(math.prod(s) for s in shapes)))), joint=True)


def _lc(task, reference, steps=12, **kw):
    import copy
    net = copy.deepcopy(reference)
    torch.manual_seed(0)
    algorithm = lc.Algorithm(net, _prune_5_percent(net), lc.geometric_mu(3e-3, 1.4, steps), task.l_step(),
                             task.evaluate, **kw)
    return net, algorithm, algorithm.run()


@pytest.fixture(scope="module")
def digits_reference():
    data = load("digits")
    sgd = Classification(TaskConfig(ref_epochs=10, epochs_per_step=1), data=data)
    return data, sgd, sgd.reference()


def test_an_adam_l_step_compresses_as_declared_and_lands_near_sgd(digits_reference):
    data, sgd, reference = digits_reference
    adam = Classification(TaskConfig(ref_epochs=10, epochs_per_step=1, optimizer="adam"), data=data)
    assert adam.reference_key() == sgd.reference_key()           # the L step's optimizer: not the reference's
    assert adam.fingerprint()["lr"] == 1e-3 and sgd.fingerprint()["lr"] == 0.1
    assert "optimizer" not in sgd.fingerprint() and adam.fingerprint()["optimizer"] == "adam"
    errors = {}
    for name, task in (("sgd", sgd), ("adam", adam)):
        net, algorithm, history = _lc(task, reference)
        weights = [net.fc1.weight, net.fc2.weight, net.fc3.weight]
        assert sum(int((w != 0).sum()) for w in weights) <= round(0.05 * 50200)     # the declared structure
        errors[name] = history[-1].evaluation["error"]
        kept = algorithm.l_step_optimization.kept
        assert (kept is None) == (name == "sgd")                 # adam: one optimizer across the LC steps …
        if kept is not None:
            assert kept.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.98 ** 11)   # … at lr·decay^j
            assert int(kept.state[net.fc1.weight]["step"]) == 12 * 10                # 12 L steps × 10 batches
    assert errors["adam"] <= errors["sgd"] + 0.03, errors


def test_adam_penalty_is_decoupled_from_the_loss(digits_reference):
    data, _, reference = digits_reference
    adam = Classification(TaskConfig(epochs_per_step=1, optimizer="adamw", lr=2e-3), data=data)
    calls = []

    class Spy:                                               # a penalty that records how it is used
        def __call__(self):
            calls.append("loss")
            return torch.zeros(())

        def add_grad_(self):
            calls.append("grad")

        def step(self, optimizer):
            calls.append(type(optimizer).__name__)
            assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * 0.98 ** 3)

    import copy
    adam.l_step()(copy.deepcopy(reference), Spy(), 3)
    assert calls == ["AdamW"] * 10                              # after every optimizer step, never in the loss
    with pytest.raises(lc.CompressionError, match="adam, adamw"):
        Classification(TaskConfig(optimizer="adamm"), data=data)


def test_the_kept_optimizer_is_checkpointed_and_a_resumed_run_ends_the_same(digits_reference, tmp_path):
    data, _, reference = digits_reference
    adam = Classification(TaskConfig(ref_epochs=10, epochs_per_step=1, optimizer="adam"), data=data)
    whole, _, _ = _lc(adam, reference, steps=4)

    def stop(algorithm, record):
        if record.step == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _lc(adam, reference, steps=4, checkpoint_dir=tmp_path, callbacks=[stop])
    saved = torch.load(tmp_path / "lc_checkpoint.pt", weights_only=True)["l_step"]
    assert int(saved["optimizer"]["state"][0]["step"]) == 10      # after LC step 1 (the last on disk)
    resumed, algorithm, history = _lc(adam, reference, steps=4, checkpoint_dir=tmp_path)
    assert [r.step for r in history] == [0, 1, 2, 3, 4]
    assert int(algorithm.l_step_optimization.kept.state[resumed.fc1.weight]["step"]) == 40
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
