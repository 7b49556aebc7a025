"""Policy-gradient actors: the LC adapter for continuous control with PPO + GAE (gymnasium, Gaussian policies).

    from tasks import policygradient as pg
    cfg = pg.InvertedPendulumConfig()
    ref = pg.reference(cfg)                     # trained once, cached on disk by a hash of cfg
    l_step = pg.DistillLStep(cfg, ref)          # distillation onto the reference's mean actions (or pg.OnlineLStep)
    evaluate = lambda actor: pg.evaluate(actor, cfg.env_id, episodes=10).mean
    algorithm = lc.Algorithm(ref.actor(), tasks, lc.geometric_mu(1e-3, 1.5, 15), l_step, evaluate)

What is compressed is the actor's mean network (:class:`tasks.rl.ppo.GaussianActor`): the deterministic policy
s ↦ μ_w(norm(s)) that is evaluated and exported; its observation normaliser is frozen into it (buffers) and its
log-std is not compressed (the deterministic policy does not use it). One config dataclass per environment fixes
every hyperparameter: reference training and the two L steps shared by every compression scheme. PPO itself is in
:mod:`tasks.rl.ppo`, the evaluation in :mod:`tasks.rl.evaluate` (shared with the Q-networks).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

import lc
from lc._io import write_atomic
from tasks import adapter
from tasks.rl.cache import cache_dir, config_hash, training_fields
from tasks.rl.evaluate import POLICY_SEED0, SELECT_SEED0, TEST_SEED0, Evaluation, evaluate
from tasks.rl.ppo import PPO, GaussianActor, PPOConfig, critic_mlp

__all__ = ["PolicyGradient", "PPOConfig", "InvertedPendulumConfig", "HalfCheetahConfig", "FAST", "Reference", "reference",
           "make_actor", "make_critic", "OnlineLStep", "DistillLStep", "evaluate", "Evaluation", "train",
           "config_hash", "check", "default_cache_dir", "TEST_SEED0", "SELECT_SEED0", "POLICY_SEED0"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvertedPendulumConfig(PPOConfig):
    """InvertedPendulum-v5 (tests): short rollouts at a larger learning rate; 8 192 steps take about 10 s on one
    core and balance the pole for the whole 1 000-step episode (an untrained actor, whose mean action is about 0:
    about 25 steps; uniformly random actions: about 5)."""

    env_id: str = "InvertedPendulum-v5"
    total_steps: int = 8_192
    rollout_steps: int = 512
    lr: float = 1e-3
    select_interval: int = 2_048
    select_episodes: int = 3
    reference_states: int = 4_096
    lc_steps: int = 1_024
    lc_lr: float = 1e-4
    distill_steps: int = 200
    distill_policy_states: int = 1_000


FAST = InvertedPendulumConfig()
"""The tests' environment."""


@dataclass(frozen=True)
class HalfCheetahConfig(PPOConfig):
    """HalfCheetah-v5 (the study): 64-64 tanh actor and critic, cleanrl's PPO settings (Adam 3e-4 annealed,
    2 048-step rollouts, 10 epochs of 64-transition minibatches, γ = 0.99, λ = 0.95, clip 0.2, observation and
    reward normalisation), 1M environment steps. The L steps (one set for every scheme, chosen from cleanrl's
    settings and on the fast environment, not tuned on HalfCheetah): 10 240 environment steps of continued PPO at
    Adam 1e-4 (online; 5 rollouts), or 1 000 Adam steps of distillation onto the reference's mean actions on its
    last 50 000 training states plus 5 000 states per L step visited by the compressed actor (offline)."""

    env_id: str = "HalfCheetah-v5"
    lc_steps: int = 10_240


def default_cache_dir() -> Path:
    """``$LC_CACHE/policygradient`` if LC_CACHE is set, else ``.cache/policygradient`` under the current directory."""
    return cache_dir("policygradient")


