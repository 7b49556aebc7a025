"""The PPO (Gaussian actor) adapter on the fast environment: learning, LC structure with both L steps, deterministic
evaluation, bad configs refused before training, the pieces (GAE, observation statistics) against oracles."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import lc

gym = pytest.importorskip("gymnasium")
pg = pytest.importorskip("tasks.policygradient")
from tasks.rl.ppo import ObsNorm, RewardScale, gae  # noqa: E402

FAST = pg.FAST
UNTRAINED_RETURN = 25.0     # InvertedPendulum-v5: an untrained actor (mean action ≈ 0) balances ~25 steps


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    torch.set_num_threads(1)
    return pg.reference(FAST, cache_dir=tmp_path_factory.mktemp("cache"))


def small(cfg=FAST, **changes):
    """The fast config with short L steps (the structure, not the return, is what these tests check)."""
    return dataclasses.replace(cfg, **{"lc_steps": cfg.rollout_steps, "distill_steps": 100,
                                       "distill_policy_states": 200, **changes})


def test_the_adapter_learns(ref):
    ev = pg.evaluate(ref.actor(), FAST.env_id, episodes=10)
    untrained = pg.evaluate(pg.make_actor(FAST, seed=3), FAST.env_id, episodes=10)
    assert untrained.mean < 2 * UNTRAINED_RETURN
    assert ev.mean > 20 * UNTRAINED_RETURN                                      # 1000: the whole episode
    assert ref.log[-1]["step"] == FAST.total_steps and ref.training_seconds() > 0


def test_evaluation_is_deterministic_for_a_seed(ref):
    actor = pg.make_actor(FAST, seed=4)                       # falls within tens of steps: episodes differ
    a = pg.evaluate(actor, FAST.env_id, episodes=5, seed0=123)
    b = pg.evaluate(actor, FAST.env_id, episodes=5, seed0=123)
    assert (a.mean, a.std, a.transitions) == (b.mean, b.std, b.transitions) and a.std > 0
    assert pg.evaluate(actor, FAST.env_id, episodes=5, seed0=456).mean != a.mean
    task = pg.PolicyGradient(FAST, episodes=2, cache_dir=ref.path.parent)
    assert task.evaluate(ref.actor()) == task.evaluate(ref.actor())


def test_reference_is_cached_and_never_overwritten(ref, tmp_path):
    again = pg.reference(FAST, cache_dir=ref.path.parent)
    assert again.path == ref.path
    assert all(torch.equal(again.actor_state[k], v) for k, v in ref.actor_state.items())
    assert torch.equal(again.states, ref.states) and len(ref.states) == FAST.reference_states
    other = dataclasses.replace(FAST, seed=1)
    assert pg.config_hash(other) != pg.config_hash(FAST)
    assert pg.config_hash(small()) == pg.config_hash(FAST)              # L-step fields: the same reference
    torch.save({"config": dataclasses.asdict(other)}, tmp_path / ref.path.name)     # a clash: same name
    with pytest.raises(lc.CompressionError, match="another config"):
        pg.reference(FAST, cache_dir=tmp_path)


def test_the_actors_observation_statistics_are_frozen_into_it(ref):
    actor = ref.actor()
    assert not any("norm" in n for n, _ in actor.named_parameters())             # buffers: never compressed
    before = {k: v.clone() for k, v in actor.state_dict().items() if k.startswith("norm.")}
    assert before["norm.count"] > 1000                                           # learned in training
    task = pg.PolicyGradient(small(), "online", cache_dir=ref.path.parent)
    task.l_step()(actor, lc.penalty.Penalty(0.0, []), 0)
    assert all(torch.equal(actor.state_dict()[k], v) for k, v in before.items())
    assert not torch.equal(actor.net[0].weight, ref.actor().net[0].weight)     # but the weights trained


@pytest.mark.parametrize("kind", ["offline", "online"])
def test_lc_gives_the_declared_structure(ref, kind):
    task = pg.PolicyGradient(small(), kind, episodes=2, cache_dir=ref.path.parent)
    actor = task.reference()
    tasks = task.compression_tasks(actor, lambda shapes: (lc.AsVector, lc.AdaptiveQuantization(k=4)))
    assert [p.targets for p in tasks] == [("net.0.weight",), ("net.2.weight",), ("net.4.weight",)]
    history = lc.Algorithm(actor, tasks, lc.geometric_mu(1e-2, 1.5, 3), task.l_step(), task.evaluate).run()
    assert len(history) == 4 and np.isfinite(history[-1].evaluation["return"])
    for name in ("net.0.weight", "net.2.weight", "net.4.weight"):
        assert actor.get_parameter(name).unique().numel() <= 4
    assert torch.equal(actor.log_std, ref.actor().log_std) or kind == "online"   # distillation leaves it alone


def test_offline_lc_pruning_keeps_the_budget_and_dagger_adds_the_actors_states(ref):
    cfg = small()
    task = pg.PolicyGradient(cfg, "offline", episodes=2, cache_dir=ref.path.parent)
    actor = task.reference()
    n = sum(actor.get_parameter(p).numel() for p in ("net.0.weight", "net.2.weight", "net.4.weight"))
    tasks = task.compression_tasks(actor, lambda shapes: (lc.AsVector, lc.ConstraintL0Pruning(kappa=n // 10)),
                                   joint=True)
    step = task.l_step()
    lc.Algorithm(actor, tasks, lc.geometric_mu(1e-2, 1.5, 2), step, task.evaluate).run()
    kept = sum(int(torch.count_nonzero(actor.get_parameter(p))) for p in ("net.0.weight", "net.2.weight",
                                                                          "net.4.weight"))
    assert kept <= n // 10
    assert len(step.visited) == cfg.distill_policy_states              # the second of the two L steps visits
    with torch.no_grad():
        assert torch.allclose(step.visited_targets, ref.actor()(step.visited))


def test_bad_configs_are_refused_before_training(tmp_path):
    for bad, match in [(dataclasses.replace(FAST, minibatch=0), "minibatch"),
                       (dataclasses.replace(FAST, rollout_steps=32, minibatch=64), "larger than rollout"),
                       (dataclasses.replace(FAST, gamma=1.5), "gamma"),
                       (dataclasses.replace(FAST, actor_hidden=(64, 0)), "widths"),
                       (dataclasses.replace(FAST, env_id="CartPole-v1"), "continuous"),
                       (dataclasses.replace(FAST, env_id="NoSuchEnv-v0"), "NoSuchEnv")]:
        with pytest.raises(lc.CompressionError, match=match):
            pg.reference(bad, cache_dir=tmp_path)
        with pytest.raises(lc.CompressionError, match=match):
            pg.PolicyGradient(bad)
    with pytest.raises(lc.CompressionError, match="offline"):
        pg.PolicyGradient(FAST, "sideways")
    assert not list(tmp_path.iterdir())                                          # nothing trained, nothing written


def test_gae_against_the_sum_of_discounted_td_errors():
    rewards, values = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, 1.0, 1.5, 2.0])
    ends, last, gamma, lam = torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.tensor(3.0), 0.9, 0.8
    adv = gae(rewards, values, ends, last, gamma, lam)
    nxt = [values[1], 0.0, values[3], last]                                      # episode ends after step 1
    delta = [float(rewards[t] + gamma * nxt[t] - values[t]) for t in range(4)]
    expected = [delta[0] + gamma * lam * delta[1], delta[1], delta[2] + gamma * lam * delta[3], delta[3]]
    assert adv.tolist() == pytest.approx(expected)


def test_observation_statistics_are_those_of_all_batches_seen():
    torch.manual_seed(0)
    x = torch.randn(300, 4) * torch.tensor([1.0, 2.0, 0.5, 3.0]) + torch.tensor([1.0, -2.0, 0.0, 5.0])
    norm = ObsNorm(4)
    for chunk in x.split([100, 7, 193]):
        norm.update(chunk)
    assert torch.allclose(norm.mean, x.mean(0), atol=1e-4)
    assert torch.allclose(norm.var, x.var(0, unbiased=False), rtol=1e-3)
    assert norm(x).abs().max() <= norm.clip


def test_reward_scale_divides_by_the_std_of_the_discounted_return():
    scale = RewardScale(gamma=0.5, clip=100.0)
    rewards = [1.0, 3.0, -2.0, 4.0]
    out = [scale(r, end=False) for r in rewards]
    g, returns = 0.0, []
    for r in rewards:
        g = 0.5 * g + r
        returns.append(g)
    var = np.var(returns)                          # the running variance after all four (a 1e-4 prior count aside)
    assert scale.var == pytest.approx(var, rel=1e-3)
    assert out[-1] == pytest.approx(rewards[-1] / np.sqrt(var), rel=1e-3)


def test_the_study_runs_resumes_and_writes_its_outputs(ref, tmp_path):
    from experiments.policygradient import study
    from experiments.policygradient.reference import ENVS
    env = next(k for k, c in ENVS.items() if c is type(FAST))
    argv = ["--env", env, "--seeds", "0", "--steps", "2", "--episodes", "2", "--lc", "quantization=4",
            "--naive", "ptq-kmeans=4", "--qat", "qat=2", "--l-steps", "offline", "--no-costs",
            "--cache-dir", str(ref.path.parent), "--out", str(tmp_path / "out")]
    assert study.main(argv) == 0
    rows = [r for r in (tmp_path / "out" / "study.csv").read_text().splitlines()[1:]]
    assert len(rows) == 3
    verdict = json.loads((tmp_path / "out" / "target.json").read_text())
    assert {p["method"] for p in verdict["points"]} == {"lc-offline", "naive", "qat-offline"}
    assert all(1.9 < p["bits_per_weight"] < 2.2 for p in verdict["points"])   # 2-bit QAT: 2.02 (its scales)
    assert (tmp_path / "out" / "study.png").stat().st_size > 1000
    before = (tmp_path / "out" / "offline_s0" / "rows.jsonl").read_text()
    assert study.main(argv) == 0                                                 # resumed: nothing re-run
    assert (tmp_path / "out" / "offline_s0" / "rows.jsonl").read_text() == before
    lc_run = next(r for r in study.collect(tmp_path / "out", FAST) if r["method"] == "lc-offline")
    from experiments.rl import costs                  # the exported actor, alone in a fresh process
    m = costs.measure(env, lc_run["artifact"], 1)
    actor = pg.make_actor(FAST)
    lc.load(lc_run["artifact"], actor)
    assert m["mean"] == pytest.approx(pg.evaluate(actor, FAST.env_id, 1).mean) and m["transitions"] == m["mean"]
    assert m["time_per_transition"] > 0 and m["cpu_time"] > 0 and m["peak_rss_mb"] > 50
