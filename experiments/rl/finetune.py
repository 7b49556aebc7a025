"""Study 2: learning curves (return of the compressed network vs environment steps) of the fine-tuning schemes of
Guggilla et al. 2023 — compress the target at intervals; compress the primary at intervals with an uncompressed
target — against LC (online L step; the offline L step uses no environment steps and is drawn as a line), and
against 32-32 and 16-16 networks trained from scratch. Fine-tuning and LC get the same environment steps.

    python -m experiments.rl.finetune                             # LunarLander-v3, pruning to 10% of weights
    python -m experiments.rl.finetune --scheme quantization=4
    python -m experiments.rl.finetune --env cartpole --lc-steps 3 --scratch-steps 3000 --episodes 5 \\
        --out /tmp/rl_finetune                                    # smoke test

Writes curves.csv (method, env_steps, mean, std: model-selection seeds, --eval-episodes each), rows.csv (final
networks on --episodes test episodes) and finetune.png to --out.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from tasks import qnetwork as qn  # noqa: E402

from .. import cli  # noqa: E402
from ..cli import option  # noqa: E402
from ..plot import save_figure  # noqa: E402
from ..schemes import parse_scheme  # noqa: E402
from . import common as rc  # noqa: E402

METHODS = ("finetune-target", "finetune-primary", "lc-online", "lc-offline", "scratch-32-32", "scratch-16-16")


@dataclass
class Config(rc.Common):
    """Study 2's settings (every field a flag and a key of a --config file)."""

    scheme: str = option("pruning=0.1", "FAMILY=VALUE, see experiments.schemes.parse_scheme")
    methods: list[str] = option(list(METHODS), "methods", choices=METHODS)
    lc_steps: int = option(16, "LC steps; fine-tuning gets as many env steps")
    mu0: float = option(1e-3, "μ₀ of the schedule μ_j = μ₀ · a^j")
    multiplier: float = option(1.5, "a of the schedule μ_j = μ₀ · a^j")
    interval: int = option(1_000, "fine-tuning: env steps between compressions")
    scratch_steps: int = option(300_000, "env steps of the from-scratch networks")
    eval_every: int | None = option(None, "env steps between curve points (default: the config's lc_steps)")
    eval_episodes: int = option(10, "validation episodes of each curve point")
    seed: int = option(0, "seed of the L step and of the fine-tuning")
    out: str = option("results/rl/finetune", "output directory", directory=True)


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.rl.finetune", description=__doc__)
    scheme = parse_scheme(args.scheme)
    out = Path(args.out)
    rc.setup_logging(out)
    torch.set_num_threads(args.threads)
    ref = rc.reference(args.env)
    cfg = ref.cfg
    budget = args.lc_steps * cfg.lc_steps
    every = args.eval_every or cfg.lc_steps
    curves, finals = [], []
    ev = qn.evaluate(ref.network(), cfg.env_id, args.episodes)
    finals.append({"method": "reference", "env_steps": 0, "return_mean": ev.mean, "return_std": ev.std})
    for method in args.methods:
        t0 = time.perf_counter()
        if method.startswith("finetune"):
            net = ref.network()
            tasks = scheme.tasks(net)
            net, curve = qn.finetune(cfg, net, ref.replay(), lambda m: qn.project(m, tasks),
                                     method.split("-")[1], steps=budget, interval=args.interval, seed=args.seed,
                                     eval_every=every, eval_episodes=args.eval_episodes)
            steps = budget
        elif method.startswith("lc"):
            kind = method.split("-")[1]
            net, history, _ = rc.lc_run(ref, scheme, kind, seed=args.seed, mu0=args.mu0, multiplier=args.multiplier,
                                     steps=args.lc_steps, eval_episodes=args.eval_episodes)
            per = cfg.lc_steps if kind == "online" else 0
            curve = [{"step": h.step * per, "mean": h.evaluation, "std": float("nan")} for h in history]
            steps = budget if kind == "online" else 0
        else:
            hidden = tuple(int(h) for h in method.removeprefix("scratch-").split("-"))
            best, _, log = qn.train(cfg, hidden, seed=args.seed, steps=args.scratch_steps,
                                    eval_every=max(every, args.scratch_steps // 30), eval_episodes=args.eval_episodes)
            net = qn.make_network(cfg, hidden)
            net.load_state_dict(best)
            curve = [{"step": r["step"], "mean": r["mean"], "std": r["std"]} for r in log]
            steps = args.scratch_steps
        curves += [{"method": method, "env_steps": c["step"], "mean": c["mean"], "std": c["std"]} for c in curve]
        ev = qn.evaluate(net, cfg.env_id, args.episodes)
        finals.append({"method": method, "scheme": scheme.name, "env_steps": steps, "return_mean": ev.mean,
                       "return_std": ev.std, "params": sum(p.numel() for p in net.parameters()),
                       "nonzeros": int(sum((p != 0).sum() for p in net.parameters())),
                       "seconds": time.perf_counter() - t0})
        print(f"{method:18s} {steps:7d} env steps: return {ev.mean:8.1f} ± {ev.std:.1f} "
              f"({finals[-1]['seconds']:.0f}s)", flush=True)
        _write(out, curves, finals)
    plot(curves, finals, scheme.name, cfg.env_id, out / "finetune.png")


def _write(out, curves, finals):
    rc.write_rows(curves, out, "curves")
    rc.write_rows(finals, out)


def plot(curves, finals, scheme, env_id, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, m in enumerate(dict.fromkeys(c["method"] for c in curves)):
        pts = [(c["env_steps"], c["mean"]) for c in curves if c["method"] == m]
        if m == "lc-offline":
            ax.axhline(pts[-1][1], color=f"C{i}", ls="--", label="lc-offline (no env steps), final")
        else:
            ax.plot(*zip(*pts), marker=".", color=f"C{i}", label=m)
    ref = next(f for f in finals if f["method"] == "reference")
    ax.axhline(ref["return_mean"], color="k", lw=1, label="reference 64-64")
    ax.set(xlabel="environment steps", ylabel="return of the compressed network (validation episodes)",
           title=f"{env_id}: fine-tuning vs LC vs small networks ({scheme})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(cli.console(main))
