"""The comparison of LC with the baselines (experiments.baselines) on one task: the rows of one tradeoff output
directory per seed, averaged over the seeds, written as a table, a plot and the benchmark's verdict.

    python -m experiments.compare results/cmp/digits_s0 results/cmp/digits_s1 results/cmp/digits_s2 \\
        --out results/cmp/digits

Writes to ``--out``: ``summary.csv`` (one row per family and value: the mean and spread of the metric over the
seeds, the nominal and realised ratios, the training epochs and wall time), ``comparison.png`` (the tradeoff plot
of every curve, LC solid and the baselines dashed, one colour per compression type, mean ± std over the seeds),
``target.csv`` and ``target.json`` (the fronts compared at every ratio), ``tables.md`` (both as Markdown tables, the
ones docs/baselines.md shows) and prints the verdict. At each ratio r
where a point lies, LC's front is its best point at r or above (ratios within ``--tolerance`` count as the same),
the baselines' front likewise; the benchmark asks:

- at every ratio, LC's front at or below the baselines' (an error; at or above, a return);
- above ``--high`` (30×), LC better by more than the seed-to-seed spread (the larger of the two points' standard
  deviations over the seeds);
- where a baseline is better, it is listed.

Only points run with every seed present in the rows enter the verdict (a mean over fewer seeds is not compared
with one over more); the others are in the summary and the plot, and listed as left out.

Only points from ``--from`` (4×) on are compared, and the largest ratio each method reaches within ``--within``
(2 points of error) of the reference is reported.
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from lc import CompressionError
from lc._io import write_text_atomic

from . import cli
from .cli import option
from .plot import Point, plot_rows, points
from .runs import csv_text, read_rows

__all__ = ["Config", "main", "markdown", "summary", "verdict"]


@dataclass
class Config:
    """Compare LC with the baselines over seeds (every field a flag and a key of a --config file)."""

    rows: list[str] = option(help="tradeoff output directories (or their rows.jsonl), one per seed",
                             positional=True)
    out: str = option("results/compare", "output directory (summary.csv, target.csv, tables.md, comparison.png)",
                      directory=True)
    tolerance: float = option(0.03, "ratios within this fraction of each other count as the same ratio")
    high: float = option(30.0, "above this ratio LC must win by more than the seed-to-seed spread")
    start: float = option(4.0, "compare points from this ratio on", flags=("--from",))
    within: float = option(2.0, "report the largest ratio each method reaches within this many points (error) or "
                                "units (return) of the reference")
    budget: float = option(1.0, "the baselines' training budget to compare (rows of other budgets in the same "
                                "directories are left out; LC's and the post-training rows are always in)")
    edge: float | None = option(None, "the plot's axis edge on the bad side (error in %, or a return); default: "
                                      "the reference + 10 points for an error")


def _load(paths: list[str], budget: float = 1.0) -> list[dict]:
    rows = []
    for p in paths:
        path = Path(p) / "rows.jsonl" if Path(p).is_dir() else Path(p)
        if not path.is_file():
            raise CompressionError(f"{p}: no rows.jsonl there; give the --out of a tradeoff run")
        rows += [r for r in read_rows(path)[0] if r.get("method") in (None, "lc") or r.get("budget") is None
                 or r["budget"] == budget]
    if not rows:
        raise CompressionError("no rows to compare")
    tasks = {r["task"] for r in rows}
    if len(tasks) > 1:
        raise CompressionError(f"rows of several tasks {sorted(tasks)}: compare one task at a time")
    return rows


def _scale(rows) -> tuple[str, float, bool]:
    metric = "error" if "test_error" in rows[0] else "return"
    return metric, (100.0 if metric == "error" else 1.0), bool(rows[0].get("higher_is_better", metric != "error"))


def summary(rows: list[dict]) -> list[dict]:
    """One row per (family, value, start): mean and spread of the metric over the seeds, and the costs."""
    metric, scale, _ = _scale(rows)
    mean = lambda key, p: statistics.fmean(r[key] for r in p.rows if r.get(key) is not None) \
        if any(r.get(key) is not None for r in p.rows) else None  # noqa: E731
    out = []
    for p in sorted(points(rows, scale, metric), key=lambda p: (p.kind, p.method != "lc", p.family, p.ratio)):
        ys = [scale * r[f"test_{metric}"] for r in p.rows]
        out.append({"task": p.rows[0]["task"], "kind": p.kind, "method": p.method, "family": p.family,
                    "parameter": p.rows[0]["parameter"], "value": p.value, "start": p.start, "seeds": len(p.rows),
                    "ratio": p.ratio, "realised_ratio": mean("realised_ratio", p), f"{metric}_mean": p.mean,
                    f"{metric}_std": p.std, f"{metric}_min": min(ys), f"{metric}_max": max(ys),
                    f"reference_{metric}": scale * statistics.fmean(r[f"reference_{metric}"] for r in p.rows),
                    "epochs": mean("epochs", p), "steps": mean("steps", p), "wall_time": mean("wall_time", p)})
    return out


def _best(candidates: list[Point], ratio: float, tolerance: float, higher: bool) -> Point | None:
    """The best of ``candidates`` at ``ratio`` or above (within the tolerance)."""
    at = [c for c in candidates if c.ratio >= ratio * (1 - tolerance)]
    return (max if higher else min)(at, key=lambda c: c.mean) if at else None


def verdict(rows: list[dict], config: Config) -> tuple[list[dict], dict]:
    """The two fronts compared at every ratio where a point lies (from ``config.start`` on): LC's best point at that
    ratio or above against the baselines' best at that ratio or above; and the benchmark's answer. Only points run
    with every seed of the rows are compared (the others are listed as ``left_out``)."""
    metric, scale, higher = _scale(rows)
    seeds = {r.get("seed") for r in rows}
    every = [p for p in points(rows, scale, metric) if p.ratio >= config.start * (1 - config.tolerance)]
    pts = [p for p in every if {r.get("seed") for r in p.rows} == seeds]      # a mean over the same seeds only
    lc_pts = [p for p in pts if p.method == "lc"]
    base = [p for p in pts if p.method != "lc"]
    table = []
    ratios = []
    for r in sorted(p.ratio for p in pts):                  # one ratio per cluster of ratios within the tolerance
        if not ratios or r > ratios[-1] * (1 + config.tolerance):
            ratios.append(r)
    for ratio in ratios:
        a, b = _best(lc_pts, ratio, config.tolerance, higher), _best(base, ratio, config.tolerance, higher)
        if a is None or b is None:
            continue
        margin = (a.mean - b.mean) if higher else (b.mean - a.mean)           # > 0: LC is better
        table.append({"ratio": ratio, "lc_family": a.family, "lc_value": a.value, "lc_ratio": a.ratio,
                      "lc_mean": a.mean, "lc_std": a.std, "baseline_family": b.family, "baseline_value": b.value,
                      "baseline_ratio": b.ratio, "baseline_mean": b.mean, "baseline_std": b.std, "margin": margin,
                      "spread": max(a.std, b.std), "lc_at_or_better": margin >= 0,
                      "lc_beyond_spread": margin > max(a.std, b.std)})
    ref = scale * statistics.fmean(r[f"reference_{metric}"] for r in rows)
    reach = {}
    for p in points(rows, scale, metric):
        if (p.mean >= ref - config.within) if higher else (p.mean <= ref + config.within):
            reach[p.family] = max(reach.get(p.family, 0.0), p.ratio)
    high = [t for t in table if t["ratio"] > config.high]
    answer = {"reference": ref, "seeds": sorted(seeds, key=str),
              "left_out": sorted(f"{p.family}={p.value}" for p in every if p not in pts), "ratios": len(table), "lc_at_or_better": sum(t["lc_at_or_better"] for t in table),
              "ratios_above_high": len(high), "lc_beyond_spread_above_high": sum(t["lc_beyond_spread"] for t in high),
              "baseline_better": [f"{t['ratio']:.1f}×: {t['baseline_family']}={t['baseline_value']} "
                                  f"{t['baseline_mean']:.2f} ± {t['baseline_std']:.2f} vs LC {t['lc_family']}="
                                  f"{t['lc_value']} {t['lc_mean']:.2f} ± {t['lc_std']:.2f}"
                                  for t in table if t["margin"] < 0],
              "largest_ratio_within": {k: round(v, 2) for k, v in sorted(reach.items(), key=lambda kv: -kv[1])}}
    return table, answer


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _mean_of(rows: list[dict], key: str, form: str) -> str:
    """The mean of ``key`` over the rows that have it, formatted; "—" where none has."""
    known = [r[key] for r in rows if r[key] is not None]
    return form.format(statistics.fmean(known)) if known else "—"


def markdown(summary_rows: list[dict], table: list[dict]) -> str:
    """The summary (one line per family: every value's mean ± std over the seeds and nominal ratio, "[n seeds]"
    where fewer seeds than the most any point has; the mean epochs and wall time of its runs) and the two fronts
    compared, as Markdown tables."""
    if not summary_rows:
        return ""
    metric = "error" if "error_mean" in summary_rows[0] else "return"
    most = max(r["seeds"] for r in summary_rows)
    families: dict[str, list[dict]] = {}
    for r in summary_rows:
        families.setdefault(r["family"], []).append(r)
    lines = ["| kind | family | method | value: mean ± std (nominal ratio) | epochs | wall s |",
             "|---|---|---|---|---|---|"]
    for family, rs in families.items():
        cells = "; ".join(f"{_value(r['value'])}: {r[metric + '_mean']:.2f} ± {r[metric + '_std']:.2f} "
                          f"({r['ratio']:.1f}×)" + (f" [{r['seeds']} seed{'s' * (r['seeds'] > 1)}]"
                                                    if r["seeds"] < most else "") for r in rs)
        epochs, wall = (_mean_of(rs, "epochs", "{:.0f}"), _mean_of(rs, "wall_time", "{:.1f}"))
        lines.append(f"| {rs[0]['kind']} | `{family}` | {rs[0]['method']} | {cells} | {epochs} | {wall} |")
    lines += ["", "| ratio | LC's best at this ratio or above | the baselines' best | LC better by | spread | "
                  "verdict |", "|---|---|---|---|---|---|"]
    for t in table:
        lc_point, base = (f"`{t[k + '_family']}={_value(t[k + '_value'])}` {t[k + '_mean']:.2f} ± {t[k + '_std']:.2f} "
                          f"({t[k + '_ratio']:.1f}×)" for k in ("lc", "baseline"))
        verdict_ = ("LC better beyond the spread" if t["lc_beyond_spread"] else
                    "LC at or better" if t["lc_at_or_better"] else "**baseline better**")
        lines.append(f"| {t['ratio']:.1f}× | {lc_point} | {base} | {t['margin']:+.2f} | {t['spread']:.2f} | "
                     f"{verdict_} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.compare", description=__doc__)
    rows = _load(config.rows, config.budget)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    metric, scale, higher = _scale(rows)
    means = summary(rows)
    write_text_atomic(out / "summary.csv", csv_text(means), what="the summary")
    table, answer = verdict(rows, config)
    write_text_atomic(out / "target.csv", csv_text(table), what="the comparison")
    write_text_atomic(out / "target.json", json.dumps(answer, indent=1), what="the verdict")
    write_text_atomic(out / "tables.md", markdown(means, table), what="the tables")
    ref = answer["reference"]
    edge = config.edge if config.edge is not None else (ref + 10 if metric == "error" else None)
    plot_rows(rows, out / "comparison.png", edge=edge)
    print(f"{rows[0]['task']} ({rows[0]['split']}), reference {ref:.2f}; {len({r['seed'] for r in rows})} seeds")
    print(f"LC's front at or below the baselines' at {answer['lc_at_or_better']} of {answer['ratios']} ratios; above "
          f"{config.high:g}×, better by more than the seeds' spread at {answer['lc_beyond_spread_above_high']} of "
          f"{answer['ratios_above_high']}")
    for line in answer["baseline_better"]:
        print(f"  a baseline is better at {line}")
    if answer["left_out"]:
        print(f"left out of the verdict (not run with every seed): {', '.join(answer['left_out'])}")
    print(f"largest ratio within {config.within:g} of the reference: {answer['largest_ratio_within']}")
    print(out / "comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(cli.console(main))
