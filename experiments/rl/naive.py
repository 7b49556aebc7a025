"""Study 1: naive (post-training) compression of the reference Q-network, as in Guggilla et al. 2023: return vs
the fraction of weights pruned (0–0.9), and vs rank reduction of the hidden layers only and of all layers; and
which layer k-quantization hurts: each weight matrix quantized alone (one codebook of k values; the output layer
also with one codebook per row), then all together (``--quantize``, rows of family ``quantization-layer``).

    python -m experiments.rl.naive [--env lunarlander] [--episodes 100] [--out results/rl/naive]
    python -m experiments.rl.naive --env cartpole --episodes 5 --out /tmp/naive      # smoke test, seconds

Writes rows.csv / rows.jsonl (one row per compressed network) and naive.png to --out.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from lc import Param  # noqa: E402
from tasks import qnetwork as qn  # noqa: E402
from tasks.adapter import weight_names  # noqa: E402

from .. import cli  # noqa: E402
from ..cli import option  # noqa: E402
from ..plot import save_figure  # noqa: E402
from ..progress import bar  # noqa: E402
from ..schemes import Family, Scheme, family, quantized  # noqa: E402
from . import common as rc  # noqa: E402

PRUNED = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RANK_FRACTIONS = (0.75, 0.5, 0.375, 0.25, 0.125)          # full rank is the reference (pruned = 0)


@dataclass
class Config(rc.Common):
    """Study 1's settings (every field a flag and a key of a --config file)."""

    pruned: list[float] = option(list(PRUNED), "fractions of weights pruned")
    ranks: list[float] = option(list(RANK_FRACTIONS), "rank fractions: each matrix at rank ⌈f · min(m, n)⌉")
    quantize: list[int] = option([4, 8], "codebook sizes k of the per-layer quantization rows (none: skip them)",
                                 nargs="*")
    out: str = option("results/rl/naive", "output directory", directory=True)


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.rl.naive", description=__doc__)
    out = Path(args.out)
    rc.setup_logging(out)
    torch.set_num_threads(args.threads)
    ref = rc.reference(args.env)
    schemes = [Scheme(family("pruning"), 1 - p) for p in args.pruned]
    schemes += [Scheme(family(f"low-rank-{layers}"), f) for layers in ("hidden", "all") for f in args.ranks]
    schemes += [s for k in args.quantize for s in layer_quantization(ref.network(), k)]
    rows = []
    schemes_bar = bar(schemes, desc="naive")
    for s in schemes_bar:
        label = f"{s.name} {s.layers}" if s.layers else s.name
        schemes_bar.set_postfix_str(label)
        net, compressed = rc.naive(ref, s)
        ratio = compressed.ratio(net)
        ev = qn.evaluate(net, ref.cfg.env_id, args.episodes)
        rows.append({"env": ref.cfg.env_id, "family": s.family, "value": s.value, "ratio": ratio,
                     "return_mean": ev.mean, "return_std": ev.std, "episodes": ev.episodes,
                     **({"layers": s.layers} if s.layers else {})})
        tqdm.write(f"{label:40s} ratio {ratio:6.2f}  return {ev.mean:8.1f} ± {ev.std:.1f}")   # above a bar
    rc.write_rows(rows, out)
    plot(rows, out / "naive.png")


def layer_quantization(net: torch.nn.Module, k: int) -> list[Scheme]:
    """k-quantization of each weight matrix alone, of the output layer with one codebook per row, and of all
    matrices (one codebook each); ``layers`` names what is quantized."""
    names = weight_names(net)
    variants = [(n, {Param(n): quantized(k)}) for n in names]
    variants += [(f"{names[-1]} per row", {Param(names[-1]): quantized(k, per_row=True)}), ("all", None)]
    return [Scheme(Family("quantization-layer", "k", (k,), build=(lambda net, v, t=t: t) if t else
                          family("quantization").tasks, integer=True), k, label) for label, t in variants]


def plot(rows, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    pr = [r for r in rows if r["family"] == "pruning"]
    axes[0].errorbar([1 - r["value"] for r in pr], [r["return_mean"] for r in pr],
                     [r["return_std"] for r in pr], marker="o", capsize=3)
    axes[0].set(xlabel="fraction of weights pruned", ylabel="return (mean ± std over episodes)",
                title="naive magnitude pruning")
    for fam in ("low-rank-hidden", "low-rank-all"):
        rr = [r for r in rows if r["family"] == fam]
        if rr:
            axes[1].errorbar([r["value"] for r in rr], [r["return_mean"] for r in rr],
                             [r["return_std"] for r in rr], marker="o", capsize=3, label=fam)
    axes[1].set(xlabel="rank fraction kept", title="naive low rank (truncated SVD)")
    axes[1].invert_xaxis()
    if axes[1].lines:
        axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(cli.console(main))
