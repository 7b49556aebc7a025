"""Train (or load from the cache) the PPO reference of one environment and report its test return and what its
training cost.

    python -m experiments.policygradient.reference [--env halfcheetah] [--episodes 100] [--log runs/pg/reference.log]
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

import torch

from tasks import policygradient as pg

from .. import cli
from ..cli import option

ENVS = {"invertedpendulum": pg.InvertedPendulumConfig, "halfcheetah": pg.HalfCheetahConfig}


@dataclass
class Config:
    env: str = option("halfcheetah", "environment", choices=tuple(sorted(ENVS)))
    episodes: int = option(100, "test episodes (seeds 10000, 10001, …)")
    log: str | None = option(None, "also log progress to this file")


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.policygradient.reference", description=__doc__)
    handlers = [logging.StreamHandler()] + ([logging.FileHandler(args.log)] if args.log else [])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
    torch.set_num_threads(1)
    cfg = ENVS[args.env]()
    ref = pg.reference(cfg)
    ev = pg.evaluate(ref.actor(), cfg.env_id, args.episodes)
    last = ref.log[-1] if ref.log else {}
    print(json.dumps({"env": cfg.env_id, "cache": str(ref.path), "training_steps": cfg.total_steps,
                      "training_seconds": last.get("seconds"), "training_cpu_seconds": last.get("cpu_seconds"),
                      **ev.as_dict()}))


if __name__ == "__main__":
    sys.exit(cli.console(main))
