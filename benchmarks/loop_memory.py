"""What the LC loop holds beyond the model and the user's L step, as a multiple of the model's bytes.

    python -m benchmarks.loop_memory                       # 1M, 10M, 25M parameters, with and without checkpoints
    python -m benchmarks.loop_memory --params 10000000 --compression prune

The model is ``--layers`` square linear layers (float32, no bias) of ``--params`` parameters in all, each its own
task (``kmeans``: ``AdaptiveQuantization(16)``; ``prune``: ``ConstraintL0Pruning`` to 5%). The L step is one cheap
pass that allocates nothing (``lc_penalty.prox_``: an in-place step of every weight towards its target), and the
evaluation reads the model once, so what the run adds over the model is the loop's own: λ, the targets, the C
steps' inputs and work space, the evaluation, the checkpoint. Each run (the direct compression and ``--steps`` LC
steps) is in a fresh process; its peak RSS, sampled by ``lc.measure.workload``, less the RSS before ``lc.Algorithm``
is built (the model already there) is printed in bytes and as a multiple of the model's bytes, with the size of the
checkpoint file against the model's.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import lc


def model_of(params: int, layers: int) -> torch.nn.Module:
    side = math.isqrt(params // layers)
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Linear(side, side, bias=False) for _ in range(layers)])
    with torch.no_grad():
        for m in net:
            m.weight.copy_(torch.randn(side, side, generator=g) * 0.05)
    return net


def measure_one(params: int, layers: int, compression: str, steps: int, checkpoint: bool) -> dict:
    torch.set_num_threads(1)
    net = model_of(params, layers)
    model_bytes = sum(p.numel() * p.element_size() for p in net.parameters())

    def task(p):
        n = p.numel()
        return (lc.AsVector, lc.AdaptiveQuantization(16) if compression == "kmeans"
                else lc.ConstraintL0Pruning(round(0.05 * n)))

    def l_step(model, lc_penalty, j):
        lc_penalty.prox_(0.5)                                   # w ← w + f (target − w), in place

    def evaluate(model):
        return float(sum(p.detach().abs().sum() for p in model.parameters()))

    with tempfile.TemporaryDirectory() as d:
        def run():
            algorithm = lc.Algorithm(net, {lc.Param(m.weight): task(m.weight) for m in net},
                                     lc.geometric_mu(1e-3, 1.5, steps), l_step, evaluate,
                                     checkpoint_dir=d if checkpoint else None)
            algorithm.run()
        usage = lc.measure.workload(run)
        ck = Path(d) / "lc_checkpoint.pt"
        ck_bytes = ck.stat().st_size if ck.exists() else 0
    return {"params": sum(p.numel() for p in net.parameters()), "compression": compression,
            "checkpoint": checkpoint, "model_bytes": model_bytes, "extra_rss": usage.rss_increase_bytes,
            "checkpoint_bytes": ck_bytes, "cpu_s": usage.cpu_s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=int, nargs="+", default=[1_000_000, 10_000_000, 25_000_000])
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--compression", choices=["kmeans", "prune"], nargs="+", default=["kmeans", "prune"])
    ap.add_argument("--steps", type=int, default=3, help="LC steps after the direct compression")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(*json.loads(args.child))))
        return
    load = os.getloadavg()
    print(f"1 torch thread; {args.layers} layers, {args.steps} LC steps; load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} on {os.cpu_count()} cores")
    print(f"{'params':>10} {'compression':>11} {'checkpoint':>10} | {'model MB':>8} {'extra MB':>8} "
          f"{'× model':>7} | {'ckpt × model':>12}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for params in args.params:
        for compression in args.compression:
            for checkpoint in (False, True):
                cfg = json.dumps([params, args.layers, compression, args.steps, checkpoint])
                out = subprocess.run([sys.executable, "-m", "benchmarks.loop_memory", "--child", cfg],
                                     capture_output=True, text=True, env=env)
                if out.returncode:
                    print(f"{params:>10} {compression:>11} {str(checkpoint):>10} | failed: "
                          f"{(out.stderr.strip().splitlines() or ['?'])[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                mb = r["model_bytes"]
                ck = f"{r['checkpoint_bytes'] / mb:.2f}" if checkpoint else "-"
                print(f"{r['params']:>10} {compression:>11} {str(checkpoint):>10} | {mb / 2**20:>8.1f} "
                      f"{r['extra_rss'] / 2**20:>8.1f} {r['extra_rss'] / mb:>7.2f} | {ck:>12}", flush=True)


if __name__ == "__main__":
    main()
