"""Train (or load from the cache) the double-DQN reference of one environment and report its test return.

    python -m experiments.rl.reference [--env lunarlander] [--episodes 100] [--log runs/rl/reference.log]
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

import torch

from tasks import qnetwork as qn

from .. import cli
from ..cli import option
from .common import ENVS as CONFIGS


@dataclass
class Config:
    env: str = option("lunarlander", "environment", choices=tuple(sorted(CONFIGS)))
    episodes: int = option(100, "test episodes (seeds 10000, 10001, …)")
    log: str | None = option(None, "also log progress to this file")


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.rl.reference", description=__doc__)
    handlers = [logging.StreamHandler()] + ([logging.FileHandler(args.log)] if args.log else [])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
    torch.set_num_threads(1)
    cfg = CONFIGS[args.env]()
    ref = qn.reference(cfg)
    ev = qn.evaluate(ref.network(), cfg.env_id, args.episodes)
    print(json.dumps({"env": cfg.env_id, "cache": str(ref.path), **ev.as_dict()}))


if __name__ == "__main__":
    sys.exit(cli.console(main))
