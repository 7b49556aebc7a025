"""The loop under faults and bad input (issue 15's defects): a kill at any step resumes to the same Θ, a failed
run() never restarts silently, every callback sees every step, and user errors are CompressionErrors raised
before any training, saying what to change."""
import errno
import os

import numpy as np
import pytest
import torch
from torch import nn

import lc
from lc import _checkpoint, _io
from tests import digits
from tests.lc import resume_script


class Killed(Exception):
    pass


def _run(checkpoint_dir, kill_at=None, steps=4):
    """The resume script's run (an additive task among them), on a short schedule; ``kill_at=j`` raises inside
    the L step of schedule index j, after one minibatch of training (the model is then half trained)."""
    torch.manual_seed(0)
    algorithm = resume_script.build(checkpoint_dir, additive=True)
    algorithm.mu_schedule = algorithm.mu_schedule[:steps]
    inner = algorithm.l_step_optimization
    killed = []

    class Dying:
        def __call__(self, model, lc_penalty, j):
            if j == kill_at and not killed:
                killed.append(j)
                inner.opt.zero_grad()
                xtr, ytr, _, _ = digits.data()
                (nn.functional.cross_entropy(model(xtr[:64]), ytr[:64]) + lc_penalty()).backward()
                inner.opt.step()
                raise Killed
            inner(model, lc_penalty, j)

        state_dict = inner.state_dict
        load_state_dict = inner.load_state_dict

    algorithm.l_step_optimization = Dying()
    return algorithm


def _same_states(a, b):
    def flat(s):
        return [s.bits, *s.tensors.values(), *[x for p in s.parts for x in flat(p)]]
    for x, y in zip(a, b, strict=True):
        for u, v in zip(flat(x), flat(y), strict=True):
            assert (u == v) if isinstance(u, int) else torch.equal(u, v)


@pytest.fixture(scope="module")
def uninterrupted():
    algorithm = _run(None)
    algorithm.run()
    return algorithm


@pytest.mark.parametrize("kill_at", [0, 1, 2, 3])
def test_a_kill_during_any_l_step_resumes_to_the_same_theta(tmp_path, uninterrupted, kill_at):
    """kill_at=0: the checkpoint holds step 0 only (a kill during the first L step, the common case); the direct
    compression must not run again (it did: history [0, 0, 1, …], and the additive task's Θ differed)."""
    with pytest.raises(Killed):
        _run(tmp_path, kill_at).run()
    assert [r["step"] for r in _checkpoint.load(tmp_path / _checkpoint.FILENAME)["history"]] == list(range(kill_at + 1))
    torch.manual_seed(123)                                 # the RNG state comes from the checkpoint
    resumed = _run(tmp_path)
    history = resumed.run()
    assert [r.step for r in history] == [0, 1, 2, 3, 4]
    _same_states(resumed.states, uninterrupted.states)
    assert [r.evaluation for r in history] == [r.evaluation for r in uninterrupted.history]


def test_run_again_after_a_failure_resumes_from_the_checkpoint(tmp_path, uninterrupted):
    algorithm = _run(tmp_path, kill_at=2)
    with pytest.raises(Killed):
        algorithm.run()
    history = algorithm.run()                              # the same object: back to the last checkpoint
    assert [r.step for r in history] == [0, 1, 2, 3, 4]
    _same_states(algorithm.states, uninterrupted.states)


def test_run_again_after_a_failure_without_checkpoint_refuses(tmp_path):
    algorithm = _run(None, kill_at=1)
    with pytest.raises(Killed):
        algorithm.run()
    steps = [r.step for r in algorithm.history]
    with pytest.raises(lc.CompressionError, match="partly trained weights, with no checkpoint"):
        algorithm.run()
    assert [r.step for r in algorithm.history] == steps   # nothing appended, nothing restarted


def test_run_again_after_a_failure_before_any_training_starts_afresh(uninterrupted):
    algorithm = _run(None)
    calls = []

    def fail_once(a, r):
        calls.append(r.step)
        if len(calls) == 1:
            raise Killed                                    # at step 0: the model is still the reference
    algorithm.callbacks.append(fail_once)
    with pytest.raises(Killed):
        algorithm.run()
    history = algorithm.run()
    assert [r.step for r in history] == [0, 1, 2, 3, 4] and calls == [0, 0, 1, 2, 3, 4]
    _same_states(algorithm.states, uninterrupted.states)


def test_every_callback_sees_the_step_that_stops_the_run():
    net = digits.reference()
    best, seen = lc.KeepBest(), []
    stop_at_2 = lambda a, r: r.step == 2  # noqa: E731
    scores = iter([0.1, 0.2, 0.9, 0.3])
    lc.Algorithm(net, resume_script.prune_tasks(net), lc.geometric_mu(1e-2, 1.5, 5), digits.l_step(epochs=1),
                 lambda m: next(scores), callbacks=[stop_at_2, best, lambda a, r: seen.append(r.step)]).run()
    assert seen == [0, 1, 2] and best.step == 2 and best.value == 0.9


# ------------------------------------------------------------------------------------------------ bad input
def _algorithm(**kwargs):
    net = digits.reference()
    args = {"mu_schedule": [1e-2, 2e-2], "l_step_optimization": digits.l_step(epochs=1)}
    args.update(kwargs)
    return lc.Algorithm(net, resume_script.prune_tasks(net), **args)


