"""The language-model study's plot and summary, from its rows alone (:mod:`experiments.lm`).

    python -m experiments.lm_report results/lm/rows.jsonl        # the summary, and lm.png beside the rows

The summary states the issue's targets and whether they are met, with every choice among variants (plain or
data-weighted, per channel or per group) made on **validation** perplexity and the numbers reported on **test**.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .plot import save_figure  # noqa: E402
from .runs import read_rows  # noqa: E402

__all__ = ["plot", "summary", "best"]


def best(rows: list[dict], methods, value) -> dict | None:
    """Of the rows of ``methods`` at ``value``, the one of least validation perplexity (None if none)."""
    found = [r for r in rows if r["method"] in methods and str(r["value"]) == str(value)]
    return min(found, key=lambda r: r["validation_perplexity"]) if found else None


def _gap(row) -> float:
    return row["test_perplexity"] - row["reference_test_perplexity"]


def summary(rows: list[dict]) -> str:
    if not rows:
        return "no rows"
    r0 = rows[0]
    lines = [f"corpus {r0['corpus']} (sha256 {r0['corpus_sha256'][:12]}); reference perplexity: validation "
             f"{r0['reference_validation_perplexity']:.4f}, test {r0['reference_test_perplexity']:.4f}",
             f"{'method':<28} {'value':>5} {'bits/w':>7} {'val ppl':>8} {'test ppl':>8} {'gap':>7} "
             f"{'direct':>8} {'time s':>7} {'cpu s':>7}"]
    for r in sorted(rows, key=lambda r: (r["family"], str(r["value"]), not r["lc"], r["method"])):
        direct = r.get("direct_validation_perplexity")
        lines.append(f"{r['method']:<28} {r['value']!s:>5} {r['bits_per_weight']:7.3f} "
                     f"{r['validation_perplexity']:8.4f} {r['test_perplexity']:8.4f} {_gap(r):7.4f} "
                     + (f"{direct:8.3f}" if direct else f"{'':>8}")
                     + f" {r['method_time']:7.0f} {r['cpu_time']:7.0f}")
    lc_quant = [m for m in {r["method"] for r in rows} if m.startswith("lc-") and r_family(rows, m) == "quantization"]
    lc_sparse = ["lc-l0", "lc-l0-weighted"]
    lines.append("targets (variants chosen on validation, gaps on test):")
    lc3, gptq3, lc2 = best(rows, lc_quant, 3), best(rows, ["gptq-channel", "gptq-g"], 3), best(rows, lc_quant, 2)
    if lc3 and gptq3:
        ok = _gap(lc3) <= 0.5 * _gap(gptq3)
        lines.append(f"  3 bits: LC gap {_gap(lc3):.4f} ({lc3['method']}) vs GPTQ gap {_gap(gptq3):.4f} "
                     f"({gptq3['method']}): at most half? {'met' if ok else 'NOT met'}")
    if lc2 and lc3:
        ok = _gap(lc2) <= 2 * _gap(lc3)
        lines.append(f"  2 bits: LC gap {_gap(lc2):.4f} ({lc2['method']}) vs twice its 3-bit gap "
                     f"{2 * _gap(lc3):.4f}: {'met' if ok else 'NOT met'}"
                     + (" (the 3-bit gap is below zero: only a 2-bit model better than the reference could meet it)"
                        if _gap(lc3) < 0 and not ok else ""))
    lc50, post50 = best(rows, lc_sparse, "50%"), best(rows, ["wanda", "sparsegpt"], "50%")
    if lc50 and post50:
        ok = lc50["test_perplexity"] < post50["test_perplexity"]
        lines.append(f"  50% sparsity: LC {lc50['test_perplexity']:.4f} ({lc50['method']}) vs "
                     f"{post50['test_perplexity']:.4f} ({post50['method']}): {'met' if ok else 'NOT met'}")
    dense = _dense(rows)
    if dense:
        lines.append(f"  for scale: the reference trained further, uncompressed, as long as an LC run (dense): test "
                     f"{dense['test_perplexity']:.4f}, gap {_gap(dense):.4f}")
    return "\n".join(lines)


def _dense(rows) -> dict | None:
    return next((r for r in rows if r["method"] == "dense"), None)


def r_family(rows, method) -> str:
    return next(r["family"] for r in rows if r["method"] == method)


def plot(rows: list[dict], path: str | Path) -> None:
    """Test perplexity vs bits per weight (quantization), and per method at each sparsity and at low rank."""
    if not rows:
        return
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [2.2, 1.4, 1]})
    ref = rows[0]["reference_test_perplexity"]
    by = defaultdict(list)
    for r in rows:
        by[(r["family"], r["method"])].append(r)
    ax = axes[0]
    for (family, method), rs in sorted(by.items()):
        if family != "quantization":
            continue
        rs = sorted(rs, key=lambda r: r["bits_per_weight"])
        ax.plot([r["bits_per_weight"] for r in rs], [r["test_perplexity"] for r in rs], "o-" if rs[0]["lc"] else "s--",
                label=method, lw=2 if rs[0]["lc"] else 1.2)
    ax.axhline(ref, color="k", lw=1, ls=":", label=f"reference {ref:.3f}")
    dense = _dense(rows)
    if dense:
        ax.axhline(dense["test_perplexity"], color="tab:green", lw=1, ls="-.",
                   label=f"reference trained further (dense) {dense['test_perplexity']:.3f}")
    ax.set(xlabel="bits per weight (whole model, every scale counted)", ylabel="test perplexity (log)", yscale="log",
           title="quantization (LC: solid; post-training: dashed)")
    ax.legend(fontsize=7, ncol=2)
    for ax, family in zip(axes[1:], ("sparsity", "lowrank")):
        rs = sorted((r for r in rows if r["family"] == family), key=lambda r: (str(r["value"]), r["method"]))
        labels = [f"{r['method']} {r['value']}" for r in rs]
        ax.barh(range(len(rs)), [r["test_perplexity"] for r in rs],
                color=["tab:blue" if r["lc"] else "tab:gray" for r in rs])
        ax.set_yticks(range(len(rs)), labels, fontsize=7)
        ax.axvline(ref, color="k", lw=1, ls=":")
        if dense:
            ax.axvline(dense["test_perplexity"], color="tab:green", lw=1, ls="-.")
        ax.set(xscale="log", xlabel="test perplexity (log)",
               title=f"{family} (LC: blue)" if family == "sparsity" else "low rank, half the parameters (LC: blue)")
    for ax, axis in ((axes[0], axes[0].yaxis), (axes[1], axes[1].xaxis), (axes[2], axes[2].xaxis)):
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_tick_params(which="minor", labelsize=6)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    path = Path((argv or sys.argv[1:])[0])
    rows, _ = read_rows(path)
    plot(rows, path.parent / "lm.png")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
