"""Peak memory of LC on a GPT decoder against the model's bytes: the user's training alone (AdamW: gradients, two
moments, activations) and a whole LC run (direct compression, L steps with that training, C steps, evaluations), each
in a fresh process, as multiples of the model's float32 bytes.

    python -m benchmarks.lm_memory                                  # 25M and 85M weights, two schemes
    python -m benchmarks.lm_memory --width 512 --depth 8 --schemes weighted-kmeans

The model is random (memory does not depend on what it learned) and the tokens random bytes; a batch of ``--batch``
sequences of 128 tokens, ``--iterations`` AdamW iterations per L step, ``--steps`` LC steps, an evaluation and a
calibration batch of ``--batch`` sequences. Schemes: ``weighted-kmeans`` (a 3-bit weighted codebook per matrix, its
statistics the inputs' mean squares; 8-bit grids for the embeddings) and ``whitened`` (whitened low rank at half the
parameters: the full second-moment matrix of every layer's input is held, in² values a layer).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import torch

import lc
from tasks.gpt import GPT, GPTConfig
from tasks.lm import LanguageModel, LMConfig, matrix_names
from tasks.text import Tokens

SCHEMES = ("weighted-kmeans", "whitened")


def _tasks(net, scheme):
    out = {}
    for n in matrix_names(net):
        if scheme == "weighted-kmeans":
            out[lc.Param(n)] = (lc.AsVector, lc.WeightedAdaptiveQuantization(k=8))
        else:
            m, k = net.get_parameter(n).shape
            out[lc.Param(n)] = (lc.AsIs, lc.WhitenedLowRank(max(1, round(0.5 * m * k / (m + k)))))
    for n in ("tok.weight", "pos.weight"):
        out[lc.Param(n)] = (lc.AsIs, lc.AffineQuantization(8, symmetric=False, per_channel=True))
    return out


def measure_one(width: int, depth: int, scheme: str, what: str, steps: int, iterations: int, batch: int) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8) for n in (200_000, 20_000, 20_000)]
    config = LMConfig(width=width, depth=depth, heads=max(1, width // 64), context=128, batch=batch,
                      iterations=iterations, eval_tokens=128 * batch, calibration=batch)
    net = GPT(GPTConfig(width=width, depth=depth, heads=config.heads))
    task = LanguageModel(config, tokens=Tokens.from_ids(*ids, vocab=256, name="random bytes"), model=net)
    model_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    calib = task.calibration()
    if what == "train":
        def run():
            task.l_step()(net, None, 0)
    else:
        def run():
            lc.Algorithm(net, _tasks(net, scheme), lc.geometric_mu(1e-2, 2.0, steps), task.l_step(), task.evaluate,
                         example_input=calib).run()
    usage = lc.measure.workload(run)
    return {"params": sum(p.numel() for p in net.parameters()), "model_bytes": model_bytes, "what": what,
            "scheme": scheme, "extra_peak_bytes": usage.rss_increase_bytes, "cpu_s": usage.cpu_s}


def _in_process(args: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.lm_memory", "--one", json.dumps(args)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, nargs="+", default=[512, 768])
    p.add_argument("--depth", type=int, nargs="+", default=[8, 12])
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(measure_one(**json.loads(a.one))))
        return 0
    print(f"{'params':>11} {'model MB':>9} {'what':<26} {'extra peak MB':>13} {'× model':>8} {'cpu s':>7}")
    for width, depth in zip(a.width, a.depth):
        runs = [("train", a.schemes[0])] + [("lc", s) for s in a.schemes]
        for what, scheme in runs:
            r = _in_process({"width": width, "depth": depth, "scheme": scheme, "what": what, "steps": a.steps,
                             "iterations": a.iterations, "batch": a.batch})
            label = "training alone (AdamW)" if what == "train" else f"LC run, {scheme}"
            print(f"{r['params']:11,d} {r['model_bytes'] / 2**20:9.1f} {label:<26} "
                  f"{r['extra_peak_bytes'] / 2**20:13.1f} {r['extra_peak_bytes'] / r['model_bytes']:8.2f} "
                  f"{r['cpu_s']:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
