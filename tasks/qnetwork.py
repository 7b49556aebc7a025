"""Q-networks: the LC adapter for reinforcement learning with double DQN (gymnasium, discrete actions).

    from tasks import qnetwork as qn
    cfg = qn.CartPoleConfig()
    ref = qn.reference(cfg)                     # trained once, cached on disk by a hash of cfg
    l_step = qn.OnlineLStep(cfg, ref)           # continued double DQN + lc_penalty (or qn.DistillLStep)
    evaluate = lambda net: qn.evaluate(net, cfg.env_id, episodes=10).mean
    algorithm = lc.Algorithm(ref.network(), tasks, lc.geometric_mu(1e-3, 1.5, 15), l_step, evaluate)

One config dataclass per environment fixes every hyperparameter: reference training, and the two L steps
shared by every compression scheme. The pieces (network, replay buffer, double-Q target, agent) are in
:mod:`tasks.rl.dqn`, the evaluation in :mod:`tasks.rl.evaluate`.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import gymnasium as gym
import numpy as np
import torch

import lc
from lc._io import write_atomic
from tasks import adapter
from tasks.rl.dqn import Agent, DQNConfig, ReplayBuffer, double_q_target, epsilon, mlp, penalty_step
from tasks.rl.cache import cache_dir, config_hash, training_fields
from tasks.rl.finetune import finetune
from tasks.rl.evaluate import POLICY_SEED0, SELECT_SEED0, TEST_SEED0, Evaluation, evaluate

__all__ = ["QNetwork", "DQNConfig", "CartPoleConfig", "LunarLanderConfig", "Reference", "reference", "make_network",
           "OnlineLStep", "DistillLStep", "project", "evaluate", "Evaluation", "Agent", "ReplayBuffer",
           "double_q_target", "epsilon", "penalty_step", "distill_loss", "TEST_SEED0", "SELECT_SEED0", "POLICY_SEED0", "default_cache_dir", "finetune",
           "train", "config_hash"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CartPoleConfig(DQNConfig):
    """CartPole-v1 (tests): small and quick; the best of four evaluations in 4k steps balances the pole
    for hundreds of steps (random play: about 22)."""

    env_id: str = "CartPole-v1"
    total_steps: int = 4_000
    buffer_size: int = 10_000
    lr: float = 1e-3
    learning_starts: int = 500
    train_freq: int = 1
    tau: float = 1e-2
    eps_decay_steps: int = 2_000
    select_interval: int = 1_000
    select_episodes: int = 5
    lc_steps: int = 500
    lc_lr: float = 1e-3
    distill_steps: int = 500


@dataclass(frozen=True)
class LunarLanderConfig(DQNConfig):
    """LunarLander-v3 (the study of Guggilla et al. 2023): 64-64 MLP, the classic DQN settings (Adam 5e-4,
    batch 64, γ = 0.99, soft target τ = 1e-3, a gradient step every 4 environment steps). The offline L step:
    2 000 Adam steps per L step on the reference's buffer plus 20 000 states of the network's own policy per L
    step (DAgger), advantages + 5 × cross-entropy on the reference's action + 10 × expected regret (τ = 0.1);
    chosen on seeds 0–1 of k = 4 quantization and keep-10% pruning, seed 2 held out (docs/qnetworks.md, study 3).
    The same settings serve every scheme."""

    env_id: str = "LunarLander-v3"
    total_steps: int = 500_000
    buffer_size: int = 100_000
    batch_size: int = 64
    lr: float = 5e-4
    learning_starts: int = 5_000
    train_freq: int = 4
    tau: float = 1e-3
    eps_end: float = 0.01
    eps_decay_steps: int = 100_000
    select_interval: int = 20_000
    select_episodes: int = 20
    lc_steps: int = 5_000
    lc_lr: float = 1e-4
    lc_eps: float = 0.01
    distill_steps: int = 2_000
    distill_action_weight: float = 5.0
    distill_regret_weight: float = 10.0
    distill_policy_states: int = 20_000


def default_cache_dir() -> Path:
    """``$LC_CACHE/qnetwork`` if LC_CACHE is set, else ``.cache/qnetwork`` under the current directory."""
    return cache_dir("qnetwork")


def make_network(cfg: DQNConfig, hidden: tuple[int, ...] | None = None, seed: int | None = None) -> torch.nn.Module:
    """A freshly initialised MLP Q-network for cfg's environment (torch seeded with ``seed``, default cfg.seed)."""
    env = gym.make(cfg.env_id)
    obs_dim, n_actions = env.observation_space.shape[0], int(env.action_space.n)
    env.close()
    with torch.random.fork_rng():                   # leaves the caller's global torch RNG as it was
        torch.manual_seed(cfg.seed if seed is None else seed)
        return mlp(obs_dim, tuple(cfg.hidden if hidden is None else hidden), n_actions)


