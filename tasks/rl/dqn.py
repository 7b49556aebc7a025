"""Double DQN (van Hasselt, Guez & Silver 2016) on gymnasium environments with discrete actions.

The pieces, each small enough to test on its own: an MLP Q-network, a numpy ring replay buffer, the double-Q
target, a linear ε-greedy schedule, and :class:`Agent`, which owns an environment, a buffer, a target network and
an optimizer for a given primary network and trains it step by step (``agent.train(steps, penalty=...)``).
The same loop trains a reference, runs the online L step of LC (with ``lc_penalty`` added to the TD loss), and
runs the fine-tuning baselines (through ``hook``).
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

__all__ = ["DQNConfig", "mlp", "penalty_step", "ReplayBuffer", "double_q_target", "epsilon", "Agent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of double DQN on one environment; subclasses fix one set per environment."""

    env_id: str = "CartPole-v1"
    hidden: tuple[int, ...] = (64, 64)     # hidden layer widths of the MLP Q-network
    total_steps: int = 20_000              # environment steps of reference training
    buffer_size: int = 50_000              # replay capacity (transitions)
    batch_size: int = 64
    lr: float = 5e-4                       # Adam learning rate of reference training
    gamma: float = 0.99
    train_freq: int = 4                    # one gradient step every train_freq environment steps
    learning_starts: int = 1_000           # environment steps before the first gradient step
    target_update: str = "soft"            # "soft": θ⁻ ← τθ + (1−τ)θ⁻ every gradient step; "hard": copy
    tau: float = 5e-3                      # soft update rate
    target_interval: int = 500             # hard update: gradient steps between copies
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_decay_steps: int = 10_000          # ε decays linearly from eps_start to eps_end over these steps
    grad_clip: float = 10.0                # max gradient norm
    seed: int = 0
    select_interval: int = 5_000           # reference: evaluate every this many steps, keep the best network
    select_episodes: int = 10              # … over this many episodes (seeds disjoint from the test seeds)
    # L steps of LC (one fixed set for every compression scheme)
    lc_steps: int = 2_000                  # online L step: environment steps per L step
    lc_lr: float = 2e-4                    # online L step: Adam learning rate
    lc_eps: float = 0.02                   # online L step: ε of the behaviour policy
    lc_penalty_step: float = 0.5           # both L steps: step size η of the proximal step on the LC penalty
    distill_steps: int = 500               # offline L step: gradient steps per L step
    distill_lr: float = 1e-3               # offline L step: Adam learning rate
    distill_batch: int = 256               # offline L step: states per gradient step
    distill_value_weight: float = 0.01     # offline L step: weight β of the state value vs the advantages
    distill_action_weight: float = 0.0     # offline L step: weight α of the cross-entropy on the greedy action
    distill_regret_weight: float = 0.0     # offline L step: weight ρ of the expected regret of the softmax policy
    distill_temperature: float = 0.1       # offline L step: temperature τ of that softmax policy
    distill_policy_states: int = 0         # offline L step: states visited by the network's own greedy policy
                                           # added per L step (DAgger); 0 = the reference's buffer only

    def __post_init__(self):
        if self.target_update not in ("soft", "hard"):
            from lc import CompressionError
            raise CompressionError(f"target_update={self.target_update!r}: use 'soft' or 'hard'")


def penalty_step(model: nn.Module, penalty, eta: float) -> None:
    """The proximal step on the LC penalty μ/2‖w − Δ(Θ) − λ/μ‖² (``penalty.prox_(eta)``, see lc's ``Penalty``):
    moves w the fraction ημ/(1 + ημ) of its distance to the target, stable for every μ. ``model`` is unused
    (the penalty knows its weights); kept so both L steps read alike.

    The L steps take Adam steps on the task loss and this step on the penalty (decoupled, as AdamW decouples
    weight decay). Adding the penalty to the loss that Adam sees would not work: Adam's per-coordinate scaling
    moves each weight by about the learning rate whatever the size of its gradient, so wherever the task
    gradient is small (near the reference, where the loss is flat) every weight is pulled towards Δ(Θ) at the
    same fixed rate, whatever μ — the μ schedule loses its meaning and LC degenerates into projection. A plain
    gradient step instead (used before) diverges once ημ > 2, which capped the μ schedule."""
    penalty.prox_(eta)


def mlp(obs_dim: int, hidden: tuple[int, ...], n_actions: int) -> nn.Sequential:
    """obs → Linear+ReLU per hidden width → Linear to one Q-value per action (parameters '0.weight', …)."""
    layers, d = [], obs_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, n_actions))
    return nn.Sequential(*layers)


class ReplayBuffer:
    """A ring buffer of transitions (s, a, r, s', terminated) in preallocated numpy arrays.

    Once full, each new transition overwrites the oldest. ``terminated`` marks true episode ends (no bootstrap);
    a time-limit truncation is stored as not terminated, so its target still bootstraps from s'.
    """

    def __init__(self, capacity: int, obs_dim: int):
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos = 0        # where the next transition goes
        self.size = 0       # how many are stored

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        i = self.pos
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size, size=batch)
        return tuple(torch.from_numpy(a[idx]) for a in
                     (self.obs, self.action, self.reward, self.next_obs, self.terminated))

    def states(self) -> np.ndarray:
        """All stored states s (for distillation)."""
        return self.obs[: self.size].copy()

    def state_dict(self) -> dict:
        keep = slice(0, self.size)
        return {"capacity": self.capacity, "pos": self.pos, "size": self.size,
                **{k: torch.from_numpy(getattr(self, k)[keep].copy())
                   for k in ("obs", "next_obs", "action", "reward", "terminated")}}

    @classmethod
    def from_state_dict(cls, d: dict) -> "ReplayBuffer":
        buf = cls(d["capacity"], d["obs"].shape[1])
        for k in ("obs", "next_obs", "action", "reward", "terminated"):
            getattr(buf, k)[: d["size"]] = d[k].numpy()
        buf.pos, buf.size = d["pos"], d["size"]
        return buf


