"""The LC loop under DDP with 2 gloo ranks on this CPU: per LC step, the L step's time against the C step's (on rank
0) and the broadcast of Θ to the other rank (its wait includes rank 0's C step: the broadcast's own cost is rank
0's "broadcast" column).

    python -m benchmarks.ddp_overhead                         # LeNet300, 8000 random MNIST-shaped examples

Each rank trains on its half of the batch (DistributedDataParallel averages the gradients), 1 epoch per L step of
batch 128 with Adam and lc_penalty.step; compressions: ℓ0 pruning to 5 % jointly and a 4-entry codebook per layer
(two runs). Prints, per run, the medians over LC steps of each rank's seconds.
"""
from __future__ import annotations

import os
import socket
import statistics
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import lc


def _rank(rank: int, world: int, port: int, scheme: str, queue) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8000, 784, generator=g), torch.randint(0, 10, (8000,), generator=g)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100), torch.nn.ReLU(),
                              torch.nn.Linear(100, 10))
    ddp = DistributedDataParallel(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    shard = torch.arange(rank, 8000, world)

    def l_step(model, pen, j):
        for idx in shard[torch.randperm(len(shard), generator=torch.Generator().manual_seed(j))].split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx]).backward()
            opt.step()
            pen.step(opt)

    names = ["0.weight", "2.weight", "4.weight"]
    tasks = ({lc.Param(names): (lc.AsVector, lc.ConstraintL0Pruning(kappa=13_350))} if scheme == "pruning" else
             {lc.Param(n): (lc.AsVector, lc.AdaptiveQuantization(k=4)) for n in names})
    rows = []
    alg = lc.Algorithm(net, tasks, lc.geometric_mu(1e-3, 1.5, 6), l_step,
                       callbacks=[lambda a, r: rows.append((r.l_step_time, r.c_step_time, dict(a._ranks.timing)))])
    alg.run()
    queue.put((rank, scheme, rows[1:]))
    dist.destroy_process_group()


def main(argv=None) -> int:
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    ctx = mp.get_context("spawn")
    for scheme in ("pruning", "quantization"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        queue = ctx.Queue()
        procs = [ctx.Process(target=_rank, args=(r, 2, port, scheme, queue)) for r in range(2)]
        for p in procs:
            p.start()
        results = dict((r, rows) for r, _, rows in (queue.get() for _ in procs))
        for p in procs:
            p.join()
        for r, rows in sorted(results.items()):
            med = lambda v: statistics.median(v)  # noqa: E731
            l, c = med([a for a, _, _ in rows]), med([b for _, b, _ in rows])
            comp, bcast = med([t["compute"] for _, _, t in rows]), med([t["broadcast"] for _, _, t in rows])
            print(f"{scheme:12s} rank {r}: L step {l:6.2f} s   C step {c:6.3f} s (computing {comp:6.3f}, "
                  f"broadcasting {bcast:6.3f})   C step / L step {c / l:6.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
