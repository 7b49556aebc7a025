"""Deployable forms of quantized models, measured: latency, resident weight bytes and the outputs' deviation from
the Δ(Θ) model, for LeNet300, ResNet20 (CIFAR shape) and the LunarLander Q-network (8-64-64-4), at batch 1 and 256.

    python -m benchmarks.deploy                              # every model, threads=1
    python -m benchmarks.deploy --models qnet --repeats 300

Random weights and inputs (timing does not depend on the values); states by direct compression. Forms:

- ``dense``: the uncompressed model through ``lc.export`` (the baseline every ratio is against);
- ``affine8 float``: ``AffineQuantization(8, per_channel=True)`` on every Linear/Conv weight, exported as float Δ(Θ);
- ``affine8 int8``: the same with ``integer="always"`` (every Linear as int8 × int8 → int32; convs stay float);
- ``affine8 int8 measured``: ``integer="measure"`` (int8 only where measured ≥ 10 % faster at batch 256);
- ``codebook4/16 packed``: ``AdaptiveQuantization(k)`` per layer, ``codebooks="packed"`` (2 or 4 bits a weight);
- ``ORT …``: the ONNX file of ``lc.export_onnx`` run by ONNX Runtime (one thread): dense, affine8 (QDQ),
  codebook16 (packed + Gather).

Every latency is the median over ``--repeats`` passes, the forms of one model timed round-robin in one call of
``lc.measure.timings`` (so that load from other processes hits them alike); only ratios to ``dense`` of the same
run are compared. A second table times each Linear layer alone, dense vs int8, at batch 1 and 256.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

import lc
from lc.export import Int8Linear, resident_bytes
from tasks.rl.dqn import mlp

from .export_speed import ResNet20, lenet300

MODELS = {"lenet300": (lenet300, (1, 28, 28)), "resnet20": (ResNet20, (3, 32, 32)),
          "qnet": (lambda: mlp(8, (64, 64), 4), (8,))}
REPEATS = {"lenet300": 200, "resnet20": 10, "qnet": 500}


def _weighted(model):
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


class _Session(nn.Module):
    """An ONNX Runtime session called like a module (numpy in and out: the conversion is part of its time)."""

    def __init__(self, path):
        super().__init__()
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, x):
        return torch.from_numpy(self.session.run(None, {"input": x.numpy()})[0])


def forms(name: str, directory: Path) -> dict:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    layers = _weighted(model)
    affine = lc.Compressed.direct(model, {lc.Param(f"{n}.weight"): (lc.AsIs, lc.AffineQuantization(8, per_channel=True))
                                          for n in layers})
    books = {k: lc.Compressed.direct(model, {lc.Param(f"{n}.weight"): (lc.AsVector, lc.AdaptiveQuantization(k))
                                             for n in layers}) for k in (4, 16)}
    out = {"dense": (lc.export(model, lc.Compressed.none()), lc.Compressed.none()),
           "affine8 float": (lc.export(model, affine), affine),
           "affine8 int8": (lc.export(model, affine, integer="always"), affine),
           "affine8 int8 measured": (lc.export(model, affine, integer="measure", batch_size=256), affine),
           "codebook4 packed": (lc.export(model, books[4], codebooks="packed"), books[4]),
           "codebook16 packed": (lc.export(model, books[16], codebooks="packed"), books[16])}
    try:
        x = torch.randn(2, *shape)
        for label, c in (("ORT dense", lc.Compressed.none()), ("ORT affine8 QDQ", affine),
                         ("ORT codebook16", books[16])):
            path = directory / f"{name}-{label.replace(' ', '_')}.onnx"
            result = lc.export_onnx(model, c, path, x, overwrite=True)
            out[label] = (_Session(path), c, result.file_bytes)
    except lc.CompressionError as e:
        print(f"ONNX forms skipped: {e}")
    return model, out


def run(name: str, repeats: int, threads: int, directory: Path) -> list[dict]:
    model, variants = forms(name, directory)
    shape = MODELS[name][1]
    t = lc.measure.timings({k: v[0] for k, v in variants.items()}, shape, (1, 256), repeats=repeats, threads=threads)
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(5))
    rows = []
    for label, (module, c, *file_bytes) in variants.items():
        with torch.no_grad():
            reference = c.apply(copy.deepcopy(model)).eval()(x)
            deviation = float((module(x) - reference).abs().max() / reference.abs().max())
        int8 = sum(isinstance(m, Int8Linear) for m in module.modules())
        rows.append({"model": name, "form": label, "int8_layers": int8,
                     "resident_bytes": resident_bytes(module) if not label.startswith("ORT") else None,
                     "onnx_bytes": file_bytes[0] if file_bytes else None, "max_rel_deviation": deviation,
                     **{f"b{b}_ms": 1e3 * t[label][b].wall for b in (1, 256)},
                     **{f"b{b}_speedup": t["dense"][b].wall / t[label][b].wall for b in (1, 256)}})
    return rows


def layer_table(threads: int, repeats: int) -> list[dict]:
    """Each Linear layer of the three models alone: dense float32 vs Int8Linear (int8 weights, per-row int8 inputs)."""
    rows = []
    for name, (build, _) in MODELS.items():
        torch.manual_seed(0)
        model = build()
        for n, m in model.named_modules():
            if not isinstance(m, nn.Linear):
                continue
            c = lc.Compressed.direct(nn.Sequential(copy.deepcopy(m)), {lc.Param("0.weight"): (
                lc.AsIs, lc.AffineQuantization(8, per_channel=True))})
            dense = c.apply(nn.Sequential(copy.deepcopy(m))).eval()
            int8 = lc.export(dense, c, integer="always")
            t = lc.measure.timings({"dense": dense, "int8": int8}, (m.in_features,), (1, 256), repeats=repeats,
                                   threads=threads)
            rows.append({"model": name, "layer": n, "shape": f"{m.out_features}x{m.in_features}",
                         **{f"b{b}_speedup": t["dense"][b].wall / t["int8"][b].wall for b in (1, 256)}})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=None, help="timed passes per form and batch (default per model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/benchmarks/deploy")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models:
            rows += run(name, args.repeats or REPEATS[name], args.threads, Path(d))
    print(f"{'model':9s} {'form':24s} {'int8':>4s} {'resident B':>11s} {'onnx B':>9s} {'dev':>8s} "
          f"{'b1 ms':>8s} {'×':>5s} {'b256 ms':>8s} {'×':>5s}")
    for r in rows:
        print(f"{r['model']:9s} {r['form']:24s} {r['int8_layers']:4d} {r['resident_bytes'] or '':>11} "
              f"{r['onnx_bytes'] or '':>9} {r['max_rel_deviation']:8.1e} {r['b1_ms']:8.3f} {r['b1_speedup']:5.2f} "
              f"{r['b256_ms']:8.2f} {r['b256_speedup']:5.2f}")
    layers = layer_table(args.threads, 100)
    print("\nLinear layers alone, int8 vs float32 (speedup, > 1: int8 faster):")
    for r in layers:
        print(f"{r['model']:9s} {r['layer']:8s} {r['shape']:>9s}  batch 1 {r['b1_speedup']:5.2f}  "
              f"batch 256 {r['b256_speedup']:5.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    lc._io.write_text_atomic(out / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows + layers))


if __name__ == "__main__":
    main()