def check(cfg: PPOConfig) -> None:
    """Refuses, before any training, a config that cannot train: a non-continuous environment, sizes that are not
    positive, a minibatch larger than a rollout, rates outside their ranges."""
    bad = [f"{k}={getattr(cfg, k)!r} must be a positive integer" for k in
           ("total_steps", "rollout_steps", "epochs", "minibatch", "select_interval", "select_episodes",
            "reference_states", "lc_steps", "distill_steps", "distill_batch")
           if not (isinstance(getattr(cfg, k), int) and getattr(cfg, k) > 0)]
    bad += [f"{k}={getattr(cfg, k)!r} must be > 0" for k in ("lr", "lc_lr", "distill_lr", "clip", "max_grad_norm",
                                                              "obs_clip", "reward_clip")
            if not getattr(cfg, k) > 0]
    bad += [f"{k}={getattr(cfg, k)!r} must lie in [0, 1]" for k in ("gamma", "gae_lambda")
            if not 0 <= getattr(cfg, k) <= 1]
    widths = (*cfg.actor_hidden, *cfg.critic_hidden)
    if not all(isinstance(h, int) and h > 0 for h in widths):
        bad.append(f"actor_hidden={cfg.actor_hidden!r}, critic_hidden={cfg.critic_hidden!r}: widths must be "
                   "positive integers")
    if not bad and cfg.minibatch > cfg.rollout_steps:
        bad.append(f"minibatch={cfg.minibatch} is larger than rollout_steps={cfg.rollout_steps}")
    if bad:
        raise lc.CompressionError(f"{type(cfg).__name__}: " + "; ".join(bad))
    try:
        env = gym.make(cfg.env_id)
        space = env.action_space
        env.close()
    except gym.error.Error as e:
        raise lc.CompressionError(f"{type(cfg).__name__}: env_id={cfg.env_id!r}: {e}") from None
    if not isinstance(space, gym.spaces.Box):
        raise lc.CompressionError(f"{type(cfg).__name__}: {cfg.env_id} has {type(space).__name__} actions; a "
                                  "Gaussian policy needs continuous (Box) actions: use tasks.qnetwork for discrete")


def _dims(env_id: str) -> tuple[int, int]:
    env = gym.make(env_id)
    dims = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    return dims


def make_actor(cfg: PPOConfig, seed: int | None = None) -> GaussianActor:
    """A freshly initialised actor for cfg's environment (torch seeded with ``seed``, default cfg.seed)."""
    obs_dim, act_dim = _dims(cfg.env_id)
    with torch.random.fork_rng():                   # leaves the caller's global torch RNG as it was
        torch.manual_seed(cfg.seed if seed is None else seed)
        return GaussianActor(obs_dim, act_dim, tuple(cfg.actor_hidden), cfg.obs_clip)


def make_critic(cfg: PPOConfig, seed: int | None = None) -> torch.nn.Module:
    obs_dim, _ = _dims(cfg.env_id)
    with torch.random.fork_rng():
        torch.manual_seed((cfg.seed if seed is None else seed) + 1)
        return critic_mlp(obs_dim, tuple(cfg.critic_hidden))


@dataclass
class Reference:
    """A trained reference: its config, actor and critic weights (the actor's with its frozen observation
    statistics), the reward scale's statistics, raw states of its last training rollouts and the training log."""

    cfg: PPOConfig
    actor_state: dict
    critic_state: dict
    reward_scale: dict
    states: torch.Tensor
    log: list[dict]
    path: Path | None = None

    def actor(self) -> GaussianActor:
        """A new copy of the reference actor (the caller may train or compress it)."""
        net = make_actor(self.cfg)
        net.load_state_dict(self.actor_state)
        return net

    def critic(self) -> torch.nn.Module:
        net = make_critic(self.cfg)
        net.load_state_dict(self.critic_state)
        return net

    def training_seconds(self) -> float:
        """Wall seconds of the reference's training (model selection included), from its log."""
        return self.log[-1]["seconds"] if self.log else float("nan")


