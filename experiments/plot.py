"""Plot tradeoff rows: the task's metric (test error in %, or a return) vs nominal compression ratio (log x), one
curve per family, the reference as a horizontal line. Reads the rows written by :mod:`experiments.sweep`; knows
nothing of how they were made.

    python -m experiments.plot results/tradeoff/rows.jsonl [-o tradeoff.png]
"""
from __future__ import annotations

import io
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lc import CompressionError  # noqa: E402
from lc._io import write_bytes_atomic  # noqa: E402

from . import cli  # noqa: E402
from .cli import option  # noqa: E402
from .runs import read_rows  # noqa: E402


def _metric(rows: list[dict]) -> str:
    """The metric of the rows: ``error`` if they have ``test_error``, else the X of their ``reference_X``."""
    if not rows or "test_error" in rows[0]:
        return "error"
    return next(k.removeprefix("reference_") for k in rows[0]
                if k.startswith("reference_") and k != "reference_flops")


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Write ``fig`` as a PNG at ``path`` whole or not at all (``lc._io.write_bytes_atomic``), and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue(), what="the plot")


def plot_rows(rows: list[dict], path: str | Path) -> None:
    """One PNG at ``path``; an empty ``rows`` gives an empty plot with the axes labelled."""
    metric = _metric(rows)
    scale, label = (100, "test error (%)") if metric == "error" else (1, f"test {metric}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = defaultdict(list)
    for r in rows:
        curves[r["family"]].append(r)
    for family, rs in sorted(curves.items()):
        rs.sort(key=lambda r: r["ratio"])
        ax.plot([r["ratio"] for r in rs], [scale * r[f"test_{metric}"] for r in rs], "o-", label=family)
        for r in rs:
            ax.annotate(f"{r['value']}", (r["ratio"], scale * r[f"test_{metric}"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    if rows:
        ref = scale * rows[0][f"reference_{metric}"]
        ax.axhline(ref, color="k", ls="--", lw=1,
                   label=f"reference ({ref:.2f}%)" if metric == "error" else f"reference ({ref:.4g})")
        ax.set_title(f"{rows[0]['task']} — {rows[0]['split']}", fontsize=9)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("nominal compression ratio (all parameters, float32 = 1)")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


@dataclass
class Config:
    """Redraw a tradeoff plot from its rows."""

    rows: str = option(help="rows.jsonl written by experiments.tradeoff", positional=True)
    output: str | None = option(None, "PNG to write (default: tradeoff.png beside the rows)",
                                flags=("-o", "--output"))


def main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.plot", description=__doc__)
    path = Path(config.rows)
    if not path.is_file():
        raise CompressionError(f"{path} does not exist: give the rows.jsonl of a sweep")
    rows, _ = read_rows(path)
    out = config.output or path.with_name("tradeoff.png")
    plot_rows(rows, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.console(main))