@dataclass
class Reference:
    """A trained reference: its config, network weights, final replay buffer and training log."""

    cfg: DQNConfig
    state_dict: dict
    buffer: dict                       # ReplayBuffer.state_dict() at the end of training
    log: list[dict]                    # model-selection evaluations during training
    path: Path | None = None

    def network(self) -> torch.nn.Module:
        """A new copy of the reference network (the caller may train or compress it)."""
        net = make_network(self.cfg)
        net.load_state_dict(self.state_dict)
        return net

    def replay(self) -> ReplayBuffer:
        """A new copy of the reference's replay buffer."""
        return ReplayBuffer.from_state_dict(self.buffer)


def train(cfg: DQNConfig, hidden: tuple[int, ...] | None = None, *, seed: int | None = None,
          steps: int | None = None, eval_every: int | None = None, eval_episodes: int | None = None,
          eval_seed0: int = SELECT_SEED0, progress: Callable[[dict], None] | None = None):
    """Double-DQN training from scratch; evaluates every ``eval_every`` steps and keeps the best network.

    Returns ``(best_state_dict, agent, log)`` where log rows are ``{"step", "mean", "std", "train_return",
    "seconds"}``. Model selection uses seeds from ``eval_seed0`` on, disjoint from the test seeds."""
    seed = cfg.seed if seed is None else seed
    steps = cfg.total_steps if steps is None else steps
    every = eval_every or cfg.select_interval
    episodes = eval_episodes or cfg.select_episodes
    q = make_network(cfg, hidden, seed)
    agent = Agent(cfg, q, seed=seed)
    best, best_mean, rows, t0 = copy.deepcopy(q.state_dict()), -float("inf"), [], time.perf_counter()
    while agent.steps < steps:
        agent.train(min(every, steps - agent.steps))
        ev = evaluate(q, cfg.env_id, episodes, eval_seed0)
        recent = [r for _, r in agent.returns[-20:]]
        row = {"step": agent.steps, "mean": ev.mean, "std": ev.std,
               "train_return": float(np.mean(recent)) if recent else float("nan"),
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        log.info("%s %s step %d: eval %.1f ± %.1f, last-20 train return %.1f (%.0fs)", cfg.env_id,
                 hidden or cfg.hidden, agent.steps, ev.mean, ev.std, row["train_return"], row["seconds"])
        if progress is not None:
            progress(row)
        if ev.mean > best_mean:
            best, best_mean = copy.deepcopy(q.state_dict()), ev.mean
    agent.close()
    return best, agent, rows


def reference(cfg: DQNConfig, cache_dir: str | Path | None = None) -> Reference:
    """The reference network for ``cfg``: loaded from ``cache_dir`` if trained before, else trained and saved.

    The file is named by a hash of the config; an existing file is never overwritten (it is written once,
    atomically), and one whose stored config differs from ``cfg`` is an error."""
    path = Path(cache_dir or default_cache_dir()) / f"{cfg.env_id}-{config_hash(cfg)}.pt"
    if path.exists():
        obj = torch.load(path, weights_only=True)              # tensors, arrays, numbers: runs no code
        if {k: obj["config"].get(k) for k in training_fields(cfg)} != training_fields(cfg):
            from lc import CompressionError
            raise CompressionError(f"{path} holds a reference of another config; move it away")
        log.info("reference loaded from %s", path)
        return Reference(cfg, obj["state_dict"], obj["buffer"], obj["log"], path)
    log.info("training the %s reference (%d steps); it will be cached in %s", cfg.env_id, cfg.total_steps, path)
    best, agent, rows = train(cfg)
    ref = Reference(cfg, best, agent.buffer.state_dict(), rows, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"config": dataclasses.asdict(cfg), "state_dict": best, "buffer": ref.buffer, "log": rows}
    if not write_atomic(path, lambda f: torch.save(obj, f), replace=False, what="the reference"):
        log.warning("%s appeared while training; kept the existing file", path)     # another process's: theirs
    return ref


class OnlineLStep:
    """L step by continued double-DQN training: min_w TD-loss(w) + μ/2‖w − Δ(Θ) − λ/μ‖².

    Each call trains the primary network (which holds the uncompressed w during the L step) for ``cfg.lc_steps``
    environment steps with Adam (``cfg.lc_lr``), ε = ``cfg.lc_eps``, replay buffer initialised from the
    reference's. At the start of every L step the target network is set to the primary's current weights (the
    uncompressed w, not Δ(Θ)), then follows cfg's soft/hard update from the primary. The environment, buffer
    and optimizer carry over from one L step to the next. Cost: lc_steps environment steps per call."""

    def __init__(self, cfg: DQNConfig, ref: Reference, seed: int = 0):
        self.cfg, self.ref, self.seed = cfg, ref, seed
        self.agent: Agent | None = None

    def __call__(self, model: torch.nn.Module, lc_penalty: Callable[[], torch.Tensor], step: int) -> None:
        if self.agent is None or self.agent.q is not model:
            self.agent = Agent(self.cfg, model, seed=self.seed, lr=self.cfg.lc_lr, buffer=self.ref.replay())
        self.agent.sync_target()                                   # θ⁻ ← w (uncompressed)
        self.agent.train(self.cfg.lc_steps, penalty=lc_penalty, eps=self.cfg.lc_eps)


def distill_loss(q: torch.Tensor, q_ref: torch.Tensor, value_weight: float, action_weight: float = 0.0,
                 regret_weight: float = 0.0, temperature: float = 0.1) -> torch.Tensor:
    """Regression onto the reference's Q-values, split into advantage and value (Q = V + A, V = mean_a Q):
    mean over states of 1/A ‖A − A_ref‖² + β (V − V_ref)², plus α times the cross-entropy of softmax(q) with
    the reference's greedy action argmax_a q_ref (α = ``action_weight``), plus ρ times the expected regret of
    the policy π = softmax(q/τ) under the reference's Q-values, Σ_a π(a|s) (max_b q_ref(s, b) − q_ref(s, a))
    (ρ = ``regret_weight``, τ = ``temperature``).

    β = 1, α = ρ = 0 is exactly the mean squared error of Q; β < 1 weights what the greedy policy depends on (the
    advantages) more than the state value; α > 0 asks for the reference's action with a margin, which the squared
    error does not when the reference's action gaps are small. The regret term weights each state by what a
    wrong action costs there: by the performance-difference lemma (Kakade & Langford 2002) the loss of return of
    a policy π against the reference is the expected advantage Σ_a π(a|s) (V_ref(s) − Q_ref(s, a)) over the
    states π itself visits (the DAgger states), with the reference's Q-values standing in for Q_ref — the
    cost-sensitive imitation of AggreVaTe (Ross & Bagnell 2014)."""
    v, v_ref = q.mean(1, keepdim=True), q_ref.mean(1, keepdim=True)
    loss = ((q - v - (q_ref - v_ref)) ** 2).mean() + value_weight * ((v - v_ref) ** 2).mean()
    if action_weight:
        loss = loss + action_weight * torch.nn.functional.cross_entropy(q, q_ref.argmax(1))
    if regret_weight:
        gap = q_ref.max(1, keepdim=True).values - q_ref                          # ≥ 0, 0 at the reference's action
        loss = loss + regret_weight * (torch.softmax(q / temperature, 1) * gap).sum(1).mean()
    return loss


class DistillLStep:
    """Offline L step (policy distillation): min_w distill_loss(q_w, q_ref) + μ/2‖w − Δ(Θ) − λ/μ‖² over a set
    of states S (see :func:`distill_loss`; β, α, ρ, τ = ``cfg.distill_value_weight``, ``cfg.distill_action_weight``,
    ``cfg.distill_regret_weight``, ``cfg.distill_temperature``),
    q_ref = the reference's Q-values.

    S = the states of the reference's replay buffer, plus, if ``cfg.distill_policy_states`` = n > 0, n states
    per L step (from the second on) visited by the greedy policy of the network being compressed (DAgger, Ross
    et al. 2011: the compressed agent strays into states the reference rarely visits, and there it must act
    as the reference would), on episodes seeded from POLICY_SEED0 (disjoint from test and model-selection
    seeds); half of each minibatch is then drawn from those visited states. Each call takes
    ``cfg.distill_steps`` Adam steps (``cfg.distill_lr``) on minibatches of ``cfg.distill_batch`` states; the
    optimizer carries over between calls. Cost: distill_steps forward/backward passes of the network on
    distill_batch states, plus n environment steps and forward passes (no reward is used)."""

    def __init__(self, cfg: DQNConfig, ref: Reference, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.reference = ref.network()
        self.states = torch.from_numpy(ref.replay().states())
        with torch.no_grad():
            self.targets = self.reference(self.states)
        self.visited = torch.empty(0, self.states.shape[1])
        self.visited_targets = torch.empty(0, self.targets.shape[1])
        self.episodes = 0
        self.gen = torch.Generator().manual_seed(seed)
        self.opt: torch.optim.Optimizer | None = None
        self.model: torch.nn.Module | None = None
        self.env: gym.Env | None = None

    def visit(self, model: torch.nn.Module, n: int) -> None:
        """Add n states visited by model's greedy policy, labelled with the reference's Q-values."""
        if self.env is None:
            self.env = gym.make(self.cfg.env_id)
        seed0 = POLICY_SEED0 + 100_000 * self.seed
        obs, _ = self.env.reset(seed=seed0 + self.episodes)
        states = np.empty((n, self.states.shape[1]), dtype=np.float32)
        with torch.no_grad():
            for i in range(n):
                states[i] = obs
                obs, _, terminated, truncated, _ = self.env.step(int(model(torch.from_numpy(states[i:i + 1])).argmax()))
                if terminated or truncated:
                    self.episodes += 1
                    obs, _ = self.env.reset(seed=seed0 + self.episodes)
            s = torch.from_numpy(states)
            self.visited = torch.cat([self.visited, s])
            self.visited_targets = torch.cat([self.visited_targets, self.reference(s)])

    def __call__(self, model: torch.nn.Module, lc_penalty: Callable[[], torch.Tensor], step: int) -> None:
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
            loss = distill_loss(model(s), t, self.cfg.distill_value_weight, self.cfg.distill_action_weight,
                                self.cfg.distill_regret_weight, self.cfg.distill_temperature)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            penalty_step(model, lc_penalty, self.cfg.lc_penalty_step)


def project(model: torch.nn.Module, compression_tasks: Mapping) -> float:
    """Naive (direct) compression in place: w ← Δ(Π(w)) for every task; returns the nominal compression ratio
    of the whole model. ``compression_tasks`` should name parameters by string so it applies to any copy."""
    compressed = lc.Compressed.direct(model, compression_tasks)
    compressed.apply(model)
    return compressed.ratio(model)


class QNetwork:
    """The adapter (:class:`tasks.adapter.Adapter`) of a double-DQN Q-network on ``cfg``'s environment, for a sweep
    driver: the reference of :func:`reference`, the L step :class:`DistillLStep` (``l_step="offline"``) or
    :class:`OnlineLStep` (``"online"``), and the greedy return over ``episodes`` episodes seeded from ``seed0``
    (metric ``return``, higher is better; default: the test seeds). ``seed`` seeds the L step's streams.
    The Q-network studies (``experiments/rl``) use the functions of this module directly."""

    metric = "return"
    higher_is_better = True

    def __init__(self, cfg: DQNConfig, l_step: str = "offline", *, seed: int = 0, episodes: int = 10,
                 seed0: int = TEST_SEED0):
        if l_step not in ("offline", "online"):
            raise lc.CompressionError(f"QNetwork: l_step={l_step!r}; use 'offline' (distillation) or 'online' "
                                      "(continued double DQN)")
        self.cfg, self.kind, self.seed, self.episodes, self.seed0 = cfg, l_step, seed, episodes, seed0
        self.name = cfg.env_id
        self.split = f"{episodes} episodes, seeds {seed0}–{seed0 + episodes - 1}"
        self._reference: Reference | None = None

    def fingerprint(self) -> dict:
        return {"config": type(self.cfg).__name__, **dataclasses.asdict(self.cfg), "l_step": self.kind,
                "seed": self.seed, "episodes": self.episodes, "seed0": self.seed0}

    def reference(self, cache_dir: str | Path | None = None) -> torch.nn.Module:
        self._reference = reference(self.cfg, cache_dir)
        return self._reference.network()

    def l_step(self, reference_model: torch.nn.Module | None = None):
        """A new L step (its environment, buffer and optimizer are its own); the reference's replay buffer and
        Q-values come from the cached :class:`Reference` (``reference_model`` is not needed)."""
        ref = self._reference if self._reference is not None else reference(self.cfg)
        if self.kind == "online":
            return OnlineLStep(self.cfg, ref, seed=self.seed)
        return DistillLStep(self.cfg, ref, seed=self.seed)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        ev = evaluate(model, self.cfg.env_id, self.episodes, self.seed0)
        return {"return": ev.mean, "return_std": ev.std}

    def compression_tasks(self, model: torch.nn.Module, make, *, joint: bool = False, names=None) -> dict:
        return adapter.compression_tasks(model, make, joint=joint, names=names)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return torch.zeros(batch_size, make_network(self.cfg)[0].in_features)
