"""Dense vs exported compressed models on LeNet300 and ResNet20 (CIFAR shape): latency ratios measured in one run,
FLOPs ratios, and artifact sizes against nominal.

    python -m benchmarks.export_speed                 # both models, threads=1
    python -m benchmarks.export_speed --models lenet300 --repeats 500

Random weights and inputs (timing does not depend on the values); each compression's states come from direct
compression Θ = Π(w) without training. "dense exported" is the uncompressed model through ``lc.export`` (batch
norms folded, channels-last convs): it separates what export gains on its own from what compression gains.
Unmarked rows are the export measured on an example batch (``lc.export(..., micro_batch="measure", example=x)``:
it times slicing the batch and keeps slices only where measured faster); rows marked "mb 64" always run
the batch in slices of 64 examples (``micro_batch=64``), rows marked "whole" never slice (``micro_batch=None``);
each is compared ("vs dense exported") with the dense export made the same way. Compressions: low rank at ~4×
fewer FLOPs (per layer r = ⌊mn / 4(m+n)⌋ on the layer's matrix), ℓ0 pruning keeping 5% of every layer,
adaptive quantization with k = 4 per layer.

The machine is shared with other work while this runs: every latency is the median over ``--repeats`` forward
passes at a fixed number of threads, and the models of one network are timed round-robin (dense, low rank,
pruned, quantized, dense, …), so that load from other processes affects them alike; only ratios against the dense
model of the same run are printed.
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import lc
from lc import measure
from lc.export import MicroBatched
from lc.storage import size_bound


# --------------------------------------------------------------------------------------------- architectures
def lenet300() -> nn.Module:
    """LeNet300: 784-300-100-10 with ReLU (LeCun et al. 1998)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin                 # option A shortcut: subsample and zero-pad the channels

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.pad == 0 else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(y + s)


