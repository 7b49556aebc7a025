"""The LC loop under torch.distributed (gloo, 2 processes on the CPU): the same Θ on every rank, the same Θ as one
process with the same global batch, and a kill of every rank resumed to the same Θ."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lc

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world: int, out: Path, checkpoint_dir=None, kill_at=None) -> list[int]:
    """Run the ranks; once more if one of them aborted in C++ ("terminate called without an active exception",
    SIGABRT) — seen once in a full-suite run on a fresh clone and not reproduced in 7 runs of this file alone,
    with and without load; a second abort fails the test."""
    try:
        return _launch_once(world, out, checkpoint_dir, kill_at)
    except _Aborted:
        return _launch_once(world, out, checkpoint_dir, kill_at)


class _Aborted(AssertionError):
    pass


def _launch_once(world: int, out: Path, checkpoint_dir=None, kill_at=None) -> list[int]:
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.lc.ddp_script", str(r), str(world), str(port),
                               str(out / f"rank{r}.pt"), str(checkpoint_dir) if checkpoint_dir else "-",
                               *([str(kill_at)] if kill_at is not None else [])],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(world)]
    codes = []
    for p in procs:
        try:
            output, _ = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a rank hung")
        codes.append(p.returncode)
        if p.returncode == -signal.SIGABRT and b"terminate called" in output:
            for q in procs:
                q.kill()
                q.wait()
            raise _Aborted(output.decode()[-3000:])
        if p.returncode not in (0, 3):
            raise AssertionError(output.decode()[-3000:])
    return codes


def _load(path):
    d = torch.load(path, weights_only=True)
    return [lc.State.from_dict(s) for s in d["states"]], d


def _tensors(state):
    return [*state.tensors.values(), *[t for p in state.parts for t in _tensors(p)]]


def _equal(a, b):
    return all(torch.equal(x, y) for s, t in zip(a, b) for x, y in zip(_tensors(s), _tensors(t)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    (base / "two").mkdir()
    (base / "one").mkdir()
    assert _launch(2, base / "two") == [0, 0]
    assert _launch(1, base / "one") == [0]
    return base


def test_every_rank_holds_the_same_theta(runs):
    (a, da), (b, db) = _load(runs / "two" / "rank0.pt"), _load(runs / "two" / "rank1.pt")
    assert da["distributed"] and db["distributed"]
    assert (da["calls"]["solve"], db["calls"]["solve"]) == (7, 0)        # rank 0 computes Θ, rank 1 receives it
    assert _equal(a, b)
    for k in da["model"]:
        assert torch.equal(da["model"][k], db["model"][k]), k


def test_two_ranks_give_one_process_s_theta_with_the_same_global_batch(runs):
    (a, _), (c, dc) = _load(runs / "two" / "rank0.pt"), _load(runs / "one" / "rank0.pt")
    assert not dc["distributed"]
    for s, t in zip(a, c):                      # the same structure, the values to float summation order
        for x, y in zip(_tensors(s), _tensors(t)):
            if x.dtype.is_floating_point:
                torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
            else:
                assert torch.equal(x, y)


@pytest.mark.parametrize("kill_at", [0, pytest.param(3, marks=pytest.mark.slow)])     # 3: 31 s; 0 covers the resume
def test_a_kill_of_every_rank_resumes_to_the_same_theta(runs, tmp_path, kill_at):
    ck = tmp_path / "ck"
    assert _launch(2, tmp_path, ck, kill_at=kill_at) == [3, 3]
    assert not (tmp_path / "rank0.pt").exists()
    assert _launch(2, tmp_path, ck) == [0, 0]
    (a, _), (b, db) = _load(runs / "two" / "rank0.pt"), _load(tmp_path / "rank1.pt")
    assert _equal(a, b)
    assert db["calls"]["save"] == 0 and _load(tmp_path / "rank0.pt")[1]["calls"]["save"] == 6 - kill_at
    assert sorted(os.listdir(ck)) == ["lc_checkpoint.pt"]          # one writer: one file, no strays
