"""Plot tradeoff rows: test error vs nominal compression ratio (log x), one curve per family, the reference as a
horizontal line. Reads the rows written by :mod:`experiments.tradeoff`; knows nothing of how they were made.

    python -m experiments.plot results/tradeoff/rows.jsonl [-o tradeoff.png]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_rows(rows: list[dict], path: str | Path) -> None:
    """One PNG at ``path``; an empty ``rows`` gives an empty plot with the axes labelled."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = defaultdict(list)
    for r in rows:
        curves[r["family"]].append(r)
    for family, rs in sorted(curves.items()):
        rs.sort(key=lambda r: r["ratio"])
        ax.plot([r["ratio"] for r in rs], [100 * r["test_error"] for r in rs], "o-", label=family)
        for r in rs:
            ax.annotate(f"{r['value']}", (r["ratio"], 100 * r["test_error"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    if rows:
        ax.axhline(100 * rows[0]["reference_error"], color="k", ls="--", lw=1,
                   label=f"reference ({100 * rows[0]['reference_error']:.2f}%)")
        ax.set_title(f"{rows[0]['task']} — {rows[0]['split']}", fontsize=9)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("nominal compression ratio (all parameters, float32 = 1)")
    ax.set_ylabel("test error (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", help="rows.jsonl written by experiments.tradeoff")
    ap.add_argument("-o", "--output", help="PNG to write (default: tradeoff.png beside the rows)")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines() if line.strip()]
    out = args.output or Path(args.rows).with_name("tradeoff.png")
    plot_rows(rows, out)
    print(out)


if __name__ == "__main__":
    main()
