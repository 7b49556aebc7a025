"""Train (or load from the cache) the double-DQN reference of one environment and report its test return.

    python -m experiments.rl_reference [--env lunarlander] [--episodes 100] [--log runs/rl/reference.log]
"""
from __future__ import annotations

import argparse
import json
import logging

import torch

from tasks import qnetwork as qn

CONFIGS = {"cartpole": qn.CartPoleConfig, "lunarlander": qn.LunarLanderConfig}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", choices=sorted(CONFIGS), default="lunarlander")
    ap.add_argument("--episodes", type=int, default=100, help="test episodes (seeds 10000, 10001, …)")
    ap.add_argument("--log", default=None, help="also log progress to this file")
    args = ap.parse_args(argv)
    handlers = [logging.StreamHandler()] + ([logging.FileHandler(args.log)] if args.log else [])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
    torch.set_num_threads(1)
    cfg = CONFIGS[args.env]()
    ref = qn.reference(cfg)
    ev = qn.evaluate(ref.network(), cfg.env_id, args.episodes)
    print(json.dumps({"env": cfg.env_id, "cache": str(ref.path), **ev.as_dict()}))


if __name__ == "__main__":
    main()
