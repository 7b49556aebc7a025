"""How well does validation choose the LC step? One offline LC run per seed, every step's Δ(Θ) from ``--from``
on evaluated three ways: the per-step validation return LC itself computes (``--eval-episodes``, model-selection
seeds), ``--rescore-episodes`` further validation episodes (the seeds after those), and the test episodes. Per
seed it prints the test return of the step each protocol picks: the best per-step validation return
(``--candidates 1`` of experiments.rl.tradeoff), the best rescore among the ``--candidates`` best of those (its
default), and the best test return of any step (an oracle no protocol may use: the bound that selection alone
can reach).

    python -m experiments.rl.selection --schemes quantization=4 --seeds 3 4      # about 6 min per seed
    python -m experiments.rl.selection --env cartpole --schemes pruning=0.2 --seeds 0 --steps 3 --from 0 \\
        --episodes 5 --eval-episodes 3 --rescore-episodes 3 --out /tmp/sel                    # smoke test

Writes rows.csv / rows.jsonl (one row per seed) and steps/rows.csv, steps/rows.jsonl (one per seed and step)
to --out.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from tasks import qnetwork as qn

from .. import cli
from ..cli import option
from ..schemes import parse_scheme
from . import common as rc


@dataclass
class Config(rc.Common):
    """The selection study's settings (every field a flag and a key of a --config file)."""

    schemes: list[str] = option(["quantization=4"], "FAMILY=VALUE, see experiments.schemes.parse_scheme")
    seeds: list[int] = option([3, 4], "seeds of the L step")
    steps: int = option(30, "LC steps (length of the μ schedule)")
    mu0: float = option(1e-3, "μ₀ of the schedule μ_j = μ₀ · a^j")
    multiplier: float = option(1.25, "a of the schedule μ_j = μ₀ · a^j")
    eval_episodes: int = option(20, "validation episodes of the per-step LC evaluation")
    rescore_episodes: int = option(100, "further validation episodes of each step")
    candidates: int = option(5, "the steps with the best validation returns rescored")
    first: int = option(18, "first step evaluated (earlier steps of the hard schemes are far below the later ones: "
                            "never picked, and slow to evaluate)", flags=("--from",))
    set: list[str] = option([], "L-step overrides, as experiments.rl.tradeoff", metavar="FIELD=VALUE")
    out: str = option("results/rl/selection", "output directory", directory=True)


def choices(steps: list[dict], candidates: int) -> dict:
    """The step each protocol picks among ``steps`` (dicts with step, validation, rescore, test): the first of
    the best validation returns; of the ``candidates`` best of those, the first of the best rescores; the best
    test return (the oracle)."""
    screened = sorted(steps, key=lambda s: (-s["validation"], s["step"]))[:candidates]
    picks = {"validation": screened[0], "rescored": max(screened, key=lambda s: s["rescore"]),
             "oracle": max(steps, key=lambda s: s["test"])}
    return {f"{k}_{f}": v[f] for k, v in picks.items() for f in ("step", "test")}


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.rl.selection", description=__doc__)
    schemes = [parse_scheme(text) for text in args.schemes]
    out = Path(args.out)
    rc.setup_logging(out)
    torch.set_num_threads(args.threads)
    overrides = rc.l_step_overrides(rc.ENVS[args.env](), args.set)
    ref = rc.reference(args.env)
    env = ref.cfg.env_id
    steps, rows = [], []
    for scheme in schemes:
        for seed in args.seeds:
            kept = []

            def keep(algorithm, record):
                if record.step >= args.first:
                    with algorithm.compressed():
                        kept.append((record.step, record.evaluation, copy.deepcopy(algorithm.model.state_dict())))

            net, _, _ = rc.lc_run(ref, scheme, "offline", seed=seed, mu0=args.mu0, multiplier=args.multiplier,
                                  steps=args.steps, eval_episodes=args.eval_episodes, callbacks=[keep], **overrides)
            these = []
            second = rc.rescore(ref, args.rescore_episodes, args.eval_episodes)
            for step, validation, state in kept:
                net.load_state_dict(state)
                these.append({"scheme": scheme.name, "seed": seed, "step": step, "validation": validation,
                              "rescore": second(net), "test": qn.evaluate(net, env, args.episodes).mean})
            steps += these
            rows.append({"scheme": scheme.name, "seed": seed, **choices(these, args.candidates)})
            print(" ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
                  flush=True)
            rc.write_rows(rows, out)
            rc.write_rows(steps, out / "steps")


if __name__ == "__main__":
    sys.exit(cli.console(main))
