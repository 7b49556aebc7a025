"""A sweep's runs in parallel (issue 21): 2 local workers write the same rows as 1 process; a worker killed in the
middle of a run is replaced and its run resumed, nothing done twice; submitit's local executor as the engine;
bad settings refused before anything is trained."""
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import lc
from experiments import tradeoff

pytest.importorskip("submitit")

VALUES = ["--families", "pruning", "quantization", "--values", "pruning=0.05,0.2", "quantization=2,4"]
TINY = ["--steps", "5", "--ref-epochs", "2", "--epochs-per-step", "1", "--no-progress", "--no-latency"]
COMPARED = ("run_id", "family", "value", "test_error", "test_loss", "ratio", "file_bytes", "chosen")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("one")
    return _rows(tradeoff.run_sweep(tradeoff.load_config([*VALUES, *TINY, "--out", str(out), "--cache-dir",
                                                           str(cache)])))


def _rows(rows):
    return sorted(({k: r[k] for k in COMPARED} for r in rows), key=lambda r: r["run_id"])


def _config(out: Path, cache: Path, *more):
    return tradeoff.load_config([*VALUES, *TINY, "--out", str(out), "--cache-dir", str(cache), *more])


def _once(out: Path) -> list[str]:
    ids = [json.loads(line)["run_id"] for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 4                       # every run once
    assert not list((out / "claims").iterdir())                 # every claim released
    assert not (out / "checkpoints").exists() or not list((out / "checkpoints").iterdir())
    return ids


def test_two_local_workers_write_the_rows_of_one_process(tmp_path, cache, one_process):
    rows = tradeoff.run_sweep(_config(tmp_path / "out", cache, "--workers", "2"))
    assert _rows(rows) == one_process
    _once(tmp_path / "out")
    assert (tmp_path / "out" / "tradeoff.png").exists() and len(list((tmp_path / "out" / "artifacts").iterdir())) == 4


def test_a_worker_killed_in_a_run_is_replaced_and_the_run_resumed(tmp_path, cache, one_process, caplog):
    out = tmp_path / "out"
    killed = []

    def kill_one():                         # SIGKILL the owner of the first run seen with a checkpoint
        deadline = time.time() + 240
        while not killed and time.time() < deadline:
            for ck in (out / "checkpoints").glob("*/lc_checkpoint.pt") if (out / "checkpoints").exists() else ():
                try:
                    pid = json.loads((out / "claims" / ck.parent.name).read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError, KeyError):
                    continue                # finished meanwhile: try the next one
                killed.append((pid, ck.parent.name))
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_one, daemon=True)
    watcher.start()
    with caplog.at_level(logging.WARNING, logger="experiments.parallel"):
        rows = tradeoff.run_sweep(_config(out, cache, "--workers", "2"))
    watcher.join()
    assert killed, "no run was seen in progress"
    assert "was killed (SIGKILL); starting another in its place" in caplog.text
    assert killed[0][1] in _once(out)                           # the killed run was done, once
    assert _rows(rows) == one_process                           # resumed from its checkpoint: the same result


def test_submitit_local_executor_as_the_engine(tmp_path, cache, one_process):
    rows = tradeoff.run_sweep(_config(tmp_path / "out", cache, "--workers", "2", "--engine", "submitit",
                                      "--cluster", "local", "--executor", "timeout_min=10"))
    assert _rows(rows) == one_process
    _once(tmp_path / "out")
    assert list((tmp_path / "out" / "jobs").glob("*_log.out"))  # submitit's job logs


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "workers=0: give at least 1"),
    (["--workers", "2", "--cluster", "slurm"], "settings of engine=submitit"),
    (["--workers", "2", "--engine", "submitit", "--cluster", "pbs"], "choose slurm, local or debug"),
    (["--workers", "2", "--engine", "submitit", "--cluster", "local", "--executor", "no_such_thing=1"],
     "executor parameters"),
])
def test_bad_settings_are_refused_before_any_training(tmp_path, flags, message):
    with pytest.raises(lc.CompressionError, match=message):
        tradeoff.run_sweep(_config(tmp_path / "out", tmp_path / "cache", *flags))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())   # nothing trained


def test_sigterm_to_the_command_stops_its_workers_and_frees_their_claims(tmp_path, cache):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "experiments.tradeoff", *VALUES, *TINY, "--steps", "40", "--epochs-per-step", "4",
           "--workers", "2", "--out", str(out), "--cache-dir", str(cache)]
    proc = subprocess.Popen(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline, owners = time.time() + 120, []
    while time.time() < deadline and not owners:
        for claim in (out / "claims").glob("*") if (out / "claims").exists() else ():
            try:
                owners.append(json.loads(claim.read_text())["pid"])
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    assert owners, "no run was claimed"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert not list((out / "claims").iterdir())                 # given back
    for pid in owners:                                          # and the workers are gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