def train(cfg: PPOConfig, *, seed: int | None = None, steps: int | None = None,
          progress: Callable[[dict], None] | None = None):
    """PPO from scratch; evaluates the deterministic actor every ``cfg.select_interval`` steps on the
    model-selection seeds (disjoint from the test seeds) and keeps the best. Returns ``(best_actor_state,
    best_critic_state, ppo, log)``; log rows ``{"step", "mean", "std", "train_return", "seconds", "cpu_seconds"}``."""
    check(cfg)
    seed = cfg.seed if seed is None else seed
    steps = cfg.total_steps if steps is None else steps
    torch.manual_seed(seed)
    actor, critic = make_actor(cfg, seed), make_critic(cfg, seed)
    ppo = PPO(cfg, actor, critic, seed=seed)
    best, best_mean, rows = None, -float("inf"), []
    t0, c0 = time.perf_counter(), time.process_time()
    while ppo.steps < steps:
        ppo.train(min(cfg.select_interval, steps - ppo.steps))
        ev = evaluate(actor, cfg.env_id, cfg.select_episodes, SELECT_SEED0)
        recent = [r for _, r in ppo.returns[-10:]]
        row = {"step": ppo.steps, "mean": ev.mean, "std": ev.std,
               "train_return": float(np.mean(recent)) if recent else float("nan"),
               "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
        rows.append(row)
        log.info("%s step %d: eval %.1f ± %.1f, last-10 train return %.1f (%.0fs)", cfg.env_id, ppo.steps,
                 ev.mean, ev.std, row["train_return"], row["seconds"])
        if progress is not None:
            progress(row)
        if ev.mean > best_mean:
            best = ({k: v.clone() for k, v in actor.state_dict().items()},
                    {k: v.clone() for k, v in critic.state_dict().items()})
            best_mean = ev.mean
    ppo.close()
    return best[0], best[1], ppo, rows


def reference(cfg: PPOConfig, cache_dir: str | Path | None = None, *,
              progress: Callable[[dict], None] | None = None) -> Reference:
    """The reference for ``cfg``: loaded from ``cache_dir`` if trained before, else trained and saved.

    The file is named by a hash of the config; an existing file is never overwritten (it is written once,
    atomically), and one whose stored config differs from ``cfg`` is an error."""
    check(cfg)
    path = Path(cache_dir or default_cache_dir()) / f"{cfg.env_id}-ppo-{config_hash(cfg)}.pt"
    if path.exists():
        obj = torch.load(path, weights_only=True)
        stored = {k: obj["config"].get(k) for k in training_fields(cfg)}
        if json.dumps(stored, sort_keys=True) != json.dumps(training_fields(cfg), sort_keys=True):
            raise lc.CompressionError(f"{path} holds a reference of another config; move it away")
        log.info("reference loaded from %s", path)
        return Reference(cfg, obj["actor"], obj["critic"], obj["reward_scale"], obj["states"], obj["log"], path)
    log.info("training the %s PPO reference (%d steps); it will be cached in %s", cfg.env_id, cfg.total_steps, path)
    actor_state, critic_state, ppo, rows = train(cfg, progress=progress)
    ref = Reference(cfg, actor_state, critic_state, ppo.reward.state_dict(), torch.from_numpy(ppo.states), rows, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"config": dataclasses.asdict(cfg), "actor": actor_state, "critic": critic_state,
           "reward_scale": ref.reward_scale, "states": ref.states, "log": rows}
    if not write_atomic(path, lambda f: torch.save(obj, f), replace=False, what="the reference"):
        log.warning("%s appeared while training; kept the existing file", path)     # another process's: theirs
    return ref


class OnlineLStep:
    """L step by continued PPO: min_w L^PPO(w) + μ/2‖w − Δ(Θ) − λ/μ‖², the penalty applied decoupled after each
    Adam step (``lc_penalty.step(optimizer)``, Adam's own metric). Each call runs ``cfg.lc_steps`` environment
    steps (whole rollouts) at Adam ``cfg.lc_lr`` from the reference's critic, with the observation and reward
    statistics frozen at the reference's. The environment, critic and optimizer carry over from one L step to
    the next (a new model — QAT's parametrized one — starts a new PPO). Cost: lc_steps environment steps and
    cfg.epochs passes of PPO over them per call."""

    def __init__(self, cfg: PPOConfig, ref: Reference, seed: int = 0):
        self.cfg, self.ref, self.seed = cfg, ref, seed
        self.ppo: PPO | None = None

    def __call__(self, model: torch.nn.Module, lc_penalty, step: int) -> None:
        if self.ppo is None or self.ppo.actor is not model:
            self.ppo = PPO(self.cfg, model, self.ref.critic(), seed=POLICY_SEED0 + self.seed, lr=self.cfg.lc_lr,
                           reward_scale=self.ref.reward_scale, learn_stats=False)
        self.ppo.train(self.cfg.lc_steps, penalty=lc_penalty)


class DistillLStep:
    """Offline L step (policy distillation): min_w E_s ‖μ_w(s) − μ_ref(s)‖² + μ/2‖w − Δ(Θ) − λ/μ‖² over a set of
    states S, μ_ref the reference's mean action (the log-std is not compressed, so not distilled).

    S = the reference's last training states plus, from the second call on, ``cfg.distill_policy_states`` states
    per call visited by the deterministic policy of the actor being compressed (DAgger, Ross et al. 2011: the
    compressed actor strays into states the reference rarely visits, and there it must act as the reference
    would), on episodes seeded from POLICY_SEED0; half of each minibatch then comes from the visited states.
    Each call takes ``cfg.distill_steps`` Adam steps (``cfg.distill_lr``) on ``cfg.distill_batch`` states, each
    followed by the decoupled penalty step; the optimizer carries over. No reward is used."""

    def __init__(self, cfg: PPOConfig, ref: Reference, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.reference = ref.actor()
        self.states = ref.states.float()
        with torch.no_grad():
            self.targets = self.reference(self.states)
        self.visited = torch.empty(0, self.states.shape[1])
        self.visited_targets = torch.empty(0, self.targets.shape[1])
        self.episodes = 0
        self.gen = torch.Generator().manual_seed(seed)
        self.opt: torch.optim.Optimizer | None = None
        self.model: torch.nn.Module | None = None
        self.env: gym.Env | None = None

    @torch.no_grad()
    def visit(self, model: torch.nn.Module, n: int) -> None:
        """Add n states visited by model's deterministic policy, labelled with the reference's mean actions."""
        if self.env is None:
            self.env = gym.make(self.cfg.env_id)
        space, seed0 = self.env.action_space, POLICY_SEED0 + 100_000 * self.seed
        obs, _ = self.env.reset(seed=seed0 + self.episodes)
        states = np.empty((n, self.states.shape[1]), dtype=np.float32)
        for i in range(n):
            states[i] = obs
            a = np.clip(model(torch.from_numpy(states[i])).numpy(), space.low, space.high)
            obs, _, terminated, truncated, _ = self.env.step(a)
            if terminated or truncated:
                self.episodes += 1
                obs, _ = self.env.reset(seed=seed0 + self.episodes)
        s = torch.from_numpy(states)
        self.visited = torch.cat([self.visited, s])
        self.visited_targets = torch.cat([self.visited_targets, self.reference(s)])

    def __call__(self, model: torch.nn.Module, lc_penalty, step: int) -> None:
        if self.opt is None or self.model is not model:
            self.model, self.opt = model, torch.optim.Adam(model.parameters(), lr=self.cfg.distill_lr)
        if self.cfg.distill_policy_states and step > 0:
            self.visit(model, self.cfg.distill_policy_states)
        n, m, b = len(self.states), len(self.visited), self.cfg.distill_batch
        for _ in range(self.cfg.distill_steps):
            idx = torch.randint(n, (b - b // 2 if m else b,), generator=self.gen)
            s, t = self.states[idx], self.targets[idx]
            if m:
                jdx = torch.randint(m, (b // 2,), generator=self.gen)
                s, t = torch.cat([s, self.visited[jdx]]), torch.cat([t, self.visited_targets[jdx]])
            loss = ((model(s) - t) ** 2).sum(1).mean()          # E‖μ_w(s) − μ_ref(s)‖²
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            lc_penalty.step(self.opt)                            # decoupled penalty, Adam's metric


class PolicyGradient:
    """The adapter (:class:`tasks.adapter.Adapter`) of a PPO Gaussian actor on ``cfg``'s environment: the reference
    of :func:`reference`, the L step :class:`DistillLStep` (``l_step="offline"``) or :class:`OnlineLStep`
    (``"online"``), and the deterministic return over ``episodes`` episodes seeded from ``seed0`` (metric
    ``return``, higher is better; default: the test seeds). ``seed`` seeds the L step's streams. A config that
    cannot train is refused here, before any training."""

    metric = "return"
    higher_is_better = True

    def __init__(self, cfg: PPOConfig, l_step: str = "offline", *, seed: int = 0, episodes: int = 10,
                 seed0: int = TEST_SEED0, cache_dir: str | Path | None = None):
        if l_step not in ("offline", "online"):
            raise lc.CompressionError(f"PolicyGradient: l_step={l_step!r}; use 'offline' (distillation) or "
                                      "'online' (continued PPO)")
        if not (isinstance(episodes, int) and episodes > 0):
            raise lc.CompressionError(f"PolicyGradient: episodes={episodes!r} must be a positive integer")
        check(cfg)
        self.cfg, self.kind, self.seed, self.episodes, self.seed0 = cfg, l_step, seed, episodes, seed0
        self.cache_dir = cache_dir
        self.name = cfg.env_id
        self.split = f"{episodes} episodes, seeds {seed0}–{seed0 + episodes - 1}"
        self._reference: Reference | None = None

    def fingerprint(self) -> dict:
        return {"config": type(self.cfg).__name__, **dataclasses.asdict(self.cfg), "l_step": self.kind,
                "seed": self.seed, "episodes": self.episodes, "seed0": self.seed0}

    def reference_run(self, cache_dir: str | Path | None = None) -> Reference:
        """The cached :class:`Reference` (trained on first use)."""
        if self._reference is None:
            self._reference = reference(self.cfg, cache_dir or self.cache_dir)
        return self._reference

    def reference(self, cache_dir: str | Path | None = None) -> torch.nn.Module:
        return self.reference_run(cache_dir).actor()

    def l_step(self, reference_model: torch.nn.Module | None = None):
        """A new L step (its environment, critic and optimizer are its own); the reference's critic, states and
        statistics come from the cached :class:`Reference` (``reference_model`` is not needed)."""
        ref = self.reference_run()
        if self.kind == "online":
            return OnlineLStep(self.cfg, ref, seed=self.seed)
        return DistillLStep(self.cfg, ref, seed=self.seed)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        ev = evaluate(model, self.cfg.env_id, self.episodes, self.seed0)
        return {"return": ev.mean, "return_std": ev.std}

    def compression_tasks(self, model: torch.nn.Module, make, *, joint: bool = False, names=None) -> dict:
        return adapter.compression_tasks(model, make, joint=joint, names=names)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return torch.zeros(batch_size, _dims(self.cfg.env_id)[0])
