"""Plot tradeoff rows: the task's metric (test error in %, or a return) vs nominal compression ratio, or vs FLOPs
reduction (``--x flops``) (log x), one curve per family, the reference as a horizontal line. Reads the rows written
by :mod:`experiments.sweep`; knows nothing of how they were made.

    python -m experiments.plot results/tradeoff/rows.jsonl [-o tradeoff.png] [--x flops]
"""
from __future__ import annotations

import io
import statistics
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

X_AXES = ("ratio", "flops")
"""What the x axis shows: the nominal compression ratio, or the FLOPs reduction (:func:`flops_reduction`)."""
_X_LABEL = {"ratio": "nominal compression ratio (all parameters, float32 = 1)",
            "flops": "FLOPs reduction (dense multiply-adds / the compressed model's; structured: exported)"}


def _metric(rows: list[dict]) -> str:
    """The metric of the rows: ``error`` if they have ``test_error``, else the X of their ``reference_X``."""
    if not rows or "test_error" in rows[0]:
        return "error"
    return next(k.removeprefix("reference_") for k in rows[0]
                if k.startswith("reference_") and k != "reference_flops")


def flops_reduction(row: dict) -> float:
    """The dense model's multiply-adds over the compressed model's: for a structured family's row (it has
    ``channels``), those of the exported model with its channels removed (``flops_exported``: the nominal count
    sees zero rows but not the consumers' inputs that go with them); for the others the nominal ``flops`` (whether
    their export runs the zeros is a timing's choice)."""
    flops = row["flops_exported"] if row.get("channels") else row["flops"]
    return row["reference_flops"] / flops if flops else float("inf")


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Write ``fig`` as a PNG at ``path`` whole or not at all (``lc._io.write_bytes_atomic``), and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue(), what="the plot")


def useful_limit(values: list[float], reference: float, *, higher_is_better: bool,
                 flagged: list[bool] | None = None) -> float | None:
    """The edge of the y axis on the bad side (top for an error, bottom for a return) that keeps the useful points
    readable, or None to leave the axis alone. Outliers: points ``flagged`` (at chance, by the rows' ``warning``)
    and points far beyond the others on the bad side (beyond Q3 + 3·IQR of the points not flagged, the IQR at least
    10% of the median's distance from the reference; with four such points or more). The edge: 3 × the worst other
    value for an error (a quantity whose zero is perfect), else that value plus the others' range; never beyond
    the worst point."""
    sign = -1 if higher_is_better else 1                 # bad = larger sign·value
    bad = [sign * v for v in values]
    flagged = flagged or [False] * len(values)
    far = [False] * len(values)
    others = [b for b, f in zip(bad, flagged) if not f]
    if len(others) >= 4:
        q1, median, q3 = statistics.quantiles(others, n=4, method="inclusive")
        spread = max(q3 - q1, 0.1 * abs(median - sign * reference), 1e-12)
        far = [b > q3 + 3 * spread for b in bad]
    kept = [b for b, f, x in zip(bad, flagged, far) if not (f or x)] + [sign * reference]
    if len(kept) == len(values) + 1:
        return None
    worst = max(kept)
    edge = 3 * worst if not higher_is_better and min(kept) >= 0 else worst + (worst - min(kept) or abs(worst) or 1)
    edge = min(edge, max(bad))
    return sign * edge if edge < max(bad) else None


def plot_rows(rows: list[dict], path: str | Path, x: str = "ratio") -> None:
    """One PNG at ``path``; an empty ``rows`` gives an empty plot with the axes labelled. One curve per family and
    start of the LC path (the rows' ``start``: a run from μ → 0⁺ is its own curve), against ``x`` (one of
    :data:`X_AXES`); points beyond the useful range (:func:`useful_limit`) are drawn at the axis's edge as arrows,
    labelled with their value."""
    if x not in X_AXES:
        raise CompressionError(f"plot_rows(x={x!r}): choose among {', '.join(X_AXES)}")
    along = (lambda r: r["ratio"]) if x == "ratio" else flops_reduction  # noqa: E731
    metric = _metric(rows)
    scale, label = (100, "test error (%)") if metric == "error" else (1, f"test {metric}")
    higher = bool(rows[0].get("higher_is_better", metric != "error")) if rows else False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = defaultdict(list)
    for r in rows:
        curves[r["family"], r.get("start") or "first"].append(r)
    value = lambda r: scale * r[f"test_{metric}"]  # noqa: E731
    ref = scale * rows[0][f"reference_{metric}"] if rows else 0.0
    limit = useful_limit([value(r) for r in rows], ref, higher_is_better=higher,
                         flagged=["chance" in (r.get("warning") or "") for r in rows]) if rows else None
    beyond = (lambda y: y < limit) if higher else (lambda y: y > limit)  # noqa: E731
    for (family, start), rs in sorted(curves.items()):
        rs.sort(key=along)
        name = family + (" (from μ → 0)" if start == "zero" else "")
        line, = ax.plot([along(r) for r in rs], [value(r) for r in rs], "o-" if start != "zero" else "s--",
                        label=name)
        for r in rs:
            if limit is not None and beyond(value(r)):
                ax.plot([along(r)], [limit], "v" if higher else "^", color=line.get_color(), ms=9, clip_on=False)
                ax.annotate(f"{value(r):.3g}{'%' if metric == 'error' else ''}", (along(r), limit), fontsize=7,
                            color=line.get_color(), textcoords="offset points", xytext=(4, -10 if higher else 3),
                            annotation_clip=False)
            else:
                ax.annotate(f"{r['value']}", (along(r), value(r)), fontsize=7, textcoords="offset points",
                            xytext=(3, 3))
    if rows:
        ax.axhline(ref, color="k", ls="--", lw=1,
                   label=f"reference ({ref:.2f}%)" if metric == "error" else f"reference ({ref:.4g})")
        ax.set_title(f"{rows[0]['task']} — {rows[0]['split']}", fontsize=9)
    if limit is not None:
        inside = [value(r) for r in rows if not beyond(value(r))] + [ref]
        near = min(inside) if not higher else max(inside)           # the good end of the useful range
        margin = 0.05 * abs(limit - near)
        if not higher:
            ax.set_ylim(max(0.0, near - margin) if metric == "error" else near - margin, limit)
        else:
            ax.set_ylim(limit, near + margin)
        ax.text(0.01, 0.99 if not higher else 0.01, "arrows: beyond the axis (value written)", fontsize=7,
                transform=ax.transAxes, va="top" if not higher else "bottom", alpha=0.7)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(_X_LABEL[x])
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
    x: str = option("ratio", "x axis: ratio (nominal compression ratio) or flops (FLOPs reduction)", choices=X_AXES)


def main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.plot", description=__doc__)
    path = Path(config.rows)
    if not path.is_file():
        raise CompressionError(f"{path} does not exist: give the rows.jsonl of a sweep")
    rows, _ = read_rows(path)
    out = config.output or path.with_name("tradeoff.png")
    plot_rows(rows, out, x=config.x)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.console(main))
