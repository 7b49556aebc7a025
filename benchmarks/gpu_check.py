"""The GPU check: every C step, the loop, export and storage on CUDA tensors, against the CPU, and the C steps timed
at 25M weights on the GPU as ratios to torch.sort (and torch.linalg.svd) of the same data on the same device.

    python -m benchmarks.gpu_check --out /tmp/gpu               # on a machine with a GPU (one command, ~5 min)
    python -m benchmarks.gpu_check --device cpu --n 1000000     # a dry run of the same code here

Checks (each a line ``ok`` or ``FAIL …``; the exit status is the number of failures):
1. every compression of the conformance registry: Θ computed on the device from the same float32 input as on the
   CPU: Δ on the device, of the input's dtype, equal to the CPU's within float tolerance (or, where the answer
   is a discrete choice that float sums can tip, feasible and no worse than the CPU's by 1e-5 relative);
2. an LC run on the device (an MLP on synthetic data, pruning + codebook + low rank + channel tasks): every state
   and Δ on the device, the model left there, a resumed run giving the same Θ;
3. lc.save / lc.load of the device model, lc.export of it on the device (outputs equal);
4. timings at ``--n`` weights (one √N×√N tensor; low rank on the same matrix): C step / torch.sort, on the device
   and on the CPU, and each C step's device time against its CPU time.
Rows go to ``--out``/gpu_check.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import lc
from tests.lc.compression.cases import CASES


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(f, device, repeats=3):
    f()
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def check_cases(device, report) -> None:
    for case in CASES:
        g = torch.Generator().manual_seed(1)
        w = torch.randn(case.shape, generator=g)
        c = case.compression
        try:
            cpu = c.decompress(c.compress(w, case.mu))
            state = c.compress(w.to(device), case.mu)
            dev = c.decompress(state)
            on = all(t.device.type == device.type for t in state.tensors.values())
            ok = dev.device.type == device.type and dev.dtype == w.dtype and on
            same = torch.allclose(dev.cpu(), cpu, rtol=1e-5, atol=1e-6)
            if not same:                                 # a discrete choice tipped by float sums: compare quality
                e_dev, e_cpu = float(((w - dev.cpu()) ** 2).sum()), float(((w - cpu) ** 2).sum())
                same = case.feasible(dev.cpu()) and e_dev <= e_cpu * (1 + 1e-5) + 1e-9
            report(f"C step {case.id} on {device}", ok and same,
                   f"device of Δ {dev.device}, states on device {on}, equal to CPU {same}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the check
            report(f"C step {case.id} on {device}", False, f"{type(e).__name__}: {e}")


def check_loop(device, report, workdir: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(512, 20, device=device), torch.randint(0, 5, (512,), device=device)

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)).to(device)

    def tasks(net):
        return {lc.Param("0.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=100)),
                lc.Param("2.weight"): (lc.AsIs, lc.LowRank(target_rank=4)),
                lc.Param("4.weight"): [(lc.AsVector, lc.AdaptiveQuantization(k=4)),
                                       (lc.AsVector, lc.ConstraintL0Pruning(kappa=8))]}

    def l_step(model, pen, j):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(20):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            pen.step(opt)

    def error(model):
        with torch.no_grad():
            return float((model(x).argmax(1) != y).float().mean())

    try:
        net = make()
        alg = lc.Algorithm(net, tasks(net), lc.geometric_mu(1e-2, 2.0, 5), l_step, error,
                           checkpoint_dir=workdir / "ck")
        alg.run()
        states_on = all(t.device.type == device.type for s in alg.states for t in _tensors(s))
        model_on = all(p.device.type == device.type for p in net.parameters())
        report(f"LC run on {device}", states_on and model_on, f"states on device {states_on}, model {model_on}, "
               f"error {alg.history[-1].evaluation:.3f}")
        again = make()
        resumed = lc.Algorithm(again, tasks(again), lc.geometric_mu(1e-2, 2.0, 5), l_step, error,
                               checkpoint_dir=workdir / "ck")
        resumed.run()
        same = all(torch.equal(a, b) for s, t in zip(alg.states, resumed.states)
                   for a, b in zip(_tensors(s), _tensors(t)))
        report(f"resume on {device}", same, "a finished run loaded from its checkpoint has the same Θ")
        path = workdir / "net.lc"
        lc.save(path, net, alg, overwrite=True)
        fresh = make()
        lc.load(path, fresh)
        equal = all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))
        report(f"save/load on {device}", equal, "Δ(Θ) restored bit for bit on the device")
        exported = lc.export(net, alg)
        with torch.no_grad():
            close = torch.allclose(exported(x), net(x), rtol=1e-4, atol=1e-5)
        report(f"export on {device}", close and next(exported.parameters()).device.type == device.type,
               "the exported model on the device, the same outputs")
    except Exception as e:  # noqa: BLE001
        report(f"LC run on {device}", False, f"{type(e).__name__}: {e}")


def _tensors(state):
    return [*state.tensors.values(), *[t for p in state.parts for t in _tensors(p)]]


STEPS = {"AdaptiveQuantization k=16": lambda: lc.AdaptiveQuantization(k=16),
         "AdaptiveQuantization k=256": lambda: lc.AdaptiveQuantization(k=256),
         "ConstraintL0Pruning 5%": None, "ConstraintL1Pruning": None,
         "ScaledTernaryQuantization": lambda: lc.ScaledTernaryQuantization(),
         "AffineQuantization 8 bits": lambda: lc.AffineQuantization(bits=8)}


def timings(device, n: int, report) -> list[dict]:
    side = int(math.isqrt(n))
    rows = []
    for dev in (device, torch.device("cpu")) if device.type != "cpu" else (device,):
        w = torch.randn(side, side, generator=torch.Generator().manual_seed(0)).to(dev)
        floor = timed(lambda: torch.sort(w.reshape(-1)), dev)
        for name, make in STEPS.items():
            c = make() if make else (lc.ConstraintL0Pruning(kappa=n // 20) if "L0" in name
                                     else lc.ConstraintL1Pruning(kappa=float(w.abs().sum()) / 10))
            try:
                t = timed(lambda: c.compress(w.reshape(-1), 1.0), dev, repeats=2)
                rows.append({"device": str(dev), "step": name, "n": side * side, "seconds": t, "vs_sort": t / floor})
            except Exception as e:  # noqa: BLE001
                report(f"timing {name} on {dev}", False, f"{type(e).__name__}: {e}")
        svd = timed(lambda: torch.linalg.svd(w, full_matrices=False), dev, repeats=1)
        low = timed(lambda: lc.LowRank(target_rank=side // 8).compress(w, 1.0), dev, repeats=1)
        rows.append({"device": str(dev), "step": "LowRank r=√N/8", "n": side * side, "seconds": low,
                     "vs_svd": low / svd})
        rows.append({"device": str(dev), "step": "torch.sort (floor)", "n": side * side, "seconds": floor})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", type=int, default=25_000_000, help="weights of the timed tensor")
    ap.add_argument("--out", default="results/benchmarks/gpu_check")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu for a dry run")
        return 1
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}", flush=True)
    results, failures = [], []

    def report(what, ok, detail=""):
        results.append({"check": what, "ok": bool(ok), "detail": detail})
        if not ok:
            failures.append(what)
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}", flush=True)

    with tempfile.TemporaryDirectory() as d:
        check_cases(device, report)
        check_loop(device, report, Path(d))
    rows = timings(device, args.n, report)
    for r in rows:
        ratio = f"{r['vs_sort']:.2f}x sort" if "vs_sort" in r else (f"{r['vs_svd']:.2f}x svd" if "vs_svd" in r else "")
        print(f"{r['device']:6s} {r['step']:28s} {r['seconds']:8.3f} s  {ratio}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps({"checks": results, "timings": rows}, indent=1))
    print(f"{len(failures)} failures of {len(results)} checks")
    return len(failures)


if __name__ == "__main__":
    sys.exit(main())
