"""The default main job in full (digits + LeNet300, every family that has landed): a few minutes."""
import pytest

from experiments import tradeoff

pytestmark = pytest.mark.slow


def test_default_sweep_keeps_the_error_close_to_the_reference(tmp_path):
    rows = tradeoff.run_sweep(tradeoff.load_config(["--out", str(tmp_path / "out"), "--cache-dir",
                                                     str(tmp_path / "cache"), "--no-progress"]))
    ran = {r["family"] for r in rows}
    assert ran == set(tradeoff.DEFAULT_FAMILIES)                 # every family's compression exists
    ref = rows[0]["reference_error"]
    assert ref < 0.03
    by = {(r["family"], r["value"]): r for r in rows}
    assert by["pruning", 0.05]["test_error"] <= ref + 0.01 and by["pruning", 0.05]["ratio"] > 14
    if "quantization" in ran:
        assert by["quantization", 4]["test_error"] <= ref + 0.01 and by["quantization", 4]["ratio"] > 12
    for r in rows:
        assert r["test_error"] <= ref + 0.05, r
        assert r["ratio"] > 1 and r["flops"] <= r["reference_flops"]
