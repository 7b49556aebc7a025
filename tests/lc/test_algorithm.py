"""The LC loop on a tiny real problem (an MLP on scikit-learn's digits)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lc
from lc import _checkpoint
from tests import digits
from tests.lc import resume_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference_error():
    return digits.test_error(digits.reference())


def prune_tasks(net, kappa1=100, kappa2=40):
    return {lc.Param(net[0].weight): (lc.AsVector, lc.ConstraintL0Pruning(kappa=kappa1)),
            lc.Param("2.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=kappa2))}


def test_l0_pruning_run(reference_error):
    net = digits.reference()
    mus = lc.geometric_mu(1e-2, 1.5, 12)
    algorithm = lc.Algorithm(net, prune_tasks(net), mus, digits.l_step(), digits.test_error)
    history = algorithm.run()

    # the model holds Δ(Θ): at most κ nonzeros, and exactly the decompressed states
    assert int((net[0].weight != 0).sum()) <= 100 and int((net[2].weight != 0).sum()) <= 40
    for task, state in zip(algorithm.tasks, algorithm.states):
        for p, d in zip(task.params, task.step.decompress(state)):
            assert torch.equal(p.detach(), d)
    # the uncompressed w is kept, and differs from Δ(Θ)
    assert not torch.equal(algorithm.uncompressed["0.weight"], net[0].weight.detach())
    assert int((algorithm.uncompressed["0.weight"] != 0).sum()) > 100
    # 5% of the first layer, 12.5% of the second: within 5 points of the reference error (measured: ~1–2 points)
    assert history[-1].evaluation <= reference_error + 0.05
    assert history[-1].evaluation == digits.test_error(net)
    # the history is complete
    assert [r.step for r in history] == list(range(13))
    assert [r.mu for r in history] == [0.0] + mus
    for r in history:
        assert set(r.distance) == {"0.weight", "2.weight"} and all(d >= 0 for d in r.distance.values())
        assert r.bits == sum(s.bits for s in algorithm.states) or r.step < 12
        assert r.l_step_time >= 0 and r.c_step_time >= 0
        assert 0 <= r.evaluation <= 1
    assert history[0].l_step_time == 0 and history[5].l_step_time > 0
    # the LC steps drive w towards Δ(Θ)
    assert sum(history[-1].distance.values()) < 0.1 * sum(history[1].distance.values())
    # the ratio counts every parameter: 2048 + 320 weights compressed, 42 biases dense
    bits = history[-1].bits
    assert history[-1].ratio == pytest.approx(32 * 2410 / (bits + 32 * 42))
    assert lc.Compressed.of(algorithm).ratio(net) == history[-1].ratio


def test_penalty_value_gradient_and_multipliers():
    seen = {}

    def run(multipliers):
        net = digits.reference()
        record = []

        def l_step(model, lc_penalty, j):
            mu = mus[j]
            with algorithm.compressed():
                delta = {n: p.detach().clone() for n, p in model.named_parameters()}
            w = {n: p.detach().clone() for n, p in model.named_parameters()}
            plain = mu / 2 * sum(((w[n] - delta[n]) ** 2).sum() for n in ("0.weight", "2.weight"))
            model.zero_grad(set_to_none=True)
            value = lc_penalty()
            value.backward()
            record.append((float(value.detach()), float(plain)))
            # the gradient of μ/2‖w − target‖² is μ(w − target), zero outside the compressed tensors
            assert model[0].bias.grad is None or torch.all(model[0].bias.grad == 0)
            assert model[0].weight.grad is not None
            model.zero_grad()
            digits.train(model, 1, 0.05, lc_penalty)

        algorithm = lc.Algorithm(net, prune_tasks(net), mus, l_step, multipliers=multipliers)
        algorithm.run()
        seen[multipliers] = record

    mus = lc.geometric_mu(1e-2, 2.0, 4)
    run(False)
    run(True)
    # quadratic penalty: lc_penalty() = μ/2‖w − Δ(Θ)‖² at every step
    for value, plain in seen[False]:
        assert value == pytest.approx(plain, rel=1e-5)
    # augmented Lagrangian: equal at the first step (λ = 0), different afterwards (λ ≠ 0)
    assert seen[True][0][0] == pytest.approx(seen[True][0][1], rel=1e-5)
    assert all(abs(v - p) > 1e-4 * p for v, p in seen[True][1:])


def test_penalty_gradient_equals_mu_times_difference():
    net = digits.reference()
    grads = []

    def l_step(model, lc_penalty, j):
        with algorithm.compressed():
            d = model[0].weight.detach().clone()
        model.zero_grad()
        lc_penalty().backward()
        grads.append((model[0].weight.grad.clone(), 0.5 * (model[0].weight.detach() - d)))

    algorithm = lc.Algorithm(net, prune_tasks(net), [0.5], l_step, multipliers=False)
    algorithm.run()
    torch.testing.assert_close(*grads[0])


def test_early_stop_and_callbacks():
    net = digits.reference()
    calls = []
    algorithm = lc.Algorithm(net, prune_tasks(net), lc.geometric_mu(1e-2, 1.5, 10), digits.l_step(epochs=1),
                             tolerance=1e9, callbacks=[lambda a, r: calls.append(r.step)])
    assert len(algorithm.run()) == 2 and calls == [0, 1]

    net = digits.reference()
    stop_at_3 = lambda a, r: r.step == 3  # noqa: E731
    history = lc.Algorithm(net, prune_tasks(net), lc.geometric_mu(1e-2, 1.5, 10), digits.l_step(epochs=1),
                           callbacks=[stop_at_3]).run()
    assert [r.step for r in history] == [0, 1, 2, 3]
    assert int((net[0].weight != 0).sum()) <= 100          # stopped early, still compressed


def test_compressed_context_swaps_and_restores():
    net = digits.reference()
    algorithm = lc.Algorithm(net, prune_tasks(net), [1.0], digits.l_step(epochs=1))
    with pytest.raises(lc.CompressionError, match="call run"):
        with algorithm.compressed():
            pass
    checks = []

    def cb(a, r):
        w = net[0].weight.detach().clone()
        with a.compressed():
            checks.append(int((net[0].weight != 0).sum()))
        checks.append(torch.equal(net[0].weight.detach(), w))

    lc.Algorithm(net, prune_tasks(net), [1.0, 2.0], digits.l_step(epochs=1), callbacks=[cb]).run()
    assert checks == [100, True, 100, True, 100, True]
    algorithm.run()
    with pytest.raises(lc.CompressionError, match="already run"):
        algorithm.run()


def test_nan_stops_with_task_name_and_keeps_checkpoint(tmp_path):
    net = digits.reference()

    def l_step(model, lc_penalty, j):
        digits.train(model, 1, 0.05, lc_penalty)
        if j == 2:
            with torch.no_grad():
                model[2].weight[0, 0] = float("nan")

    algorithm = lc.Algorithm(net, prune_tasks(net), lc.geometric_mu(1e-2, 1.5, 5), l_step, checkpoint_dir=tmp_path)
    with pytest.raises(lc.CompressionError, match=r"task '2.weight': the weights hold NaN or inf.*checkpoint in .* "
                                                  r"is intact"):
        algorithm.run()
    ck = _checkpoint.load(tmp_path / _checkpoint.FILENAME)
    assert [r["step"] for r in ck["history"]] == [0, 1, 2] and not ck["finished"]
    assert all(bool(torch.isfinite(t).all()) for t in ck["model"].values())


def _states_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.bits == y.bits
        for k in x.tensors:
            assert torch.equal(x.tensors[k], y.tensors[k]), k


def test_interrupted_run_resumes_to_the_same_theta(tmp_path):
    torch.manual_seed(0)
    reference = resume_script.build(None)
    reference.run()

    torch.manual_seed(0)
    interrupted = resume_script.build(tmp_path)

    class Killed(Exception):
        pass

    def kill(a, r):
        if r.step == 4:
            raise Killed                                   # dies after step 4, before its checkpoint
    interrupted.callbacks.append(kill)
    with pytest.raises(Killed):
        interrupted.run()
    assert [r["step"] for r in _checkpoint.load(tmp_path / _checkpoint.FILENAME)["history"]][-1] == 3

    torch.manual_seed(123)                                 # the RNG state comes from the checkpoint, not from here
    resumed = resume_script.build(tmp_path)
    history = resumed.run()
    assert [r.step for r in history] == list(range(9))
    _states_equal(resumed.states, reference.states)
    assert [r.evaluation for r in history] == [r.evaluation for r in reference.history]

    # a finished run in the same directory returns at once, with the compressed model
    again = resume_script.build(tmp_path)
    again.l_step_optimization = lambda *a: pytest.fail("a finished run must not train again")
    assert len(again.run()) == 9
    _states_equal(again.states, reference.states)
    for (n, p), q in zip(again.model.named_parameters(), reference.model.parameters()):
        assert torch.equal(p, q), n


def test_killed_process_resumes_to_the_same_theta(tmp_path):
    """A real SIGKILL at an arbitrary moment, then the same command again."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tests.lc.resume_script"]
    subprocess.run(cmd + [str(tmp_path / "plain"), str(tmp_path / "plain.pt")], check=True, env=env, cwd=ROOT)

    ckdir = tmp_path / "ck"
    proc = subprocess.Popen(cmd + [str(ckdir), str(tmp_path / "resumed.pt"), "0.15"], env=env, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline:                          # kill once two LC steps are checkpointed
        f = ckdir / _checkpoint.FILENAME
        if f.exists() and len(_checkpoint.load(f)["history"]) >= 3:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "resumed.pt").exists()          # it really died before the end
    subprocess.run(cmd + [str(ckdir), str(tmp_path / "resumed.pt")], check=True, env=env, cwd=ROOT)

    a = torch.load(tmp_path / "plain.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    _states_equal([lc.State.from_dict(s) for s in a["states"]], [lc.State.from_dict(s) for s in b["states"]])
    assert a["history"] == b["history"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    algorithm = resume_script.build(tmp_path)
    algorithm.mu_schedule = algorithm.mu_schedule[:2]
    real_save = torch.save
    writes = []

    def dying_save(obj, f):
        writes.append(1)
        if len(writes) == 3:                               # the third checkpoint: half written, then "killed"
            f.write(b"\x80\x02partial")
            raise KeyboardInterrupt
        real_save(obj, f)

    monkeypatch.setattr(_checkpoint.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        algorithm.run()
    monkeypatch.setattr(_checkpoint.torch, "save", real_save)
    ck = _checkpoint.load(tmp_path / _checkpoint.FILENAME)  # still loadable: the previous checkpoint
    assert [r["step"] for r in ck["history"]] == [0, 1]


def test_checkpoint_of_another_run_is_refused_and_kept(tmp_path):
    net = digits.reference()
    lc.Algorithm(net, prune_tasks(net), [1.0], digits.l_step(epochs=1), checkpoint_dir=tmp_path).run()
    before = (tmp_path / _checkpoint.FILENAME).read_bytes()
    net = digits.reference()
    other = lc.Algorithm(net, prune_tasks(net, kappa1=50), [1.0], digits.l_step(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(lc.CompressionError, match="checkpoint of a different run"):
        other.run()
    assert (tmp_path / _checkpoint.FILENAME).read_bytes() == before


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / _checkpoint.FILENAME).write_bytes(b"not a checkpoint")
    net = digits.reference()
    with pytest.raises(lc.CompressionError, match="cannot be read"):
        lc.Algorithm(net, prune_tasks(net), [1.0], digits.l_step(epochs=1), checkpoint_dir=tmp_path).run()


def test_additive_task_in_the_loop():
    net = digits.reference()
    tasks = {lc.Param(net[0].weight): [(lc.AsVector, lc.ConstraintL0Pruning(kappa=60)),
                                       (lc.AsIs, lc.ConstraintL0Pruning(kappa=40))],
             lc.Param("2.weight"): (lc.AsVector, lc.PenaltyL0Pruning(alpha=1e-4))}
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 1.5, 4), digits.l_step(epochs=1))
    algorithm.run()
    assert int((net[0].weight != 0).sum()) <= 100
    assert algorithm.states[0].bits == sum(p.bits for p in algorithm.states[0].parts)


def test_keep_best_restores_the_best_steps_compressed_model(tmp_path):
    net = digits.reference()
    scores = iter([0.2, 0.9, 0.4, 0.9, 0.1])                 # step 1 is best; step 3 ties and must not replace it
    snapshots = {}

    def snapshot(a, r):                                      # an independent record of every step's Δ-model
        with a.compressed():
            snapshots[r.step] = {k: v.clone() for k, v in a.model.state_dict().items()}

    best = lc.KeepBest()
    algorithm = lc.Algorithm(net, prune_tasks(net), lc.geometric_mu(1e-2, 1.5, 4), digits.l_step(epochs=1),
                             lambda m: next(scores), callbacks=[snapshot, best])
    algorithm.run()
    assert (best.step, best.value, best.record.step) == (1, 0.9, 1)
    assert not torch.equal(snapshots[1]["0.weight"], net[0].weight.detach())     # the last step differs
    best.restore(net)
    for k, v in snapshots[1].items():
        assert torch.equal(net.state_dict()[k], v), k
    assert int((net[0].weight != 0).sum()) <= 100 and int((net[2].weight != 0).sum()) <= 40
    for n, d in best.compressed.deltas().items():            # Θ of that step, as lc.save needs it
        assert torch.equal(dict(net.named_parameters())[n].detach(), d)
    lc.save(tmp_path / "best.lc", net, best.compressed)
    fresh = digits.make_net()
    lc.load(tmp_path / "best.lc", fresh)
    assert digits.test_error(fresh) == digits.test_error(net)


def test_keep_best_keeps_the_m_best_and_reselect_chooses_by_a_second_score():
    net = digits.reference()
    scores = iter([0.2, 0.9, 0.4, 0.9, 0.5])                 # kept, best first: steps 1, 3 (tie: after 1), 4
    snapshots = {}

    def snapshot(a, r):
        with a.compressed():
            snapshots[r.step] = {k: v.clone() for k, v in a.model.state_dict().items()}

    best = lc.KeepBest(keep=3)
    lc.Algorithm(net, prune_tasks(net), lc.geometric_mu(1e-2, 1.5, 4), digits.l_step(epochs=1),
                 lambda m: next(scores), callbacks=[snapshot, best]).run()
    assert [(c.step, c.value) for c in best.candidates] == [(1, 0.9), (3, 0.9), (4, 0.5)]
    assert (best.step, best.value) == (1, 0.9)               # before reselect: the best first score
    for c in best.candidates:
        for k, v in snapshots[c.step].items():
            assert torch.equal(c.state_dict[k], v), (c.step, k)

    def which(m):                                            # the step whose Δ-model m holds
        return next(s for s, snap in snapshots.items()
                    if all(torch.equal(m.state_dict()[k], v) for k, v in snap.items()))

    seen = []
    second = {1: 0.1, 3: 0.7, 4: 0.7}                        # 3 and 4 tie: 3 has the better first score
    chosen = best.reselect(net, lambda m: seen.append(which(m)) or second[which(m)])
    assert sorted(seen) == [1, 3, 4] and chosen.step == 3 and best.step == 3 and best.value == 0.9
    assert [c.rescore for c in best.candidates] == [0.1, 0.7, 0.7]
    assert which(net) == 3                                   # the model holds the chosen step
    for n, d in best.compressed.deltas().items():
        assert torch.equal(dict(net.named_parameters())[n].detach(), d)
    assert best.reselect(net, lambda m: -second[which(m)], higher=False).step == 3   # lowest of −score
    assert best.reselect(net, lambda m: float("nan") if which(m) == 3 else second[which(m)]).step == 4

    with pytest.raises(lc.CompressionError, match="not a number"):
        best.reselect(net, lambda m: "good")
    with pytest.raises(lc.CompressionError, match="NaN for every"):
        best.reselect(net, lambda m: float("nan"))
    with pytest.raises(lc.CompressionError, match="keep"):
        lc.KeepBest(keep=0)
    with pytest.raises(lc.CompressionError, match="no step yet"):
        lc.KeepBest(keep=2).reselect(net, lambda m: 1.0)


def test_keep_best_lower_start_score_and_errors():
    net = digits.reference()
    best = lc.KeepBest(score=lambda r: r.evaluation["loss"], higher=False, start=1)
    losses = iter([0.0, 3.0, 1.0, 2.0])                      # step 0 (skipped by start=1) would win otherwise
    lc.Algorithm(net, prune_tasks(net), [1e-2, 2e-2, 4e-2], digits.l_step(epochs=1),
                 lambda m: {"loss": next(losses)}, callbacks=[best]).run()
    assert (best.step, best.value) == (2, 1.0)

    with pytest.raises(lc.CompressionError, match="no step yet"):
        lc.KeepBest().restore(net)
    with pytest.raises(lc.CompressionError, match="start"):
        lc.KeepBest(start=-1)
    trained = []                                              # raised at step 0, before any L step
    net = digits.reference()
    with pytest.raises(lc.CompressionError, match="not a number"):
        lc.Algorithm(net, prune_tasks(net), [1e-2], lambda *a: trained.append(1),
                     lambda m: "good", callbacks=[lc.KeepBest()]).run()
    assert trained == []


def test_direct_compression_at_the_limit_mu_to_zero_starts_penalty_forms_from_nothing():
    """direct_mu=0: Θ = argmin αC(Θ), the LC papers' start; the run then grows what the loss needs."""
    net = digits.reference()
    tasks = {lc.Param("0.weight"): (lc.AsVector, lc.PenaltyL0Pruning(alpha=1e-6)),
             lc.Param("2.weight"): (lc.AsIs, lc.RankSelection(alpha=1e-5)),
             lc.Param("0.bias"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=10))}      # a constraint: unchanged
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 2.0, 6), digits.l_step(epochs=1), direct_mu=0)
    bits = []
    algorithm.callbacks.append(lambda a, r: bits.append([s.bits for s in a.states]))
    history = algorithm.run()
    w0 = digits.reference()[0].weight.detach()
    assert bits[0][0] == 0 and history[0].info["2.weight"]["rank"] == 0          # nothing kept at step 0
    assert history[0].distance["0.weight"] == pytest.approx(float((w0 ** 2).sum()))
    assert history[-1].info["2.weight"]["rank"] > 0 and int((net[0].weight != 0).sum()) > 0
    default = lc.Compressed.direct(digits.reference(), {lc.Param("0.bias"): (lc.AsVector,
                                                                             lc.ConstraintL0Pruning(kappa=10))})
    assert bits[0][2] == default.states[0].bits
    with pytest.raises(lc.CompressionError, match="direct_mu=-1 must be a number from 0"):
        lc.Algorithm(net, tasks, [1e-2], digits.l_step(epochs=1), direct_mu=-1)
    with pytest.raises(lc.CompressionError, match="direct_mu=0.5 must be a number from 0"):
        lc.Algorithm(net, tasks, [1e-2], digits.l_step(epochs=1), direct_mu=0.5)


@pytest.mark.parametrize("c,expected", [
    (lc.PenaltyL0Pruning(alpha=0.1), 0), (lc.PenaltyL1Pruning(alpha=0.1), 0),
    (lc.PenaltyL0Pruning(alpha=0.0), 24), (lc.PenaltyL1Pruning(alpha=0.0), 24)])
def test_penalty_pruning_at_mu_zero_is_the_limit(c, expected):
    w = torch.randn(24)
    assert int((c.decompress(c.compress(w, 0.0)) != 0).sum()) == expected


def test_rank_selection_at_mu_zero_is_the_limit():
    w = torch.randn(12, 8)
    for alpha, rank in ((1e-3, 0), (0.0, 8)):
        c = lc.RankSelection(alpha=alpha)
        assert c.compress(w, 0.0).meta["rank"] == rank
    budget = lc.RankSelection(budget=lc.RankBudget(ratio=4.0))
    assert budget.compress(w, 0.0).meta["rank"] == budget.compress(w, 1.0).meta["rank"]
