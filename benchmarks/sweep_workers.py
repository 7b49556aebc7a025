"""The default tradeoff sweep (digits, LeNet300, the job's default families and values) done by 1 process and by
N local workers, in one run: wall time of each and the speedup, with the load average and the CPU count.

    python -m benchmarks.sweep_workers                    # 1 vs 2 workers, the default sweep (several minutes)
    python -m benchmarks.sweep_workers --workers 2 --families pruning quantization

The reference is trained first (into a temporary cache) and not timed; each sweep writes to its own temporary
output directory, one torch thread per process, no latency measurement (its timings would compete with the other
worker). Both sweeps must end with the same rows (checked); the speedup is the 1-process wall time over the
N-worker one.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from experiments import tradeoff


def _sweep(out: str, cache: str, workers: int, families: list[str]) -> tuple[float, list[dict]]:
    argv = ["--out", out, "--cache-dir", cache, "--no-latency", "--no-progress", "--workers", str(workers),
            *(["--families", *families] if families else [])]
    t = time.perf_counter()
    rows = tradeoff.run_sweep(tradeoff.load_config(argv))
    return time.perf_counter() - t, rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--families", nargs="*", default=[])
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        tradeoff.Classification(tradeoff.load_config([]).task).reference(cache_dir=cache)
        load0 = os.getloadavg()
        one, rows1 = _sweep(os.path.join(tmp, "one"), cache, 1, args.families)
        many, rows2 = _sweep(os.path.join(tmp, "many"), cache, args.workers, args.families)
        load1 = os.getloadavg()
    key = lambda r: (r["run_id"], r["test_error"], r["ratio"])       # noqa: E731
    same = sorted(map(key, rows1)) == sorted(map(key, rows2))
    print(f"{len(rows1)} runs; cpus {os.cpu_count()}; load average before {load0[0]:.2f}, after {load1[0]:.2f}")
    print(f"1 process: {one:.1f} s; {args.workers} workers: {many:.1f} s; speedup {one / many:.2f}x; "
          f"same rows: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
