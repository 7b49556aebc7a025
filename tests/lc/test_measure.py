"""lc.measure: FLOP counts against hand counts, timing and workload numbers against known workloads."""
import time

import pytest
import torch
from torch import nn

import lc
from lc import measure


def test_flops_are_multiply_adds_counted_by_hand():
    model = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.ReLU(), nn.Conv2d(6, 5, 1, stride=2, bias=False),
                          nn.Flatten(), nn.Linear(5 * 3 * 3, 7), nn.BatchNorm1d(7))
    # conv 1: 6×6×6 outputs × (4/2)·3·3; conv 2: 5×3×3 outputs × 6; linear: 7 × 45; batch norm: not counted
    per_sample = 216 * 18 + 45 * 6 + 7 * 45
    assert measure.flops(model, torch.zeros(1, 4, 8, 8)) == per_sample
    assert measure.flops(model, torch.zeros(3, 4, 8, 8)) == 3 * per_sample
    assert model.training                                   # counting does not change the mode
    assert measure.flops(nn.Conv1d(3, 2, 5, padding=2), torch.zeros(1, 3, 10)) == 2 * 10 * 3 * 5


def test_parameter_count():
    assert measure.parameter_count(nn.Sequential(nn.Linear(784, 300), nn.Linear(300, 100))) == 784 * 300 + 300 + \
        300 * 100 + 100


class Sleeper(nn.Module):
    def __init__(self, name, seconds, log):
        super().__init__()
        self.name, self.seconds, self.log = name, seconds, log

    def forward(self, x):
        self.log.append((self.name, x.shape[0], torch.get_num_threads()))
        time.sleep(self.seconds)
        return x


def test_latencies_are_medians_timed_round_robin_at_fixed_threads():
    log = []
    sleeping = measure.timings({"s": Sleeper("s", 0.01, [])}, (2,), (1,), repeats=3, warmup=0)["s"][1]
    assert sleeping.wall >= 0.01 and sleeping.cpu < 0.005          # sleeping takes time but no CPU
    threads = torch.get_num_threads()
    out = measure.latencies({"a": Sleeper("a", 0.004, log), "b": Sleeper("b", 0.0, log)}, (3,), (1, 8),
                            repeats=5, warmup=2, threads=1)
    assert 0.004 <= out["a"][1] < 0.1 and 0.004 <= out["a"][8] < 0.1
    assert out["b"][1] < out["a"][1]
    timed = [name for name, b, _ in log if b == 1][4:]     # after 2 warm-up calls each
    assert timed == ["a", "a", "b", "b"] * 5                 # an untimed pass, then the timed one
    assert {t for _, _, t in log} == {1} and torch.get_num_threads() == threads


def test_workload_measures_cpu_time_and_peak_memory():
    def busy():
        t = time.process_time()
        while time.process_time() - t < 0.2:
            pass
    usage = measure.workload(busy)
    assert usage.cpu_s >= 0.19 and usage.wall_s >= 0.19
    idle = measure.workload(lambda: time.sleep(0.2))
    assert idle.wall_s >= 0.2 and idle.cpu_s < 0.1

    def allocate():
        x = torch.ones(25_000_000)                           # 100 MB, touched
        return float(x[-1])
    mem = measure.workload(allocate)
    assert mem.result == 1.0
    assert 95e6 <= mem.rss_increase_bytes < 400e6
    assert mem.peak_rss_bytes >= mem.rss_increase_bytes


def test_profile_labels_every_number(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2))
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))})
    lc.save(tmp_path / "m.lc", model, c)
    p = measure.profile(lc.export(model, c, sparse="never"), (10,), batch_sizes=(1, 4), repeats=3,
                        artifact=tmp_path / "m.lc", nominal_bits=lc.nominal_bits(model, c))
    assert p.flops == measure.Quantity(80 + 16, "multiply-adds per sample", "nominal")
    assert p.parameters.value == 80 + 8 + 16 + 2
    assert p.artifact_bytes.value == (tmp_path / "m.lc").stat().st_size and p.artifact_bytes.kind == "measured"
    assert p.nominal_bytes.value == lc.nominal_bits(model, c) / 8
    row = p.row()
    assert set(row) == {"parameters (nominal)", "flops (nominal)", "latency_b1_ms (measured)",
                        "latency_b4_ms (measured)", "cpu_b1_ms (measured)", "cpu_b4_ms (measured)",
                        "artifact_bytes (measured)", "size_bytes (nominal)"}
    assert all(v > 0 if not k.startswith("cpu") else v >= 0 for k, v in row.items())


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_repeats_are_refused(bad):
    with pytest.raises(lc.CompressionError, match="repeats"):
        measure.latency(nn.Identity(), (2,), (1,), repeats=bad)
