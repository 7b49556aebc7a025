"""The L step's overhead: epoch time with the LC penalty / epoch time without, measured in one run.

    python -m benchmarks.l_step_overhead                                  # LeNet300 on digits
    python -m benchmarks.l_step_overhead --dataset mnist --data-dir /work/shared/data/mnist-test --batch-size 256

The penalty is the one lc.Algorithm hands to the L step (every weight matrix compressed, ℓ0 pruning to 5%): the
L step given to the algorithm times epochs of the same training loop with and without ``lc_penalty()``,
alternating which comes first, on the same model and optimizer. Times are noisy on a shared machine, so the
result is the ratio of the medians of the interleaved epochs (a baseline measured in the same run), with the
ratio of the minima beside it.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import lc
from tasks.classification import Classification, TaskConfig, compression_tasks


def measure(task: Classification, repeats: int) -> dict[str, list[float]]:
    net = task.make_model()
    times = {"with": [], "without": []}

    def l_step(model, lc_penalty, step):
        opt = task.optimizer(model, task.config.l_step_lr())
        task.train_epoch(model, opt, lc_penalty)                        # warm-up, not timed
        for r in range(repeats):
            for use in (("with", "without") if r % 2 == 0 else ("without", "with")):
                t = time.perf_counter()
                task.train_epoch(model, opt, lc_penalty if use == "with" else None)
                times[use].append(time.perf_counter() - t)

    tasks = compression_tasks(net, lambda shapes: (lc.AsVector, lc.ConstraintL0Pruning(
        kappa=round(0.05 * sum(s.numel() for s in shapes)))), joint=True)
    lc.Algorithm(net, tasks, [1e-3], l_step).run()
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir")
    ap.add_argument("--model", default="lenet300")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10, help="timed epochs of each kind")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = Classification(TaskConfig(dataset=args.dataset, data_dir=args.data_dir, model=args.model,
                                     batch_size=args.batch_size))
    times = measure(task, args.repeats)
    w, wo = times["with"], times["without"]
    ratio = statistics.median(w) / statistics.median(wo)
    print(f"{args.model} on {args.dataset} ({task.data.split}), batch {args.batch_size}, {args.threads} thread(s), "
          f"{args.repeats} interleaved epochs of each kind:")
    print(f"  epoch without penalty: median {statistics.median(wo):.4f}s  min {min(wo):.4f}s")
    print(f"  epoch with penalty:    median {statistics.median(w):.4f}s  min {min(w):.4f}s")
    print(f"  overhead ratio (with / without, measured in this run): median {ratio:.3f}, min {min(w) / min(wo):.3f}"
          f"  (target ≤ 1.10)")
    return ratio


if __name__ == "__main__":
    main()
