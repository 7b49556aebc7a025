"""The classifier adapter's L step under torch.distributed: torchrun with 2 gloo processes on the CPU runs one LC
run end to end; the ranks hold the same Θ and rank 0 alone writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(tmp_path, out: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "experiments.ddp_classifier", "--steps", "3", "--ref-epochs", "3",
                           "--family", "quantization", "--value", "4", "--out", str(tmp_path / out),
                           "--cache-dir", str(tmp_path / "cache")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_two_ranks_run_the_adapter_with_the_same_theta(tmp_path):
    out, r = "out", _torchrun(tmp_path, "out")
    if r.returncode != 0 and "terminate called without an active exception" in r.stderr:
        # a rank aborted in C++ at teardown, after its run: seen once in a fresh clone's full suite under load (as in
        # tests/lc/test_distributed.py); the ranks now meet at a barrier first. Once more in a fresh --out; a second
        # abort fails
        out, r = "out2", _torchrun(tmp_path, "out2")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    row = json.loads((tmp_path / out / "row.json").read_text())
    assert row["world"] == 2 and row["same_theta_on_every_rank"] and row["ratio"] > 5
    assert sorted(os.listdir(tmp_path / out / "checkpoint")) == ["lc_checkpoint.pt"]
