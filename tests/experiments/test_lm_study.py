"""The language-model study end to end on a tiny decoder and corpus (seconds): every method runs, rows count every
scale, the rows resume, the summary states the targets, the command line reads the task's fields."""
import json
from pathlib import Path

import pytest
import torch

from experiments import lm
from experiments.lm_report import summary
from tasks.lm import LMConfig


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for i in range(30):
        (root / f"m{i:02d}.py").write_text(("import os\nprint(os.path.join('a', 'b%d'))\n" % i) * 15)
    task = LMConfig(corpus=[str(root)], width=32, depth=1, heads=2, context=16, batch=4, ref_iterations=30,
                    ref_lr=3e-3, iterations=2, eval_tokens=256, calibration=8)
    config = lm.Config(task=task, bits=[2], steps=2, group=16, final_tokens=256,
                       out=str(tmp_path_factory.mktemp("out")), cache_dir=str(tmp_path_factory.mktemp("cache")))
    return config, lm.run(config)


def test_every_method_gives_a_row_with_every_scale_counted(study):
    config, rows = study
    assert sorted((r["method"], str(r["value"])) for r in rows) == sorted(
        (m, str(v)) for m in lm.METHODS for v in config.values(m))
    by = {(r["method"], str(r["value"])): r for r in rows}
    # 32×32 and 32×128 matrices at 2 bits per group of 16: codes + a float32 scale and a 2-bit zero point a group
    rtn = by[("rtn-g", "2")]
    assert rtn["matrix_bits_per_weight"] == pytest.approx(2 + 34 / 16)
    assert by[("rtn-channel", "2")]["matrix_bits_per_weight"] < rtn["matrix_bits_per_weight"]
    kmeans = by[("lc-kmeans", "2")]                    # a 4-entry float32 codebook per matrix, 6 matrices
    assert kmeans["matrix_bits_per_weight"] == pytest.approx(2 + 6 * 4 * 32 / (4 * 32 * 32 + 2 * 32 * 128))
    assert kmeans["lc_steps"] == 2
    assert by[("lc-kmeans-outliers", "2")]["matrix_bits_per_weight"] > kmeans["matrix_bits_per_weight"]
    for r in rows:
        assert r["test_perplexity"] > 1 and r["corpus_sha256"] == rows[0]["corpus_sha256"]
        assert r["bits_per_weight"] > 0 and r["method_time"] >= 0


def test_the_study_resumes_and_the_summary_states_the_targets(study):
    config, rows = study
    again = lm.run(config)                              # nothing left to run
    assert len(again) == len(rows)
    text = summary(rows + [{**r, "value": 3} for r in rows if r["family"] == "quantization"])
    assert "3 bits: LC gap" in text and "2 bits: LC gap" in text and "50% sparsity: LC" in text
    assert (Path(config.out) / "lm.png").stat().st_size > 1000
    assert set(json.loads((Path(config.out) / "files.json").read_text())) == {"train", "validation", "test"}


def test_the_command_line_reads_the_task_and_refuses_unknown_methods():
    config = lm.cli.parse(lm.Config, ["--width", "64", "--methods", "gptq-g", "lc-kmeans", "--bits", "3"])
    assert config.task.width == 64 and config.methods == ["gptq-g", "lc-kmeans"] and config.bits == [3]
    with pytest.raises(lm.lc.CompressionError, match="unknown methods"):
        lm.Config(methods=["gptq"]).check()
    with pytest.raises(lm.lc.CompressionError, match="N:M"):
        lm.Config(sparsity=["half"]).check()
    assert torch.get_num_threads() >= 1
