"""The fine-tuning baselines of Guggilla et al. 2023 ("Model Compression and Fine-Tuning for Reinforcement
Learning"): continue double-DQN training of the reference while compressing at regular intervals.

- ``"target"``: the primary network trains uncompressed; every ``interval`` environment steps the target network
  is set to the compressed primary Δ(Π(w)) (and stays fixed in between).
- ``"primary"``: every ``interval`` environment steps the primary is replaced by its compression w ← Δ(Π(w))
  (a projection, as in iterative pruning); the target network is never compressed — it follows the primary by
  the config's soft/hard update, starting from the uncompressed reference.

Either way the delivered network is Δ(Π(w)) of the final primary. ``project`` is any in-place compression of a
network (e.g. ``lambda net: tasks.qnetwork.project(net, compression_tasks)``).
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

import torch

from .dqn import Agent, DQNConfig, ReplayBuffer
from .evaluate import SELECT_SEED0, evaluate

__all__ = ["finetune"]

log = logging.getLogger(__name__)


def finetune(cfg: DQNConfig, net: torch.nn.Module, buffer: ReplayBuffer, project: Callable[[torch.nn.Module], object],
             scheme: str, *, steps: int, interval: int, seed: int = 0, eval_every: int = 5_000,
             eval_episodes: int = 10) -> tuple[torch.nn.Module, list[dict]]:
    """Fine-tune ``net`` (trained in place) for ``steps`` environment steps with Adam (``cfg.lc_lr``) and
    ε = ``cfg.lc_eps``; returns the compressed final network and the learning curve ``[{"step", "mean",
    "std"}]`` of the compressed network, evaluated every ``eval_every`` steps on the model-selection seeds."""
    if scheme not in ("target", "primary"):
        from lc import CompressionError
        raise CompressionError(f"finetune: scheme={scheme!r}; use 'target' or 'primary'")
    agent = Agent(cfg, net, seed=seed, lr=cfg.lc_lr, buffer=buffer)

    def compressed_copy():
        c = copy.deepcopy(net)
        project(c)
        return c

    def hook(a: Agent) -> None:
        if a.steps % interval:
            return
        if scheme == "target":
            a.target.load_state_dict(compressed_copy().state_dict())     # θ⁻ ← Δ(Π(w))
        else:
            project(a.q)                                                 # w ← Δ(Π(w))

    if scheme == "target":
        agent.target.load_state_dict(compressed_copy().state_dict())
        agent.cfg = _no_target_update(cfg)                               # θ⁻ changes only at the intervals
    ev = evaluate(compressed_copy(), cfg.env_id, eval_episodes, SELECT_SEED0)
    curve = [{"step": 0, "mean": ev.mean, "std": ev.std}]                 # naive compression, before training
    while agent.steps < steps:
        agent.train(min(eval_every, steps - agent.steps), eps=cfg.lc_eps, hook=hook)
        ev = evaluate(compressed_copy(), cfg.env_id, eval_episodes, SELECT_SEED0)
        curve.append({"step": agent.steps, "mean": ev.mean, "std": ev.std})
        log.info("finetune %s: step %d, compressed return %.1f ± %.1f", scheme, agent.steps, ev.mean, ev.std)
    agent.close()
    return compressed_copy(), curve


def _no_target_update(cfg: DQNConfig) -> DQNConfig:
    import dataclasses
    return dataclasses.replace(cfg, target_update="hard", target_interval=10**12)
