"""Study 1: naive (post-training) compression of the reference Q-network, as in Guggilla et al. 2023: return vs
the fraction of weights pruned (0–0.9), and vs rank reduction of the hidden layers only and of all layers; and
which layer k-quantization hurts: each weight matrix quantized alone (one codebook of k values; the output layer
also with one codebook per row), then all together (``--quantize``, rows of family ``quantization-layer``).

    python -m experiments.rl_naive [--env lunarlander] [--episodes 100] [--out results/rl/naive]
    python -m experiments.rl_naive --env cartpole --episodes 5 --out /tmp/naive      # smoke test, seconds

Writes rows.csv / rows.jsonl (one row per compressed network) and naive.png to --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from lc import Param  # noqa: E402
from tasks import qnetwork as qn  # noqa: E402

from . import rl_common as rc  # noqa: E402

PRUNED = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RANK_FRACTIONS = (0.75, 0.5, 0.375, 0.25, 0.125)          # full rank is the reference (pruned = 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rc.common_args(ap)
    ap.add_argument("--pruned", type=float, nargs="+", default=PRUNED, help="fractions of weights pruned")
    ap.add_argument("--ranks", type=float, nargs="+", default=RANK_FRACTIONS,
                    help="rank fractions: each matrix at rank ⌈f · min(m, n)⌉")
    ap.add_argument("--quantize", type=int, nargs="*", default=(4, 8), help="codebook sizes k of the per-layer "
                    "quantization rows (none: skip them)")
    ap.add_argument("--out", default="results/rl/naive")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rc.setup_logging(out)
    torch.set_num_threads(args.threads)
    ref = rc.reference(args.env)
    schemes = [rc.pruning(1 - p) for p in args.pruned]
    schemes += [rc.low_rank(f, layers) for layers in ("hidden", "all") for f in args.ranks]
    schemes += [s for k in args.quantize for s in layer_quantization(ref.network(), k)]
    skipped = sorted({s.family for s in schemes if not s.available()})
    if skipped:
        print(f"skipped (this lc lacks their compression): {skipped}")
    rows = []
    for s in tqdm([s for s in schemes if s.available()], desc="naive"):
        net, compressed = rc.naive(ref, s)
        ratio = compressed.ratio(net)
        ev = qn.evaluate(net, ref.cfg.env_id, args.episodes)
        rows.append({"env": ref.cfg.env_id, "family": s.family, "value": s.value, "ratio": ratio,
                     "return_mean": ev.mean, "return_std": ev.std, "episodes": ev.episodes,
                     **({"layers": s.layers} if s.layers else {})})
        label = f"{s.name} {s.layers}" if s.layers else s.name
        tqdm.write(f"{label:40s} ratio {ratio:6.2f}  return {ev.mean:8.1f} ± {ev.std:.1f}")
    rc.write_rows(rows, out)
    plot(rows, out / "naive.png")


def layer_quantization(net: torch.nn.Module, k: int) -> list[rc.Scheme]:
    """k-quantization of each weight matrix alone, of the output layer with one codebook per row, and of all
    matrices (one codebook each); ``layers`` names what is quantized."""
    names = rc.weight_names(net)
    variants = [(n, {Param(n): rc.quantized(k)}) for n in names]
    variants += [(f"{names[-1]} per row", {Param(names[-1]): rc.quantized(k, per_row=True)}), ("all", None)]
    return [rc.Scheme("quantization-layer", k, (lambda net, t=t: t) if t else rc.quantization(k).tasks,
                      ("AdaptiveQuantization",), label) for label, t in variants]


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
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