class ResNet20(nn.Module):
    """ResNet20 for 32×32 CIFAR images (He et al. 2016): 3 stages of 3 basic blocks, 16/32/64 channels."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for j in range(3):
                blocks.append(_Block(cin, cout, stride if j == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS = {"lenet300": (lenet300, (1, 28, 28)), "resnet20": (ResNet20, (3, 32, 32))}
REPEATS = {"lenet300": 200, "resnet20": 10}          # default forward passes timed per model and batch size


# --------------------------------------------------------------------------------------------- compressions
def _layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def low_rank_tasks(model, scheme: int):
    """Rank ⌊mn / 4(m+n)⌋ on each layer's matrix (conv kernels by ``scheme``), skipping layers with 3 input
    channels (the first conv), where a factorisation saves nothing worth having."""
    tasks = {}
    for name, m in _layers(model):
        view = lc.AsIs(scheme=scheme) if isinstance(m, nn.Conv2d) else lc.AsIs()
        rows, cols = view.shape([m.weight.shape])
        r = rows * cols // (4 * (rows + cols))
        if r >= 1 and m.weight.shape[1] > 3:
            tasks[lc.Param(f"{name}.weight")] = (view, lc.LowRank(target_rank=r))
    return tasks


def pruning_tasks(model, density=0.05):
    return {lc.Param(f"{n}.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=max(1, round(density *
                                                                                          m.weight.numel()))))
            for n, m in _layers(model)}


def quantization_tasks(model, k=4):
    return {lc.Param(f"{n}.weight"): (lc.AsVector, lc.AdaptiveQuantization(k=k)) for n, _ in _layers(model)}


def run(name: str, repeats: int, threads: int, batch: int, scheme: int, micro: int, directory: Path) -> list[dict]:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    dense = build().eval()
    runs = {"low rank": low_rank_tasks(dense, scheme), "pruned 5%": pruning_tasks(dense),
            "quantized k=4": quantization_tasks(dense)}
    x1 = torch.zeros((1, *shape))
    example = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(1))
    nothing = lc.Compressed((), ())
    variants = {"": {"example": example, "micro_batch": "measure"}, f", mb {micro}": {"micro_batch": micro}, ", whole": {"micro_batch": None}}
    models, rows, chosen = {"dense": dense}, [], {}
    for suffix, kw in variants.items():
        models["dense exported" + suffix] = lc.export(dense, nothing, **kw)
        rows.append({"compression": "dense exported" + suffix, "flops_ratio": 1.0,
                     "baseline": "dense exported" + suffix})
    for label, tasks in runs.items():
        compressed = lc.Compressed.direct(dense, tasks)
        path = directory / f"{name}-{label.replace(' ', '_')}.lc"
        realised = lc.save(path, dense, compressed, overwrite=True)
        models[label] = lc.export(dense, compressed, batch_size=batch, example=example)
        row = {"compression": label, "realised_bytes": realised, "baseline": "dense exported",
               "nominal_bytes": lc.nominal_bits(dense, compressed) / 8, "bound_bytes": size_bound(dense, compressed),
               "flops_ratio": measure.flops(dense, x1) / measure.flops(models[label], x1)}
        rows.append(row)
        if label == "low rank":
            for suffix, kw in list(variants.items())[1:]:
                models[label + suffix] = lc.export(dense, compressed, batch_size=batch, **kw)
                rows.append({**row, "compression": label + suffix, "baseline": "dense exported" + suffix})
    for label in ["dense exported", *runs]:
        m = models[label]
        chosen[label] = f"slices of {m.size}" if isinstance(m, MicroBatched) and m.size else "whole batch"
    t = measure.timings(models, shape, (1, batch), repeats=repeats, threads=threads)
    for row in rows:
        mine = t[row["compression"]]
        row.update({f"cpu_b{b}": t["dense"][b].cpu / mine[b].cpu for b in (1, batch)})
        row.update({f"wall_b{b}": t["dense"][b].wall / mine[b].wall for b in (1, batch)})
        row["vs_export"] = t[row["baseline"]][batch].cpu / mine[batch].cpu
    d = t["dense"]
    dense_bytes = sum(v.numel() * v.element_size() for v in dense.state_dict().values())
    print(f"\n{name}: dense {measure.parameter_count(dense)} parameters, {measure.flops(dense, x1)} multiply-adds "
          f"per sample, {dense_bytes} B as float32. Dense per forward (measured, threads={threads}): batch 1 "
          f"{1e3 * d[1].cpu:.2f} ms CPU / {1e3 * d[1].wall:.2f} ms wall; batch {batch} {1e3 * d[batch].cpu:.1f} ms "
          f"CPU / {1e3 * d[batch].wall:.1f} ms wall")
    print(f"{'':<22}{'FLOPs':>7} | {'speedup vs dense (CPU time)':^30} | {'(wall)':^15} | {'vs dense':>8} | "
          f"{'artifact bytes':^36}")
    print(f"{'compression':<22}{'ratio':>7} | {'b1':>7}{f'b{batch}':>8}{f'b{batch}/FLOPs':>15} | {'b1':>7}"
          f"{f'b{batch}':>8} | {'exported':>8} | {'realised':>9}{'nominal':>9}{'real/nom':>9}{'bound':>9}")
    for r in rows:
        sizes = (f"{r['realised_bytes']:>9}{math.ceil(r['nominal_bytes']):>9}"
                 f"{r['realised_bytes'] / r['nominal_bytes']:>9.4f}{r['bound_bytes']:>9}" if "realised_bytes" in r
                 else "")
        print(f"{r['compression']:<22}{r['flops_ratio']:>7.2f} | {r['cpu_b1']:>7.2f}{r[f'cpu_b{batch}']:>8.2f}"
              f"{r[f'cpu_b{batch}'] / r['flops_ratio']:>15.2f} | {r['wall_b1']:>7.2f}{r[f'wall_b{batch}']:>8.2f} | "
              f"{r['vs_export']:>8.2f} | {sizes}")
    print("measured export (micro_batch='measure' on the example batch) chose: "
          + "; ".join(f"{k}: {v}" for k, v in chosen.items()))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed forward passes per model and batch size (default: {REPEATS})")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads while timing")
    p.add_argument("--batch", type=int, default=256, help="the large batch size")
    p.add_argument("--scheme", type=int, default=2, choices=(1, 2), help="conv view of the low-rank run")
    p.add_argument("--micro-batch", type=int, default=64, help="slice size of the micro-batched exports ('mb')")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"Median of {args.repeats or REPEATS} forward passes after warm-up, threads={args.threads}, models timed round-robin "
          "on a CPU shared with other work; speedups are dense / compressed measured in this run, from CPU time "
          "(steady) and wall time (latency, includes waiting for a core). 'vs dense exported': against the dense "
          "model through the same export (batch norms folded, channels-last), i.e. the gain due to compression.")
    with tempfile.TemporaryDirectory() as d:
        for name in args.models:
            run(name, args.repeats or REPEATS[name], args.threads, args.batch, args.scheme, args.micro_batch, Path(d))


if __name__ == "__main__":
    main()
