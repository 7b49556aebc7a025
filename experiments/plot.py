"""Plot tradeoff rows: the task's metric (test error in %, or a return) vs nominal compression ratio, or vs FLOPs
reduction (``--x flops``) (log x), one curve per family, the reference as a horizontal line. Reads the rows written
by :mod:`experiments.sweep`; knows nothing of how they were made.

    python -m experiments.plot results/tradeoff/rows.jsonl [-o tradeoff.png] [--x flops]
"""
from __future__ import annotations

import io
import statistics
import sys
import textwrap
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


def flops_reduction(row: dict) -> float | None:
    """The dense model's multiply-adds over the compressed model's: for a structured family's row (it has
    ``channels``), those of the exported model with its channels removed (``flops_exported``: the nominal count
    sees zero rows but not the consumers' inputs that go with them); for the others the nominal ``flops`` (whether
    their export runs the zeros is a timing's choice). None for a row without the counts (a diverged run's)."""
    flops = row.get("flops_exported") if row.get("channels") else row.get("flops")
    return row["reference_flops"] / flops if flops and row.get("reference_flops") else None


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


_MARKERS = "osD^v<>pP*Xh"


@dataclass
class Point:
    """One point of a curve: a (family, value, start) over its rows (one per seed): mean ratio, FLOPs reduction
    (:func:`flops_reduction`; None if a row has no count: a diverged run) and metric, the metric's spread
    (population std over the seeds; 0 for one seed)."""

    family: str
    value: object
    start: str
    method: str
    kind: str
    ratio: float
    mean: float
    std: float
    rows: list
    flops: float | None = None


def points(rows: list[dict], scale: float = 1.0, metric: str = "error") -> list[Point]:
    """The rows grouped by (family, value, start of the LC path), averaged over their seeds."""
    groups = defaultdict(list)
    for r in rows:
        groups[r["family"], r["value"], r.get("start") or "first"].append(r)
    out = []
    for (family, value, start), rs in groups.items():
        ys = [scale * r[f"test_{metric}"] for r in rs]
        reductions = [flops_reduction(r) for r in rs]
        out.append(Point(family, value, start, rs[0].get("method") or "lc", rs[0].get("kind") or family,
                         statistics.fmean(r["ratio"] for r in rs), statistics.fmean(ys),
                         statistics.pstdev(ys) if len(ys) > 1 else 0.0, rs,
                         None if None in reductions else statistics.fmean(reductions)))
    return out


def plot_rows(rows: list[dict], path: str | Path, *, x: str = "ratio", edge: float | None = None) -> None:
    """One PNG at ``path``; an empty ``rows`` gives an empty plot with the axes labelled. One curve per family and
    start of the LC path (the rows' ``start``: a run from μ → 0⁺ is its own curve) against ``x`` (one of
    :data:`X_AXES`; on the FLOPs axis, points without a count — diverged runs — are left out), one colour per
    compression type (the rows' ``kind``): LC's curves solid, the baselines' (``method`` other than ``lc``) dashed,
    a marker per method. Rows of several seeds of a point are averaged, their spread drawn as an error bar (± std).
    Points beyond the useful range (:func:`useful_limit`, or ``edge``: the axis's edge on the bad side, in the
    plotted unit) are drawn at the axis's edge as arrows, labelled with their value."""
    if x not in X_AXES:
        raise CompressionError(f"plot_rows(x={x!r}): choose among {', '.join(X_AXES)}")
    along = (lambda p: p.ratio) if x == "ratio" else (lambda p: p.flops)  # noqa: E731
    metric = _metric(rows)
    scale, label = (100, "test error (%)") if metric == "error" else (1, f"test {metric}")
    higher = bool(rows[0].get("higher_is_better", metric != "error")) if rows else False
    fig, ax = plt.subplots(figsize=(9, 5.5) if len({r.get("method") for r in rows}) > 1 else (7, 4.5))
    pts = points(rows, scale, metric)
    seeds = len({r.get("seed") for r in rows})
    ref = scale * statistics.fmean(r[f"reference_{metric}"] for r in rows) if rows else 0.0   # over the seeds
    limit = edge if edge is not None else useful_limit(
        [p.mean for p in pts], ref, higher_is_better=higher,
        flagged=[all("chance" in (r.get("warning") or "") for r in p.rows) for p in pts]) if pts else None
    beyond = (lambda y: y < limit) if higher else (lambda y: y > limit)  # noqa: E731
    kinds = sorted({p.kind for p in pts})
    colours = {k: f"C{i % 10}" for i, k in enumerate(kinds)}
    methods = sorted({p.method for p in pts} - {"lc"})
    markers = {"lc": "o", **{m: _MARKERS[1 + i % (len(_MARKERS) - 1)] for i, m in enumerate(methods)}}
    curves = defaultdict(list)
    for p in pts:
        if along(p) is not None:
            curves[p.family, p.start].append(p)
    for (family, start), ps in sorted(curves.items(), key=lambda c: (c[1][0].kind, c[1][0].method != "lc", c[0])):
        ps.sort(key=along)
        lc_run = ps[0].method == "lc"
        style = "-" if lc_run and start != "zero" else "--"
        name = family + (" (from μ → 0)" if start == "zero" else "")
        colour = colours[ps[0].kind]
        marker = "s" if start == "zero" else markers[ps[0].method]
        ax.plot([along(p) for p in ps], [p.mean for p in ps], style, marker=marker, color=colour, label=name,
                lw=1.6 if lc_run else 1.0, ms=5 if lc_run else 4, mfc=colour if lc_run else "none")
        for p in ps:
            if limit is not None and beyond(p.mean):
                ax.plot([along(p)], [limit], "v" if higher else "^", color=colour, ms=9, clip_on=False)
                ax.annotate(f"{p.mean:.3g}{'%' if metric == 'error' else ''}", (along(p), limit), fontsize=7,
                            color=colour, textcoords="offset points", xytext=(4, -10 if higher else 3),
                            annotation_clip=False)
                continue
            if p.std > 0:
                ax.errorbar([along(p)], [p.mean], [p.std], color=colour, capsize=2, lw=0.8)
            if seeds == 1:
                ax.annotate(f"{p.value}", (along(p), p.mean), fontsize=7, textcoords="offset points", xytext=(3, 3))
    if rows:
        of = f", mean of {seeds}" if seeds > 1 else ""
        ax.axhline(ref, color="k", ls="--", lw=1,
                   label=f"reference ({ref:.2f}%{of})" if metric == "error" else f"reference ({ref:.4g}{of})")
        title = f"{rows[0]['task']} — {rows[0]['split']}" + (f"; mean ± std over {seeds} seeds" if seeds > 1 else "")
        ax.set_title(textwrap.fill(title, 80), fontsize=9, pad=16)   # inside the figure, above the arrows' values
    if limit is not None:
        inside = [p.mean for p in pts if not beyond(p.mean)] + [ref]
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
    ax.legend(fontsize=7 if len(curves) > 8 else 8, ncol=2 if len(curves) > 12 else 1,
              **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if len(curves) > 8 else {}))
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
