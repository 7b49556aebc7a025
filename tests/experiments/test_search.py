"""The multi-objective search over budgets (issue 21): its front is the Pareto front of its trials in validation
error and ratio, computed here independently; it resumes without running anything twice; it shares one study
between 2 workers; it refuses to choose without validation data, before anything is trained."""
import csv
import json

import pytest

import lc
from experiments import search

optuna = pytest.importorskip("optuna")

TINY = ["--families", "pruning", "quantization", "--values", "pruning=0.02,0.5", "quantization=2,8",
        "--steps", "2", "--ref-epochs", "2", "--epochs-per-step", "1", "--no-progress"]


def _config(tmp_path, *more):
    return search.cli.parse(search.Config, [*TINY, "--out", str(tmp_path / "out"), "--cache-dir",
                                            str(tmp_path / "cache"), *more])


def _rows(out):
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


def _pareto(rows):
    """The rows no other row beats in both validation error (lower) and ratio (higher)."""
    def dominated(r):
        return any(o["validation_error"] <= r["validation_error"] and o["ratio"] >= r["ratio"]
                   and (o["validation_error"], o["ratio"]) != (r["validation_error"], r["ratio"]) for o in rows)
    return {r["run_id"] for r in rows if not dominated(r)}


def test_the_front_is_the_pareto_front_of_the_trials_and_a_rerun_adds_nothing(tmp_path):
    front = search.search(_config(tmp_path, "--trials", "5"))
    out = tmp_path / "out"
    rows = _rows(out)
    assert 1 <= len(rows) <= 5 and all(0 <= r["validation_error"] <= 1 for r in rows)
    assert {r["family"] for r in rows} <= {"pruning", "quantization"}
    assert {r["run_id"] for r in front} == _pareto(rows)
    table = list(csv.DictReader(open(out / "front.csv")))
    assert [t["run_id"] for t in table] == [r["run_id"] for r in front]
    assert (out / "search.png").exists() and (out / "tradeoff.png").exists()
    again = search.search(_config(tmp_path, "--trials", "5"))          # complete: nothing run again
    assert _rows(out) == rows and [r["run_id"] for r in again] == [r["run_id"] for r in front]
    study = search._study(_config(tmp_path))
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 5


def test_two_workers_share_one_study(tmp_path):
    search.search(_config(tmp_path, "--trials", "4", "--workers", "2"))
    study = search._study(_config(tmp_path))
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) >= 4                          # each worker stops once 4 are complete
    ids = [r["run_id"] for r in _rows(tmp_path / "out")]
    assert len(ids) == len(set(ids))                   # no run done twice
    assert {t.user_attrs["run_id"] for t in complete} <= set(ids)


@pytest.mark.parametrize("flags, message", [
    (["--validation", "0"], "chooses on validation data"),
    (["--trials", "0"], "trials=0"),
    (["--values", "pruning=0.5"], "search range of pruning"),
])
def test_bad_settings_are_refused_before_any_training(tmp_path, flags, message):
    with pytest.raises(lc.CompressionError, match=message):
        search.search(_config(tmp_path, *flags))
    assert not (tmp_path / "cache").exists()
