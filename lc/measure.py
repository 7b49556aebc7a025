"""Measurement of compressed models: what a number is, and whether it was measured or is nominal.

- **latency** (measured): median wall time of a forward pass on random inputs, after warm-up, at fixed
  ``torch.set_num_threads(threads)``, for batch 1 and a large batch; and the median CPU time of the same passes
  (steadier on a shared machine, see :class:`Timing`). Several models given together are timed
  round-robin (model A, B, C, A, B, C, …), so that load from other processes hits them alike and ratios between
  them stay meaningful on a shared machine.
- **FLOPs** (nominal, counted): multiply-adds of the ``nn.Linear``, ``nn.Conv1d/2d/3d`` and
  :class:`lc.export.SparseLinear` layers (and the quantized forms of lc.export: int8 and codebook layers), counted by forward hooks on one forward pass (so the count follows the
  graph that actually runs). Biases, norms, activations and pooling are not counted, as usual.
- **parameters** (nominal): stored weight values: the elements of every parameter, plus the nonzeros of sparse
  buffers (an exported CSR layer).
- **artifact size** (measured): bytes of the file written by :func:`lc.save`; **nominal size**: nominal bits / 8.
- **workload** (measured): wall time, CPU time (user + system of this process, all threads, from
  ``resource.getrusage``), and peak resident memory (RSS sampled from ``/proc/self/statm`` every millisecond in a
  background thread; torch's CPU allocations are invisible to ``tracemalloc``, RSS sees them), reported as the
  peak and as the increase over the RSS at the start.
"""
from __future__ import annotations

import math
import os
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ._errors import CompressionError
from ._hooks import forward_with_hooks
from ._memory import release_freed_memory

__all__ = ["Quantity", "Profile", "Timing", "Usage", "flops", "parameter_count", "timings", "time_on", "latencies",
           "latency", "workload", "profile"]


@dataclass(frozen=True)
class Quantity:
    """A number with its unit and how it was obtained: ``kind`` is ``"measured"`` or ``"nominal"``."""

    value: float
    unit: str
    kind: str

    def __str__(self):
        return f"{self.value:g} {self.unit} ({self.kind})"


