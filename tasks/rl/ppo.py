"""PPO (Schulman et al. 2017) with GAE (Schulman et al. 2016) for a Gaussian policy on gymnasium environments with
continuous actions.

Why PPO: it is the policy-gradient method QuaRL (Krishnan et al.) and Guggilla et al. (2023) quantize, the usual
on-policy baseline on MuJoCo, and it trains a HalfCheetah actor on one CPU core in well under an hour with one set of
hyperparameters (those of Huang et al.'s "37 implementation details", cleanrl's ``ppo_continuous_action``). Its
actor is a plain MLP from the (normalised) observation to the mean action, which is what LC compresses; the
log-std is a free vector and the critic is used only in training.

The pieces, each small enough to test on its own: :class:`ObsNorm` (running observation statistics, frozen into
the actor once training ends), :class:`GaussianActor`, :func:`gae`, :class:`RewardScale` and :class:`PPO`, which owns
an environment, an optimizer and the random streams for a given actor and critic and trains them rollout by rollout
(``ppo.train(steps, penalty=...)``). The same loop trains a reference, runs the online L step of LC (with the
penalty applied decoupled, ``lc_penalty.step(optimizer)``) and runs quantization-aware training.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

__all__ = ["PPOConfig", "ObsNorm", "GaussianActor", "critic_mlp", "gae", "RewardScale", "PPO"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of PPO on one environment and of LC's two L steps; subclasses fix one set per environment."""

    env_id: str = "HalfCheetah-v5"
    actor_hidden: tuple[int, ...] = (64, 64)   # hidden widths of the actor's mean network (tanh)
    critic_hidden: tuple[int, ...] = (64, 64)  # hidden widths of the critic (tanh)
    total_steps: int = 1_000_000           # environment steps of reference training
    rollout_steps: int = 2048              # environment steps per PPO iteration
    epochs: int = 10                       # passes over each rollout
    minibatch: int = 64                    # transitions per gradient step
    lr: float = 3e-4                       # Adam learning rate (linearly annealed to 0 over total_steps)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2                      # PPO's clip range of the probability ratio
    vf_coef: float = 0.5                   # weight of the value loss
    ent_coef: float = 0.0                  # weight of the entropy bonus
    max_grad_norm: float = 0.5
    obs_clip: float = 10.0                 # normalised observations clipped to ±obs_clip
    reward_clip: float = 10.0              # scaled rewards clipped to ±reward_clip
    seed: int = 0
    select_interval: int = 50_000          # reference: evaluate every this many steps, keep the best actor
    select_episodes: int = 5               # … over this many episodes (seeds disjoint from the test seeds)
    reference_states: int = 50_000         # raw states of the last training rollouts kept with the reference
    # L steps of LC and the baselines' training (one fixed set for every compression scheme)
    lc_steps: int = 20_480                 # online L step: environment steps per L step (continued PPO)
    lc_lr: float = 1e-4                    # online L step: Adam learning rate (constant)
    distill_steps: int = 1_000             # offline L step: Adam steps per L step
    distill_lr: float = 1e-3               # offline L step: Adam learning rate
    distill_batch: int = 256               # offline L step: states per Adam step
    distill_policy_states: int = 5_000     # offline L step: states visited by the compressed actor per L step


class ObsNorm(nn.Module):
    """x ↦ clamp((x − m)/√(v + 1e-8), ±clip) with running mean m and variance v of the observations (buffers, not
    parameters: they are part of the actor's state dict and never compressed). ``update(batch)`` merges a batch's
    moments (Chan et al.'s parallel algorithm); once training ends nothing updates them: frozen into the actor."""

    def __init__(self, dim: int, clip: float = 10.0):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(1e-4))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        n, mean, var = x.shape[0], x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta ** 2 * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-self.clip, self.clip)


def _mlp(d_in: int, hidden: tuple[int, ...], d_out: int, out_std: float) -> nn.Sequential:
    """Linear+tanh per hidden width, then Linear; orthogonal init (gain √2, output ``out_std``), zero biases."""
    layers, d = [], d_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.Tanh()]
        d = h
    layers.append(nn.Linear(d, d_out))
    for i, m in enumerate(x for x in layers if isinstance(x, nn.Linear)):
        nn.init.orthogonal_(m.weight, out_std if i == len(hidden) else math.sqrt(2))
        nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


