"""A shared --out: two processes on one output directory do every run once (defect 3 of issue 15); a partial last
line of rows.jsonl does not block resuming; the claim of a dead process is taken over, a live one's is not."""
import csv
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import runs, sweep, tradeoff
from experiments.runs import RunStore, read_rows
from experiments.schemes import family
from tasks.classification import Classification, TaskConfig

ROOT = Path(__file__).resolve().parents[2]
TASK = TaskConfig(ref_epochs=2, epochs_per_step=1)
TINY = ["--families", "pruning", "--steps", "1", "--ref-epochs", "2", "--epochs-per-step", "1", "--no-progress",
        "--no-latency"]


def _argv(tmp_path, values):
    return [*TINY, "--values", f"pruning={values}", "--out", str(tmp_path / "out"), "--cache-dir",
            str(tmp_path / "cache")]


def _ids(out: Path) -> tuple[list[str], list[str]]:
    jsonl = [json.loads(line)["run_id"] for line in (out / "rows.jsonl").read_text().splitlines()]
    table = [r["run_id"] for r in csv.DictReader(open(out / "rows.csv"))]
    return jsonl, table


def _run_id(tmp_path, value) -> str:
    config = tradeoff.load_config(_argv(tmp_path, value))
    return sweep._run_id(config.fields(Classification(TASK)), family("pruning"), value, config.mu0)


def test_two_processes_on_one_out_do_every_run_once(tmp_path):
    Classification(TASK).reference(cache_dir=tmp_path / "cache")          # trained once, before both start
    values = "0.05,0.1,0.2,0.3"
    cmd = [sys.executable, "-m", "experiments.tradeoff", *_argv(tmp_path, values)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    jsonl, table = _ids(tmp_path / "out")
    expected = {_run_id(tmp_path, v) for v in (0.05, 0.1, 0.2, 0.3)}
    assert sorted(jsonl) == sorted(expected) and sorted(table) == sorted(expected)     # each exactly once
    assert not list((tmp_path / "out" / "claims").iterdir())                         # every claim released


def test_a_partial_last_line_is_dropped_and_that_run_redone(tmp_path, caplog):
    rows = tradeoff.run_sweep(tradeoff.load_config(_argv(tmp_path, "0.05,0.2")))
    jsonl = tmp_path / "out" / "rows.jsonl"
    text = jsonl.read_text()
    jsonl.write_text(text[:len(text) - 40])                     # the second row's append was interrupted
    assert read_rows(jsonl) == (rows[:1], len(text.splitlines()[0]) + 1)
    with caplog.at_level(logging.WARNING, logger="experiments.runs"):
        again = tradeoff.run_sweep(tradeoff.load_config(_argv(tmp_path, "0.05,0.2")))
    assert "partial last line" in caplog.text
    assert [r["run_id"] for r in again] == [r["run_id"] for r in rows]
    assert again[1]["test_error"] == rows[1]["test_error"]     # the same run, done again
    jsonl_ids, table = _ids(tmp_path / "out")
    assert jsonl_ids == table == [r["run_id"] for r in rows]


def test_a_malformed_line_before_the_last_is_an_error(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"run_id": "a"}\n{"run_\n{"run_id": "b"}\n')
    with pytest.raises(Exception, match="line 2 is not a JSON object"):
        read_rows(tmp_path / "rows.jsonl")


def test_the_claim_of_a_dead_process_is_taken_over_and_a_live_ones_skipped(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claims = tmp_path / "out" / "claims"
        claims.mkdir(parents=True)
        host = socket.gethostname()
        (claims / _run_id(tmp_path, 0.05)).write_text(json.dumps({"pid": dead_pid, "host": host}))
        (claims / _run_id(tmp_path, 0.2)).write_text(json.dumps({"pid": live.pid, "host": host}))
        rows = tradeoff.run_sweep(tradeoff.load_config(_argv(tmp_path, "0.05,0.2")))
    finally:
        live.kill()
        live.wait()
    assert [r["value"] for r in rows] == [0.05]                 # taken over; the live process's run is left to it
    assert not (claims / _run_id(tmp_path, 0.05)).exists() and (claims / _run_id(tmp_path, 0.2)).exists()
    rows = tradeoff.run_sweep(tradeoff.load_config(_argv(tmp_path, "0.05,0.2")))    # now dead: taken over
    assert [r["value"] for r in rows] == [0.05, 0.2]


def test_a_claim_of_another_host_is_left_alone_while_its_heartbeat_goes_on(tmp_path):
    store = RunStore(tmp_path, {"a": 1})
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "r1").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    assert not store.claim("r1") and store.claim("r2") and store.claim("r2")     # a claim of ours is ours
    store.add({"run_id": "r2"})
    assert not store.claim("r2") and store.done() == {"r2"}
    old = time.time() - runs.STALE - 5                  # that host's process stopped touching its claim: gone
    os.utime(tmp_path / "claims" / "r1", (old, old))
    assert store.claim("r1")
    assert json.loads((tmp_path / "claims" / "r1").read_text())["host"] == socket.gethostname()


def test_a_held_claim_is_touched_until_it_is_released(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "HEARTBEAT", 0.05)
    store = RunStore(tmp_path, {"a": 1})
    assert store.claim("r1")
    claim = tmp_path / "claims" / "r1"
    os.utime(claim, (0, 0))
    deadline = time.time() + 10
    while claim.stat().st_mtime == 0 and time.time() < deadline:
        time.sleep(0.02)
    assert claim.stat().st_mtime > time.time() - 60              # touched by the heartbeat
    store.add({"run_id": "r1"})
    assert not claim.exists()
    deadline = time.time() + 10
    while store._heart is not None and time.time() < deadline:      # nothing held: the heartbeat stops
        time.sleep(0.02)
    assert store._heart is None


def test_fields_with_tuples_match_what_config_json_reads_back(tmp_path):
    """A task fingerprint holding tuples (hidden sizes) is the same config once written as JSON lists: a second
    store on the same --out resumes instead of refusing it (the PPO and DQN configs have tuple fields)."""
    fields = {"task": {"hidden": (64, 64)}, "steps": 2}
    store = RunStore(tmp_path, fields)
    store.add({"run_id": "a", "x": 1})
    assert [r["run_id"] for r in RunStore(tmp_path, fields).rows()] == ["a"]
    with pytest.raises(Exception, match="different config"):
        RunStore(tmp_path, {"task": {"hidden": (64, 32)}, "steps": 2})
