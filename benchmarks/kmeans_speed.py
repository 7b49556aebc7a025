"""Speed and distortion of the AdaptiveQuantization C step (1-D k-means) against scikit-learn's
KMeans(n_clusters=k, n_init=10), the C step of the ancestor toolkit, on the same weights in the same run.

    python -m benchmarks.kmeans_speed                      # the full table (several minutes, mostly scikit-learn)
    python -m benchmarks.kmeans_speed --n 266200 --k 2 16 --dist gauss --big 0    # a quick subset

Prints, per (N, distribution, k): both times, time ratio (scikit-learn / ours), distortion ratio (ours / scikit-
learn; ≤ 1 means ours is as good or better), and the time of a warm-started C step (the previous codebook given).
Then the time of one C step on ``--big`` weights (ResNet-50 size, 25M). Timings on a shared machine are noisy:
compare the ratios, measured in the same run, not the absolute times.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.cluster import KMeans

import lc


def weights(dist: str, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dist == "gauss":
        return torch.randn(n, generator=g) * 0.05
    if dist == "laplace":
        return torch.empty(n).exponential_(generator=g) * torch.randn(n, generator=g).sign() * 0.05
    raise ValueError(dist)


def distortion(w: np.ndarray, codebook: np.ndarray) -> float:
    """Σ_i min_j (w_i − c_j)², in float64, each weight to its nearest entry."""
    c = np.sort(codebook.astype(np.float64).ravel())
    idx = np.clip(np.searchsorted((c[1:] + c[:-1]) / 2, w), 0, len(c) - 1)
    return float(((w - c[idx]) ** 2).sum())


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[266_200, 1_000_000], help="numbers of weights")
    ap.add_argument("--dist", nargs="+", default=["gauss", "laplace"], choices=["gauss", "laplace"])
    ap.add_argument("--k", type=int, nargs="+", default=[2, 4, 16, 64], help="codebook sizes")
    ap.add_argument("--big", type=int, default=25_000_000, help="weights of the single large C step (0: skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}; timings on a shared machine: read the ratios")
    print(f"{'N':>9} {'dist':>7} {'k':>3} | {'ours s':>7} {'warm s':>7} {'sklearn s':>9} | {'time ratio':>10} "
          f"{'distortion ratio':>16}")
    for n in args.n:
        for dist in args.dist:
            w = weights(dist, n)
            w64 = w.double().numpy()
            for k in args.k:
                q = lc.AdaptiveQuantization(k)
                state, t_ours = timed(lambda: q.compress(w, 1.0))
                _, t_warm = timed(lambda: q.compress(w + 1e-4 * torch.randn_like(w), 1.0, previous=state))
                km, t_sk = timed(lambda: KMeans(n_clusters=k, n_init=10, random_state=0).fit(w.numpy()[:, None]))
                d_ours = distortion(w64, state.tensors["codebook"].numpy())
                d_sk = distortion(w64, km.cluster_centers_)
                print(f"{n:>9} {dist:>7} {k:>3} | {t_ours:>7.3f} {t_warm:>7.3f} {t_sk:>9.2f} | {t_sk / t_ours:>9.1f}x "
                      f"{d_ours / d_sk:>16.6f}", flush=True)
    if args.big:
        w = weights("gauss", args.big)
        _, t = timed(lambda: lc.AdaptiveQuantization(16).compress(w, 1.0))
        print(f"one C step, N = {args.big:,}, k = 16: {t:.2f} s")


if __name__ == "__main__":
    main()
