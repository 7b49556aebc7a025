"""The readable report: the plot keeps the useful range (outliers at the edge, marked), progress is plain lines
where stderr is not a terminal, and the warnings a sweep gives."""
import types

import pytest

import lc
from experiments import plot, progress, sweep


def test_useful_limit_clips_chance_and_far_points_and_leaves_a_tidy_sweep_alone():
    tidy = [1.85, 2.04, 2.78, 1.85, 2.59, 3.33]
    assert plot.useful_limit(tidy, 1.85, higher_is_better=False) is None
    # a point at chance (flagged by its row) and a far one (beyond Q3 + 3 IQR): the axis ends at 3 × the worst other
    values = tidy + [90.4, 25.0]
    assert plot.useful_limit(values, 1.85, higher_is_better=False,
                             flagged=[False] * 6 + [True, False]) == pytest.approx(3 * 3.33)
    # a return (higher is better): the bottom edge, the others' range below the worst of them
    returns = [220.0, 230.0, 210.0, 225.0, -500.0]
    assert plot.useful_limit(returns, 228.0, higher_is_better=True) == pytest.approx(210.0 - 20.0)
    # fewer than four points and nothing flagged: nothing to call an outlier
    assert plot.useful_limit([2.0, 90.0], 1.85, higher_is_better=False) is None


def test_the_plot_draws_both_starts_and_marks_the_clipped_points(tmp_path, monkeypatch):
    rows = [dict(family=f, value=v, ratio=q, test_error=e, reference_error=0.0185, task="t", split="s", start=s,
                 warning="at chance" if e > 0.85 else None)
            for f, v, q, e, s in [("pruning", 0.1, 8, 0.0185, "first"), ("pruning", 0.05, 14, 0.02, "first"),
                                  ("pruning", 0.02, 30, 0.026, "first"), ("rank-alpha", 1e-5, 2, 0.02, "first"),
                                  ("rank-alpha", 1e-4, 60, 0.904, "first"), ("rank-alpha", 1e-5, 2, 0.022, "zero"),
                                  ("rank-alpha", 1e-4, 30, 0.25, "zero")]]
    drawn = {}
    real = plot.save_figure
    monkeypatch.setattr(plot, "save_figure", lambda fig, path: drawn.update(fig=fig) or real(fig, path))
    plot.plot_rows(rows, tmp_path / "p.png")
    ax = drawn["fig"].axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels[:3] == ["pruning", "rank-alpha", "rank-alpha (from μ → 0)"]
    assert ax.get_ylim()[1] == pytest.approx(3 * 2.6) and ax.get_ylim()[0] >= 0
    marked = [t.get_text() for t in ax.texts]
    assert "90.4%" in marked and "25%" in marked                   # the clipped points, with their values
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_the_flops_axis_is_the_dense_over_the_exported_multiply_adds(tmp_path, monkeypatch):
    rows = [dict(family="channels-flops", value=v, ratio=1.2, flops=900, flops_exported=f, reference_flops=1000,
                 test_error=0.02, reference_error=0.0185, task="t", split="s", channels={"fc1": [3, 9]})
            for v, f in [(2, 500), (4, 200)]]
    rows.append(dict(rows[0], family="pruning", flops_exported=1000, flops=100, channels=None))    # the nominal
    assert [plot.flops_reduction(r) for r in rows] == [2.0, 5.0, 10.0]
    drawn = {}
    real = plot.save_figure
    monkeypatch.setattr(plot, "save_figure", lambda fig, path: drawn.update(fig=fig) or real(fig, path))
    plot.plot_rows(rows, tmp_path / "p.png", x="flops")
    ax = drawn["fig"].axes[0]
    assert [list(line.get_xdata()) for line in ax.lines[:2]] == [[2.0, 5.0], [10.0]]
    assert ax.get_xlabel().startswith("FLOPs reduction")
    with pytest.raises(lc.CompressionError, match="choose among ratio, flops"):
        plot.plot_rows(rows, tmp_path / "q.png", x="latency")


def test_progress_without_a_terminal_is_plain_lines(capsys, monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    runs = progress.bar(["a", "b"], desc="runs")
    assert isinstance(runs, progress.Lines)
    for item in runs:
        runs.set_postfix_str(f"family {item}")
    steps = progress.bar(total=3, desc="  steps")
    steps.update(2)
    steps.set_postfix({"error": "0.0185", "ratio": "14.2"})
    steps.close()
    progress.bar(["x"], desc="off", enabled=False).set_postfix_str("nothing")
    assert capsys.readouterr().err == ("runs 1/2: family a\nruns 2/2: family b\n"
                                       "  steps 2/3: error=0.0185 ratio=14.2\n")


def test_a_run_at_chance_or_uncompressed_is_flagged():
    task = types.SimpleNamespace(metric="error", higher_is_better=False, chance=0.85)
    record = lambda ratio, error: lc.StepRecord(3, 1.0, {}, {"error": error}, 0, ratio, 0, 0)  # noqa: E731
    assert sweep._warnings(task, record(14.0, 0.02)) == []
    assert sweep._warnings(task, record(1.01, 0.9)) == ["uncompressed: nominal ratio 1.010 < 1.05",
                                                        "at chance: error 0.9 ≥ 0.85"]
    rl = types.SimpleNamespace(metric="return", higher_is_better=True)          # no chance level: not checked
    assert sweep._warnings(rl, lc.StepRecord(3, 1.0, {}, {"return": -900.0}, 0, 5.0, 0, 0)) == []
