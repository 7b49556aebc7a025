"""The Q-network's baselines that study 3 (``experiments.rl.tradeoff``) does not have — quantization-aware training
and a small network from scratch at the same ratio — against LC, in the tradeoff job's harness: the sweep driver
on the Q-network adapter (``tasks.qnetwork.QNetwork``, offline L step), one output directory per seed, the same
budget for every method (the offline L step's 30 calls: 2 000 Adam steps and 20 000 DAgger states each; for QAT on
the fake-quantized network, for the small network from a fresh initialisation, which makes it policy
distillation: that L step distils the reference), the last step reported on the test episodes.

    python -m experiments.baselines.qnetwork                 # LunarLander-v3, seeds 0-2, k = 4 vs int2 vs small
    python -m experiments.compare results/cmp/lunar_s0 results/cmp/lunar_s1 results/cmp/lunar_s2 \\
        --out results/cmp/lunar --within 20
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from tasks import qnetwork as qn

from .. import cli, sweep
from ..cli import option
from ..rl.common import ENVS


@dataclass
class Config:
    """The runs (every field a flag and a key of a --config file)."""

    env: str = option("lunarlander", "environment", choices=tuple(sorted(ENVS)))
    seeds: list[int] = option([0, 1, 2], "seeds of the L step (the reference is the same)")
    families: list[str] = option(["quantization", "qat", "small"], "families (LC's and the baselines')")
    values: dict[str, list[int | float]] = option({"quantization": [4], "qat": [2], "small": [11.15]},
                                                  "values per family: k = 4 per layer is 11.15×, a 2-bit grid "
                                                  "per tensor 11.4×, the small network sized to 11.15×")
    steps: int = option(30, "LC steps (and the baselines' L-step calls)")
    mu0: float = option(1e-3, "μ₀ of LC's schedule μ_j = μ₀ · a^j (study 3's)")
    mu_multiplier: float = option(1.25, "a of the schedule (study 3's)")
    episodes: int = option(30, "test episodes of every evaluation (LC evaluates every step: 100 would triple an LC "
                               "run's time)")
    out: str = option("results/cmp/lunar", "output prefix: one directory per seed, PREFIX_s<seed>")
    cache_dir: str = option(".cache/qnetwork", "where the reference is cached (trained there if missing: ~4 min)")


def main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.baselines.qnetwork", description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for seed in config.seeds:
        task = qn.QNetwork(ENVS[config.env](), "offline", seed=seed, episodes=config.episodes)
        rows = sweep.run(task, sweep.Sweep(families=config.families, values=config.values, steps=config.steps,
                                           mu0=config.mu0, mu_multiplier=config.mu_multiplier, latency=False,
                                           progress=False, out=f"{config.out}_s{seed}", cache_dir=config.cache_dir))
        for r in rows:
            print(f"seed {seed} {r['family']:14s} {r['value']!s:6s} ratio {r['ratio']:6.2f} return "
                  f"{r['test_return']:8.1f} ± {r['test_return_std']:.1f} ({r['wall_time']:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.console(main))