def double_q_target(q_online_next: torch.Tensor, q_target_next: torch.Tensor, reward: torch.Tensor,
                    terminated: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − done) Q_target(s', argmax_a Q_online(s', a)) (van Hasselt et al. 2016, eq. 4).

    The online network chooses the next action, the target network values it. Inputs are (B, A) and (B,)."""
    a_star = q_online_next.argmax(dim=1, keepdim=True)
    return reward + gamma * (1.0 - terminated) * q_target_next.gather(1, a_star).squeeze(1)


def epsilon(step: int, start: float, end: float, decay_steps: int) -> float:
    """Linear ε schedule: start at step 0, end from decay_steps on."""
    if decay_steps <= 0:
        return end
    return end + (start - end) * max(0.0, 1.0 - step / decay_steps)


class Agent:
    """Double-DQN training of ``q`` (trained in place) on a fresh environment seeded by ``seed``.

    ``train(steps, penalty=None, eps=None, hook=None)`` continues training for ``steps`` environment steps; it
    may be called repeatedly (the environment, buffer, target network, optimizer and random streams carry on).
    ``penalty`` (LC's ``lc_penalty``) is minimised with the TD loss: after every Adam step on the TD loss, a
    proximal step on the penalty (:func:`penalty_step`); ``eps`` fixes ε (else the schedule);
    ``hook(agent)`` runs after every environment step (the fine-tuning baselines compress weights there).
    """

    def __init__(self, cfg: DQNConfig, q: nn.Module, *, seed: int, lr: float | None = None,
                 buffer: ReplayBuffer | None = None):
        self.cfg = cfg
        self.q = q
        self.target = copy.deepcopy(q).requires_grad_(False)
        self.env = gym.make(cfg.env_id)
        self.env.action_space.seed(seed)
        self.rng = np.random.default_rng(seed)
        obs_dim = self.env.observation_space.shape[0]
        self.buffer = buffer if buffer is not None else ReplayBuffer(cfg.buffer_size, obs_dim)
        self.opt = torch.optim.Adam(q.parameters(), lr=cfg.lr if lr is None else lr)
        self.obs, _ = self.env.reset(seed=seed)
        self.steps = 0              # environment steps taken by this agent
        self.updates = 0            # gradient steps taken
        self.episode_return = 0.0
        self.returns: list[tuple[int, float]] = []    # (step at episode end, return) of training episodes

    def act(self, obs: np.ndarray, eps: float) -> int:
        if self.rng.random() < eps:
            return int(self.rng.integers(self.env.action_space.n))
        with torch.no_grad():
            return int(self.q(torch.from_numpy(np.asarray(obs, np.float32))).argmax())

    def train(self, steps: int, *, penalty=None, eps: float | None = None,
              hook: Callable[["Agent"], None] | None = None) -> None:
        cfg = self.cfg
        for _ in range(steps):
            e = eps if eps is not None else epsilon(self.steps, cfg.eps_start, cfg.eps_end, cfg.eps_decay_steps)
            a = self.act(self.obs, e)
            next_obs, r, terminated, truncated, _ = self.env.step(a)
            self.buffer.add(self.obs, a, r, next_obs, terminated)
            self.episode_return += float(r)
            self.obs = next_obs
            self.steps += 1
            if terminated or truncated:
                self.returns.append((self.steps, self.episode_return))
                self.episode_return = 0.0
                self.obs, _ = self.env.reset()
            if self.buffer.size >= cfg.learning_starts and self.steps % cfg.train_freq == 0:
                self.update(penalty)
            if hook is not None:
                hook(self)

    def update(self, penalty=None) -> float:
        """One gradient step on the Huber TD loss (+ penalty), then the target-network update."""
        cfg = self.cfg
        s, a, r, s2, done = self.buffer.sample(cfg.batch_size, self.rng)
        with torch.no_grad():
            y = double_q_target(self.q(s2), self.target(s2), r, done, cfg.gamma)
        q = self.q(s).gather(1, a.unsqueeze(1)).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, y)              # Huber loss, δ = 1
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), cfg.grad_clip)
        self.opt.step()
        if penalty is not None:
            penalty_step(self.q, penalty, cfg.lc_penalty_step)
        self.updates += 1
        self.update_target()
        return float(loss.detach())

    def update_target(self) -> None:
        cfg = self.cfg
        with torch.no_grad():
            if cfg.target_update == "soft":
                for p_t, p in zip(self.target.parameters(), self.q.parameters()):
                    p_t.lerp_(p, cfg.tau)                       # θ⁻ ← θ⁻ + τ(θ − θ⁻)
            elif self.updates % cfg.target_interval == 0:
                self.target.load_state_dict(self.q.state_dict())

    def sync_target(self) -> None:
        """θ⁻ ← θ: the target network becomes a copy of the primary's current weights."""
        self.target.load_state_dict(self.q.state_dict())

    def close(self) -> None:
        self.env.close()