# --------------------------------------------------------------------------------------------- counting
def _macs(module: nn.Module, inputs, output) -> int:
    from .export._layers import SparseLinear
    from .export.quantized import Int8Linear, Reweighted
    if isinstance(module, Reweighted):                  # the layer it computes, with a weight from elsewhere
        return _macs(module.layer, inputs, output)
    if isinstance(module, (nn.Linear, Int8Linear)):
        return module.in_features * output.numel()
    if isinstance(module, SparseLinear):
        return module.weight.values().numel() * (output.numel() // module.out_features)
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return 0


def flops(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of ``model`` on ``example`` (with its batch dimension)."""
    total = 0

    def count(name, module, args, out):
        nonlocal total
        total += _macs(module, args, out)

    forward_with_hooks(model, example, count)
    return total


def parameter_count(model: nn.Module) -> int:
    """Stored weight values: all parameter elements, plus the nonzeros of sparse buffers."""
    sparse = sum(b.values().numel() for b in model.buffers() if b.layout == torch.sparse_csr)
    return sum(p.numel() for p in model.parameters()) + sparse


# --------------------------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Timing:
    """Median seconds of one forward pass (measured): ``wall`` (elapsed: latency) and ``cpu`` (CPU time of this
    process, all threads). On a machine shared with other work, wall time includes the time the process waited
    for a core and CPU time does not, so CPU-time ratios between models are far steadier (contention for memory
    bandwidth and caches still shows in both)."""

    wall: float
    cpu: float


def timings(models: Mapping[str, nn.Module], input_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 256),
            *, repeats: int = 30, warmup: int = 3, threads: int = 1, seed: int = 0) -> dict[str, dict[int, Timing]]:
    """``{name: {batch: Timing}}``: the models timed round-robin on the same random input of shape
    ``(batch, *input_shape)`` (see :func:`time_on`), with ``threads`` intra-op threads (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = {name: {} for name in models}
    try:
        for b in batch_sizes:
            x = torch.randn((b, *input_shape), generator=torch.Generator().manual_seed(seed))
            for name, t in time_on(models, x, repeats=repeats, warmup=warmup).items():
                out[name][b] = t
    finally:
        torch.set_num_threads(before)
    return out


def time_on(models: Mapping[str, nn.Module], x, *, repeats: int = 30, warmup: int = 3) -> dict[str, Timing]:
    """``{name: Timing}`` of ``model(x)`` for each model (eval mode, no gradients; a tuple ``x`` is passed as
    several arguments), timed round-robin after ``warmup`` passes each, so that load from other processes hits
    all models alike. Each timed pass directly follows an untimed pass of the same model, so that the caches hold
    that model (as when it serves alone)."""
    if not (isinstance(repeats, int) and repeats >= 1) or not (isinstance(warmup, int) and warmup >= 0):
        raise CompressionError(f"timings: repeats={repeats!r} must be an integer ≥ 1 and warmup={warmup!r} ≥ 0")
    args = x if isinstance(x, tuple) else (x,)
    wall, cpu = {name: [] for name in models}, {name: [] for name in models}
    with torch.no_grad():
        for m in models.values():
            m.eval()
            for _ in range(warmup):
                m(*args)
        for _ in range(repeats):
            for name, m in models.items():
                m(*args)                         # untimed: caches hold this model, as when it serves alone
                t, c = time.perf_counter(), time.process_time()
                m(*args)
                cpu[name].append(time.process_time() - c)
                wall[name].append(time.perf_counter() - t)
    return {name: Timing(_median(wall[name]), _median(cpu[name])) for name in models}


def _median(xs: Sequence[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def latencies(models: Mapping[str, nn.Module], input_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 256),
              **kwargs) -> dict[str, dict[int, float]]:
    """Median wall seconds per forward pass, ``{name: {batch: seconds}}`` (see :func:`timings`)."""
    return {n: {b: t.wall for b, t in ts.items()} for n, ts in timings(models, input_shape, batch_sizes,
                                                                        **kwargs).items()}


def latency(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 256),
            **kwargs) -> dict[int, float]:
    """Median seconds per forward pass of one model, ``{batch: seconds}`` (see :func:`latencies`)."""
    return latencies({"model": model}, input_shape, batch_sizes, **kwargs)["model"]


# --------------------------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Usage:
    """What a workload used (all measured)."""

    wall_s: float
    cpu_s: float                 # user + system time of this process, all threads
    peak_rss_bytes: int          # highest resident set size sampled during the workload
    rss_increase_bytes: int      # peak − resident set size at the start
    result: object = field(default=None, repr=False)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def workload(fn: Callable[[], object], *, interval: float = 1e-3) -> Usage:
    """Run ``fn()`` once and measure its wall time, CPU time and peak memory (RSS; Linux ``/proc``). Memory freed
    before is handed back to the system first, so that reusing it does not hide what ``fn`` allocates."""
    release_freed_memory()
    start_rss = _rss()
    peak = [start_rss]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    sampler.start()
    try:
        result = fn()
    finally:
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        done.set()
        sampler.join()
    peak[0] = max(peak[0], _rss())
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return Usage(wall, cpu, peak[0], peak[0] - start_rss, result)


# --------------------------------------------------------------------------------------------- one row
@dataclass(frozen=True)
class Profile:
    """One model's numbers, each labelled. ``row()`` gives flat columns for a CSV/JSON line."""

    parameters: Quantity
    flops: Quantity
    latency: Mapping[int, Quantity]                  # wall time per forward pass, by batch size
    cpu_time: Mapping[int, Quantity]                 # CPU time per forward pass, by batch size
    artifact_bytes: Quantity | None = None
    nominal_bytes: Quantity | None = None

    def row(self) -> dict[str, float]:
        cols = {"parameters (nominal)": self.parameters.value, "flops (nominal)": self.flops.value}
        cols.update({f"latency_b{b}_ms (measured)": q.value for b, q in self.latency.items()})
        cols.update({f"cpu_b{b}_ms (measured)": q.value for b, q in self.cpu_time.items()})
        if self.artifact_bytes is not None:
            cols["artifact_bytes (measured)"] = self.artifact_bytes.value
        if self.nominal_bytes is not None:
            cols["size_bytes (nominal)"] = self.nominal_bytes.value
        return cols


def profile(model: nn.Module, input_shape: Sequence[int], *, batch_sizes: Sequence[int] = (1, 256),
            artifact=None, nominal_bits: int | None = None, **timing) -> Profile:
    """Parameters, FLOPs per sample, latency and CPU time per batch size (``timing``: the keywords of
    :func:`timings`), and (given) the artifact's measured size and the nominal size."""
    seconds = timings({"model": model}, input_shape, batch_sizes, **timing)["model"]
    macs = flops(model, torch.zeros((1, *input_shape)))
    return Profile(parameters=Quantity(parameter_count(model), "values", "nominal"),
                   flops=Quantity(macs, "multiply-adds per sample", "nominal"),
                   latency={b: Quantity(1e3 * t.wall, "ms", "measured") for b, t in seconds.items()},
                   cpu_time={b: Quantity(1e3 * t.cpu, "ms", "measured") for b, t in seconds.items()},
                   artifact_bytes=None if artifact is None else Quantity(os.path.getsize(artifact), "B", "measured"),
                   nominal_bytes=None if nominal_bits is None else Quantity(nominal_bits / 8, "B", "nominal"))