def test_checkpoint_dir_that_is_a_file_or_not_writable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(lc.CompressionError, match="checkpoint_dir .*file is a file, not a directory"):
        _algorithm(checkpoint_dir=tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"
    monkeypatch.setattr(_io.os, "access", lambda *a: False)
    with pytest.raises(lc.CompressionError, match="is not writable"):
        _algorithm(checkpoint_dir=tmp_path / "d")


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    algorithm = _algorithm(checkpoint_dir=tmp_path, mu_schedule=[1e-2, 2e-2, 4e-2])
    real = _io._create_temp
    calls = []

    def full(path):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path)

    monkeypatch.setattr(_io, "_create_temp", full)
    with pytest.raises(lc.CompressionError, match="the disk is full"):
        algorithm.run()
    ck = _checkpoint.load(tmp_path / _checkpoint.FILENAME)
    assert [r["step"] for r in ck["history"]] == [0]
    assert sorted(os.listdir(tmp_path)) == [_checkpoint.FILENAME]          # no stray temporary file


def test_files_get_the_permissions_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _io.write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("content", [[1, 2, 3], {"format": 2}])
def test_a_checkpoint_file_of_another_kind_is_refused(tmp_path, content):
    torch.save(content, tmp_path / _checkpoint.FILENAME)
    with pytest.raises(lc.CompressionError, match="cannot be read: it holds a"):
        _algorithm(checkpoint_dir=tmp_path).run()


@pytest.mark.parametrize("schedule", ["123", {1.0: 2.0}, {1.0, 2.0}])
def test_mu_schedule_must_be_an_ordered_sequence(schedule):
    with pytest.raises(lc.CompressionError, match="mu_schedule must be a sequence of numbers in order"):
        _algorithm(mu_schedule=schedule)


def test_geometric_mu_overflow_and_types():
    with pytest.raises(lc.CompressionError, match="overflows a float"):
        lc.geometric_mu(1.0, 10.0, 400)
    with pytest.raises(lc.CompressionError, match="overflows a float"):
        lc.geometric_mu(1.0, 1e300, 10 ** 6)
    with pytest.raises(lc.CompressionError, match="mu0"):
        lc.geometric_mu("1e-3", 1.1, 3)
    assert lc.geometric_mu(np.float64(1.0), 2, np.int64(3)) == [1.0, 2.0, 4.0]


def test_an_l_step_that_cannot_take_the_three_arguments_is_refused_before_anything_runs():
    def two(model, lc_penalty):
        raise AssertionError("must not be called")
    with pytest.raises(lc.CompressionError, match=r"l_step_optimization cannot be called as f\(model, lc_penalty, "
                                                  r"step\): its signature is \(model, lc_penalty\)"):
        _algorithm(l_step_optimization=two)
    with pytest.raises(lc.CompressionError, match="evaluation_func cannot be called as f"):
        _algorithm(evaluation_func=lambda: 0.0)
    _algorithm(l_step_optimization=lambda *args: None, evaluation_func=lambda model, *rest: 0.0)   # fine


def test_a_tied_weight_named_by_its_second_name_says_which_it_is_tied_to():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.out = nn.Linear(6, 8, bias=False), nn.Linear(6, 8, bias=False)
            self.out.weight = self.embed.weight
    with pytest.raises(lc.CompressionError, match="'out.weight' is the same tensor as 'embed.weight'.*name it "
                                                  "'embed.weight'"):
        lc.Compressed.direct(Tied(), {lc.Param("out.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=3))})


def test_a_run_whose_layers_shared_a_budget_is_not_the_same_run_as_one_with_a_budget_each(tmp_path):
    def tasks(net, shared):
        budgets = [lc.RankBudget(ratio=2.0)] * 2 if shared else [lc.RankBudget(ratio=2.0), lc.RankBudget(ratio=2.0)]
        return {lc.Param("0.weight"): (lc.AsIs, lc.RankSelection(budget=budgets[0])),
                lc.Param("2.weight"): (lc.AsIs, lc.RankSelection(budget=budgets[1]))}
    net = digits.reference()
    lc.Algorithm(net, tasks(net, True), [1e-2], digits.l_step(epochs=1), checkpoint_dir=tmp_path).run()
    net = digits.reference()
    with pytest.raises(lc.CompressionError, match="checkpoint of a different run"):
        lc.Algorithm(net, tasks(net, False), [1e-2], digits.l_step(epochs=1), checkpoint_dir=tmp_path).run()
    net = digits.reference()
    assert len(lc.Algorithm(net, tasks(net, True), [1e-2], digits.l_step(epochs=1), checkpoint_dir=tmp_path).run()) == 2


def test_after_a_failed_c_step_saving_says_there_is_no_complete_theta(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 4)

    def diverging(model, lc_penalty, step):             # an L step that blows the weights up
        with torch.no_grad():
            model.weight.fill_(float("nan"))
    tasks = {lc.Param(net.weight): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))}
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(1e-3, 1.5, 3), diverging)
    with pytest.raises(lc.CompressionError, match="NaN"):
        algorithm.run()
    with pytest.raises(lc.CompressionError, match="no complete Θ .* the last one failed"):
        lc.save(tmp_path / "m.lc", net, algorithm)
    assert not (tmp_path / "m.lc").exists()