class GaussianActor(nn.Module):
    """π(a|s) = N(μ_w(norm(s)), diag(exp(2 log σ))): ``forward(s)`` is the mean action μ (the deterministic policy
    evaluated and exported); ``log_std`` a free vector. The weights LC compresses are the mean network's
    (``net.0.weight``, ``net.2.weight``, …: :func:`tasks.adapter.weight_names`)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], obs_clip: float = 10.0):
        super().__init__()
        self.norm = ObsNorm(obs_dim, obs_clip)
        self.net = _mlp(obs_dim, tuple(hidden), act_dim, 0.01)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(obs))

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(a|s) summed over action dimensions, and the entropy of π(·|s)."""
        mean, log_std = self(obs), self.log_std.expand(action.shape)
        logp = -((action - mean) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - 0.5 * math.log(2 * math.pi)
        return logp.sum(-1), (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


def critic_mlp(obs_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """V(norm(s)): the critic sees the actor's normalised observation."""
    return _mlp(obs_dim, tuple(hidden), 1, 1.0)


def gae(rewards: torch.Tensor, values: torch.Tensor, ends: torch.Tensor, last_value: torch.Tensor, gamma: float,
        lam: float) -> torch.Tensor:
    """Generalised advantage estimates (Schulman et al. 2016, eq. 16): A_t = Σ_l (γλ)^l δ_{t+l},
    δ_t = r_t + γ V(s_{t+1})(1 − end_t) − V(s_t), the sum cut at episode ends (``ends[t]`` = 1 when the episode
    ended after step t; a time-limit truncation's bootstrap γV(s_T) is already in its reward)."""
    adv, last = torch.zeros_like(rewards), 0.0
    for t in reversed(range(len(rewards))):
        next_value = last_value if t == len(rewards) - 1 else values[t + 1]
        live = 1.0 - ends[t]
        delta = rewards[t] + gamma * next_value * live - values[t]
        last = delta + gamma * lam * live * last
        adv[t] = last
    return adv


class RewardScale:
    """r ↦ clamp(r/σ, ±clip), σ the running standard deviation of the discounted return Σ γ^t r_t (gymnasium's
    ``NormalizeReward``); ``frozen`` stops the statistics from moving (the L steps keep the reference's)."""

    def __init__(self, gamma: float, clip: float, state: dict | None = None):
        self.gamma, self.clip, self.frozen = gamma, clip, False
        s = state or {"ret": 0.0, "mean": 0.0, "var": 1.0, "count": 1e-4}
        self.ret, self.mean, self.var, self.count = s["ret"], s["mean"], s["var"], s["count"]

    def state_dict(self) -> dict:
        return {"ret": self.ret, "mean": self.mean, "var": self.var, "count": self.count}

    def __call__(self, r: float, end: bool) -> float:
        self.ret = self.ret * self.gamma + r
        if not self.frozen:
            self.count += 1
            delta = self.ret - self.mean
            self.mean += delta / self.count
            self.var += (delta * (self.ret - self.mean) - self.var) / self.count
        if end:
            self.ret = 0.0
        return float(np.clip(r / math.sqrt(self.var + 1e-8), -self.clip, self.clip))


class PPO:
    """PPO training of ``actor`` and ``critic`` (in place) on a fresh environment seeded by ``seed``.

    ``train(steps, penalty=None, hook=None)`` continues for ``steps`` environment steps (whole rollouts); it may be
    called repeatedly (environment, optimizer, random streams and statistics carry on). ``lr`` constant, or
    linearly annealed from ``cfg.lr`` to 0 over ``cfg.total_steps`` if None (reference training).
    ``learn_stats``: the observation and reward statistics move (reference training) or stay frozen (L steps).
    ``penalty`` (LC's ``lc_penalty``) is applied after every Adam step, decoupled: ``penalty.step(optimizer)``.
    ``hook(ppo)`` runs after every iteration. ``states`` keeps the last ``cfg.reference_states`` raw states."""

    def __init__(self, cfg: PPOConfig, actor: GaussianActor, critic: nn.Module, *, seed: int, lr: float | None = None,
                 reward_scale: dict | None = None, learn_stats: bool = True):
        self.cfg, self.actor, self.critic, self.lr, self.learn_stats = cfg, actor, critic, lr, learn_stats
        self.env = gym.make(cfg.env_id)
        self.low, self.high = self.env.action_space.low, self.env.action_space.high
        self.gen = torch.Generator().manual_seed(seed)
        self.opt = torch.optim.Adam([*actor.parameters(), *critic.parameters()],
                                    lr=cfg.lr if lr is None else lr, eps=1e-5)
        self.reward = RewardScale(cfg.gamma, cfg.reward_clip, reward_scale)
        self.reward.frozen = not learn_stats
        self.obs, _ = self.env.reset(seed=seed)
        self.steps = 0
        self.episode_return = 0.0
        self.returns: list[tuple[int, float]] = []      # (step at episode end, return) of training episodes
        self.states = np.zeros((0, self.env.observation_space.shape[0]), np.float32)

    def _value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.actor.norm(obs)).squeeze(-1)

    @torch.no_grad()
    def rollout(self) -> dict:
        cfg, T = self.cfg, self.cfg.rollout_steps
        obs_dim, act_dim = self.env.observation_space.shape[0], self.env.action_space.shape[0]
        obs, act = torch.zeros(T, obs_dim), torch.zeros(T, act_dim)
        logp, rew, ends, values = torch.zeros(T), torch.zeros(T), torch.zeros(T), torch.zeros(T)
        std = torch.exp(self.actor.log_std)
        for t in range(T):
            o = torch.as_tensor(np.asarray(self.obs, np.float32))
            a = self.actor(o) + std * torch.randn(act_dim, generator=self.gen)
            obs[t], act[t], values[t] = o, a, self._value(o)
            logp[t] = self.actor.log_prob(o, a)[0]
            next_obs, r, terminated, truncated, _ = self.env.step(np.clip(a.numpy(), self.low, self.high))
            self.episode_return += float(r)
            self.steps += 1
            end = terminated or truncated
            rew[t] = self.reward(float(r), end)
            if truncated and not terminated:               # time limit: bootstrap from the state it stopped in
                rew[t] += cfg.gamma * self._value(torch.as_tensor(np.asarray(next_obs, np.float32)))
            ends[t] = float(end)
            if end:
                self.returns.append((self.steps, self.episode_return))
                self.episode_return = 0.0
                next_obs, _ = self.env.reset()
            self.obs = next_obs
        last = self._value(torch.as_tensor(np.asarray(self.obs, np.float32)))
        adv = gae(rew, values, ends, last, cfg.gamma, cfg.gae_lambda)
        return {"obs": obs, "act": act, "logp": logp, "adv": adv, "ret": adv + values}

    def update(self, batch: dict, penalty=None) -> None:
        """cfg.epochs passes of clipped-surrogate + value-loss Adam steps over the rollout (Schulman et al. 2017,
        eq. 7 and 9), each followed by the decoupled penalty step."""
        cfg, T = self.cfg, len(batch["obs"])
        params = [*self.actor.parameters(), *self.critic.parameters()]
        for _ in range(cfg.epochs):
            perm = torch.randperm(T, generator=self.gen)
            for i in range(0, T, cfg.minibatch):
                idx = perm[i:i + cfg.minibatch]
                o, a, adv = batch["obs"][idx], batch["act"][idx], batch["adv"][idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                logp, entropy = self.actor.log_prob(o, a)
                ratio = torch.exp(logp - batch["logp"][idx])
                # L^CLIP = E[min(ρA, clip(ρ, 1 ± ε)A)]
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv).mean()
                value_loss = 0.5 * ((self._value(o) - batch["ret"][idx]) ** 2).mean()
                loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy.mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.opt.step()
                if penalty is not None:
                    penalty.step(self.opt)                    # w ← prox of μ/2‖w − Δ(Θ) − λ/μ‖², Adam's metric

    def train(self, steps: int, *, penalty=None, hook: Callable[["PPO"], None] | None = None) -> None:
        cfg, end = self.cfg, self.steps + steps
        while self.steps < end:
            if self.lr is None:                               # linear annealing over the reference's budget
                for g in self.opt.param_groups:
                    g["lr"] = cfg.lr * max(0.0, 1.0 - self.steps / cfg.total_steps)
            batch = self.rollout()
            self.update(batch, penalty)
            if self.learn_stats:
                self.actor.norm.update(batch["obs"])
            self.states = np.concatenate([self.states, batch["obs"].numpy()])[-cfg.reference_states:]
            if hook is not None:
                hook(self)

    def close(self) -> None:
        self.env.close()
