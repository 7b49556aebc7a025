"""Structured pruning that makes models faster: ResNet56 and VGG16 (CIFAR shapes) with whole channels removed
(``lc.ChannelPruning`` by FLOPs, the budget allocated across layers by the exact C step, then
``lc.export(..., channels=True)``) against the dense model exported the same way, at batch 1 and 256.

    python -m benchmarks.structured_speed                    # both models, ~2.5x fewer multiply-adds, threads=1
    python -m benchmarks.structured_speed --models resnet56 --reduction 2.5 --repeats 10

Random weights (kaiming, as trained networks start; timing does not depend on the values, the allocation does),
states by direct compression; ``keep`` is found by bisection so that the exported model's multiply-adds are the
dense model's / ``--reduction``. The two models of a network are timed round-robin in one ``lc.measure.timings``
call; the speedup is against the dense export of the same run. Target: at batch 256, a speedup of at least 80 % of
the multiply-add reduction.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

import lc
from tasks.models import CifarResNet, VGG16

MODELS = {"resnet56": lambda: CifarResNet(56), "vgg16": VGG16}
REPEATS = {"resnet56": 8, "vgg16": 5}


def pruned(model, x, reduction: float) -> tuple[torch.nn.Module, float, float]:
    """The exported model with about 1/reduction of the dense multiply-adds, and the keep fraction it took."""
    dense = lc.measure.flops(model, x[:1])
    lo, hi, best = 0.0, 1.0, None
    for _ in range(14):                                      # bisection on keep: exported FLOPs fall with keep
        keep = (lo + hi) / 2
        c = lc.Compressed.direct(model, lc.channel_tasks(model, lc.ChannelPruning(keep=keep, cost="flops"), x),
                                 example_input=x)
        out = lc.export(model, c, channels=True, example=x)
        ratio = dense / lc.measure.flops(out, x[:1])
        if ratio >= reduction:
            lo, best = keep, (out, keep, ratio)
        else:
            hi = keep
    return best


def run(name: str, reduction: float, repeats: int, threads: int) -> dict:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.randn(2, 3, 32, 32)
    small, keep, ratio = pruned(model, x, reduction)
    dense = lc.export(model, lc.Compressed.none())
    t = lc.measure.timings({"dense": dense, "pruned": small}, (3, 32, 32), (1, 256), repeats=repeats,
                           threads=threads)
    row = {"model": name, "keep_cost_fraction": keep, "flops_dense": lc.measure.flops(dense, x[:1]),
           "flops_pruned": lc.measure.flops(small, x[:1]), "flops_reduction": ratio,
           "params_dense": lc.measure.parameter_count(dense), "params_pruned": lc.measure.parameter_count(small)}
    for b in (1, 256):
        row[f"b{b}_dense_ms"], row[f"b{b}_pruned_ms"] = 1e3 * t["dense"][b].wall, 1e3 * t["pruned"][b].wall
        row[f"b{b}_speedup"] = t["dense"][b].wall / t["pruned"][b].wall
        row[f"b{b}_share_of_flops_reduction"] = row[f"b{b}_speedup"] / ratio
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--reduction", type=float, default=2.5, help="target dense/pruned multiply-adds")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/benchmarks/structured_speed")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    rows = []
    for name in args.models:
        r = run(name, args.reduction, args.repeats or REPEATS[name], args.threads)
        rows.append(r)
        print(f"{name}: FLOPs {r['flops_dense'] / 1e6:.1f}M → {r['flops_pruned'] / 1e6:.1f}M "
              f"({r['flops_reduction']:.2f}x), params {r['params_dense']} → {r['params_pruned']}; "
              f"batch 1 {r['b1_dense_ms']:.2f} → {r['b1_pruned_ms']:.2f} ms ({r['b1_speedup']:.2f}x, "
              f"{100 * r['b1_share_of_flops_reduction']:.0f}% of the FLOPs reduction); batch 256 "
              f"{r['b256_dense_ms']:.0f} → {r['b256_pruned_ms']:.0f} ms ({r['b256_speedup']:.2f}x, "
              f"{100 * r['b256_share_of_flops_reduction']:.0f}%)", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    lc._io.write_text_atomic(Path(args.out) / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
