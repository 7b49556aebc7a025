"""Every C step at scale, as a ratio to the floor measured in the same run: ``torch.sort`` of the same N floats
(``torch.linalg.svd`` of the same matrix for low rank).

    python -m benchmarks.cstep_scale                          # N = 1M, 4M, 16M, 25M, every C step (~40 min)
    python -m benchmarks.cstep_scale --n 1000000 4000000 --steps kmeans16 affine8     # a subset

One task over one √N×√N float32 tensor (Gaussian, σ = 0.05), solved through ``lc.Compressed.direct`` (the direct
compression: what the loop's C step runs), with one torch thread. Each measurement runs in a fresh process (so that
memory one step freed and the allocator kept does not hide the next step's), timed by ``lc.measure.workload``: CPU
seconds (user + system) and the extra peak RSS over the RSS before the C step (the weights and the model already
there), printed in bytes per weight. The floor is measured in its own processes before and after the C steps of
each N, and their mean divides the C steps' times. The last column is the growth exponent of each time across the
N measured (least squares of log t on log N; 1 is linear). On a machine shared with other work read the ratios:
CPU time ignores the time a process waited for a core, but not the contention for memory bandwidth.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch

import lc

NS = (1_000_000, 4_000_000, 16_000_000, 25_000_000)
FLOORS = ("sort", "svd")


def _steps(n: int) -> dict:
    """{name: (view, compression, floor)} at N = n (the budgets scale with n)."""
    side = math.isqrt(n)
    kappa = round(0.05 * side * side)
    return {
        "kmeans16": (lc.AsVector, lc.AdaptiveQuantization(16), "sort"),
        "kmeans256": (lc.AsVector, lc.AdaptiveQuantization(256), "sort"),
        "kmeans16_per_channel": (lc.AsIs, lc.AdaptiveQuantization(16, per_channel=True), "sort"),
        "l0_5%": (lc.AsVector, lc.ConstraintL0Pruning(kappa), "sort"),
        "l1_ball": (lc.AsVector, lc.ConstraintL1Pruning(0.05 * 0.04 * side * side), "sort"),   # keeps ≈ 10%
        "penalty_l0": (lc.AsVector, lc.PenaltyL0Pruning(alpha=0.5 * 0.1 ** 2), "sort"),
        "penalty_l1": (lc.AsVector, lc.PenaltyL1Pruning(alpha=0.05), "sort"),
        "binary": (lc.AsVector, lc.BinaryQuantization(), "sort"),
        "scaled_binary": (lc.AsVector, lc.ScaledBinaryQuantization(), "sort"),
        "scaled_ternary": (lc.AsVector, lc.ScaledTernaryQuantization(), "sort"),
        "affine4": (lc.AsVector, lc.AffineQuantization(4), "sort"),
        "affine8": (lc.AsVector, lc.AffineQuantization(8), "sort"),
        "affine8_asym_per_channel": (lc.AsIs, lc.AffineQuantization(8, symmetric=False, per_channel=True), "sort"),
        "pruned_quant_5%_k16": (lc.AsVector, lc.PrunedQuantization(kappa, 16), "sort"),
        "lowrank_r10%": (lc.AsIs, lc.LowRank(max(1, side // 10)), "svd"),
        "rank_selection": (lc.AsIs, lc.RankSelection(alpha=1e-6), "svd"),
    }


def weights(n: int) -> torch.nn.Module:
    side = math.isqrt(n)
    model = torch.nn.Module()
    model.weight = torch.nn.Parameter(torch.randn(side, side, generator=torch.Generator().manual_seed(0)) * 0.05,
                                      requires_grad=False)
    return model


def measure_one(name: str, n: int) -> dict:
    """One measurement in this process: the floor ``name`` or the C step ``name`` at N = n."""
    torch.set_num_threads(1)
    model = weights(n)
    w = model.weight.detach()
    if name == "sort":
        fn = lambda: torch.sort(w.reshape(-1))                                          # noqa: E731
    elif name == "svd":
        fn = lambda: torch.linalg.svd(w, full_matrices=False)                           # noqa: E731
    else:
        view, compression, _ = _steps(n)[name]
        tasks = {lc.Param(model.weight): (view, compression)}
        fn = lambda: lc.Compressed.direct(model, tasks)                                 # noqa: E731
    usage = lc.measure.workload(fn)
    return {"name": name, "n": w.numel(), "cpu_s": usage.cpu_s, "wall_s": usage.wall_s,
            "extra_rss": usage.rss_increase_bytes}


def run_child(name: str, n: int, timeout: float) -> dict:
    """``measure_one`` in a fresh process (one torch thread); a timeout or a failure is recorded as such."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        out = subprocess.run([sys.executable, "-m", "benchmarks.cstep_scale", "--child", name, "--n", str(n)],
                             capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"name": name, "n": n, "error": f"> {timeout:g} s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"name": name, "n": n, "error": last[:60]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def exponent(ns, ts) -> float | None:
    """Least-squares slope of log t on log N (None with fewer than two times)."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts) if t is not None and t > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=list(NS), help="numbers of weights (rounded to a square)")
    ap.add_argument("--steps", nargs="+", default=None, help=f"C steps (default all: {', '.join(_steps(4))})")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed to one measurement")
    ap.add_argument("--out", help="also write every measurement as a JSON line to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(args.child, args.n[0])))
        return
    names = args.steps or list(_steps(4))
    unknown = [s for s in names if s not in _steps(4)]
    if unknown:
        ap.error(f"unknown steps {unknown}; choose from {list(_steps(4))}")
    load = os.getloadavg()
    print(f"1 torch thread, CPU seconds; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
    rows: dict[str, dict[int, dict]] = {s: {} for s in (*FLOORS, *names)}
    sink = open(args.out, "a") if args.out else None
    for n in args.n:
        side = math.isqrt(n)
        n = side * side
        floors_needed = {_steps(n)[s][2] for s in names}
        before = {f: run_child(f, n, args.timeout) for f in FLOORS if f in floors_needed}
        for s in names:
            rows[s][n] = run_child(s, n, args.timeout)
            print(f"  N={n:,} {s}: {_cell(rows[s][n], None)}", file=sys.stderr, flush=True)
        after = {f: run_child(f, n, args.timeout) for f in before}
        for f in before:
            ts = [r["cpu_s"] for r in (before[f], after[f]) if "cpu_s" in r]
            rows[f][n] = {**before[f], "cpu_s": sum(ts) / len(ts) if ts else None,
                          "extra_rss": max(r.get("extra_rss", 0) for r in (before[f], after[f]))}
        if sink:
            for s in rows:
                if n in rows[s]:
                    sink.write(json.dumps({**rows[s][n], "floor": _floor(s, n)}) + "\n")
            sink.flush()
    ns = sorted({n for r in rows.values() for n in r})
    print(f"{'C step':<26}" + "".join(f"{f'N={n / 1e6:g}M':>22}" for n in ns) + f"{'exponent':>9}"
          + f"{'B/weight':>10}")
    for s, by_n in rows.items():
        if not by_n:
            continue
        floor = "sort" if s == "sort" else "svd" if s == "svd" else _steps(4)[s][2]
        cells = [_cell(by_n.get(n), None if s in FLOORS else rows[floor].get(n)) for n in ns]
        e = exponent(ns, [by_n.get(n, {}).get("cpu_s") for n in ns])
        last = by_n.get(ns[-1], {})
        bpw = f"{last['extra_rss'] / ns[-1]:.1f}" if "extra_rss" in last else "-"
        print(f"{s:<26}" + "".join(f"{c:>22}" for c in cells) + f"{'-' if e is None else f'{e:.2f}':>9}{bpw:>10}")
    load = os.getloadavg()
    print(f"cells: CPU seconds (ratio to the floor of the same N); load average at end {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")


def _floor(name: str, n: int) -> str | None:
    return None if name in FLOORS else _steps(n)[name][2]


def _cell(r: dict | None, floor: dict | None) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return r["error"]
    if floor is None or not floor.get("cpu_s"):
        return f"{r['cpu_s']:.2f}s"
    return f"{r['cpu_s']:.2f}s ({r['cpu_s'] / floor['cpu_s']:.2f}x)"


if __name__ == "__main__":
    main()
