"""Study 1: naive (post-training) compression of the reference Q-network, as in Guggilla et al. 2023: return vs
the fraction of weights pruned (0–0.9), and vs rank reduction of the hidden layers only and of all layers.

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
    ap.add_argument("--out", default="results/rl/naive")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rc.setup_logging(out)
    torch.set_num_threads(args.threads)
    ref = rc.reference(args.env)
    schemes = [rc.pruning(1 - p) for p in args.pruned]
    schemes += [rc.low_rank(f, layers) for layers in ("hidden", "all") for f in args.ranks]
    skipped = sorted({s.family for s in schemes if not s.available()})
    if skipped:
        print(f"skipped (this lc lacks their compression): {skipped}")
    rows = []
    for s in tqdm([s for s in schemes if s.available()], desc="naive"):
        net, compressed = rc.naive(ref, s)
        ratio = compressed.ratio(net)
        ev = qn.evaluate(net, ref.cfg.env_id, args.episodes)
        rows.append({"env": ref.cfg.env_id, "family": s.family, "value": s.value, "ratio": ratio,
                     "return_mean": ev.mean, "return_std": ev.std, "episodes": ev.episodes})
        tqdm.write(f"{s.name:28s} ratio {ratio:6.2f}  return {ev.mean:8.1f} ± {ev.std:.1f}")
    rc.write_rows(rows, out)
    plot(rows, out / "naive.png")


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
