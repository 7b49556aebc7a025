"""One rank of a small distributed LC run (the DDP tests start it as subprocesses; world 1 is the plain run).

    python -m tests.lc.ddp_script RANK WORLD PORT OUT_FILE [CHECKPOINT_DIR] [KILL_AT]

Every rank trains the digits MLP by full-batch gradient descent on its shard of 1256 training examples, the model
wrapped in DistributedDataParallel (which averages the ranks' gradients: with equal shards, the full batch's), and
compresses it with lc: ℓ0 pruning, an additive codebook + sparse task, a codebook. KILL_AT=j: every rank dies at
the start of L step j (after its checkpoint of step j)."""
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import lc
import lc._checkpoint
import lc.algorithm
from tests import digits


def main(rank: int, world: int, port: int, out: str, checkpoint_dir: str | None, kill_at: int | None):
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    net = digits.reference()
    xtr, ytr, _, _ = digits.data()
    x, y = xtr[:1256][rank::world], ytr[:1256][rank::world]
    trainer = DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def l_step(model, lc_penalty, step):
        if step == kill_at:
            sys.exit(3)
        for _ in range(15):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(trainer(x), y).backward()
            opt.step()
            lc_penalty.step(opt)

    tasks = {lc.Param("0.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=300)),
             lc.Param("2.weight"): [(lc.AsVector, lc.AdaptiveQuantization(k=2)),
                                    (lc.AsVector, lc.ConstraintL0Pruning(kappa=20))],
             lc.Param("0.bias"): (lc.AsVector, lc.AdaptiveQuantization(k=4))}
    calls = {"solve": 0, "save": 0}                       # who computes C steps and who writes checkpoints
    solve, save = lc.algorithm.solve, lc._checkpoint.Checkpoint.save

    def counted_solve(*args):
        calls["solve"] += 1
        return solve(*args)

    def counted_save(*args):
        calls["save"] += 1
        return save(*args)
    lc.algorithm.solve, lc._checkpoint.Checkpoint.save = counted_solve, counted_save
    alg = lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 1.8, 6), l_step, digits.test_error,
                       checkpoint_dir=checkpoint_dir)
    alg.run()
    torch.save({"states": [s.to_dict() for s in alg.states], "model": net.state_dict(),
                "history": [r.evaluation for r in alg.history], "distributed": alg._ranks is not None,
                "calls": calls}, out)
    if world > 1:
        dist.barrier()                    # the ranks tear down together (see experiments/ddp_classifier.py)
        dist.destroy_process_group()


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]), int(a[1]), int(a[2]), a[3], a[4] if len(a) > 4 and a[4] != "-" else None,
         int(a[5]) if len(a) > 5 else None)
