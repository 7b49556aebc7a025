"""Deterministic evaluation of a policy network: return over N seeded episodes, and what the evaluation cost.
The network's output is the action's scores (discrete actions: argmax, a Q-network's greedy policy) or the action
itself (continuous actions: clipped to the action space, a Gaussian actor's mean).

Costs reported (measured, noisy on a shared machine):
- ``time_per_transition``: wall seconds of the whole evaluation divided by the number of environment steps
  (network forward + environment step + Python overhead), as in Guggilla et al. 2023;
- ``inference_time_per_transition``: wall seconds spent in the network's forward pass per step only;
- ``cpu_time``: ``time.process_time()`` of the evaluation (user + system CPU seconds of this process, all
  threads);
- ``peak_rss_mb``: the process's resident-set high-water mark (``getrusage(RUSAGE_SELF).ru_maxrss``) read at
  the end of the evaluation. It is a property of the whole process, not of the evaluation alone: it includes
  the interpreter, torch and anything allocated before. To attribute it to one evaluation, run that evaluation
  alone in a fresh process (``experiments/rl/costs.py`` does).
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch

__all__ = ["Evaluation", "evaluate", "TEST_SEED0", "SELECT_SEED0", "POLICY_SEED0"]

TEST_SEED0 = 10_000          # test episodes use seeds TEST_SEED0, TEST_SEED0 + 1, …
SELECT_SEED0 = 1_000_000     # model selection during reference training uses a disjoint range
POLICY_SEED0 = 2_000_000     # episodes of the DAgger L step (tasks.qnetwork.DistillLStep), disjoint from both


@dataclass(frozen=True)
class Evaluation:
    mean: float                          # mean return over the episodes
    std: float                           # standard deviation of the return over the episodes
    episodes: int
    transitions: int                     # environment steps taken in total
    time_per_transition: float           # wall s per step, whole evaluation
    inference_time_per_transition: float  # wall s per step in the network's forward pass
    cpu_time: float                      # process CPU seconds of the evaluation
    peak_rss_mb: float                   # process peak resident set size (MiB) at the end

    def as_dict(self) -> dict:
        return asdict(self)


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)     # bytes on macOS, KiB on Linux


def evaluate(q: torch.nn.Module, env_id: str, episodes: int = 100, seed0: int = TEST_SEED0) -> Evaluation:
    """Run the deterministic policy — argmax_a q(s, a) for discrete actions, clip(q(s)) to the action space's
    bounds for continuous ones — for ``episodes`` episodes, episode i reset with seed seed0 + i.

    Deterministic for given weights and seeds (the policy has no randomness and each reset is seeded)."""
    env = gym.make(env_id)
    space = env.action_space
    if isinstance(space, gym.spaces.Box):
        act = lambda out: np.clip(out.numpy(), space.low, space.high)      # noqa: E731
    else:
        act = lambda out: int(out.argmax())                                # noqa: E731
    returns, steps, t_net = [], 0, 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    with torch.no_grad():
        for i in range(episodes):
            obs, _ = env.reset(seed=seed0 + i)
            total, done = 0.0, False
            while not done:
                t = time.perf_counter()
                a = act(q(torch.from_numpy(np.asarray(obs, np.float32))))
                t_net += time.perf_counter() - t
                obs, r, terminated, truncated, _ = env.step(a)
                total += float(r)
                steps += 1
                done = terminated or truncated
            returns.append(total)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    env.close()
    r = np.asarray(returns)
    return Evaluation(float(r.mean()), float(r.std()), episodes, steps, wall / max(steps, 1),
                      t_net / max(steps, 1), cpu, _peak_rss_mb())
