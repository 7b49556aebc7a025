"""Run a small LC job with a checkpoint directory (used by the kill-and-resume test as a subprocess).

    python -m tests.lc.resume_script CHECKPOINT_DIR OUT_FILE [SLEEP_PER_STEP]
"""
import sys
import time

import torch

import lc
from tests import digits


class LStep:
    """An L step that keeps its optimizer (momentum) across LC steps: its state is checkpointed too."""

    def __init__(self, model, sleep):
        self.opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        self.sleep = sleep

    def __call__(self, model, lc_penalty, step):
        xtr, ytr, _, _ = digits.data()
        for idx in torch.randperm(len(xtr)).split(128):
            self.opt.zero_grad()
            (torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]) + lc_penalty()).backward()
            self.opt.step()
        time.sleep(self.sleep)

    def state_dict(self):
        return self.opt.state_dict()

    def load_state_dict(self, state):
        self.opt.load_state_dict(state)


def prune_tasks(net):
    return {lc.Param(net[0].weight): (lc.AsVector, lc.ConstraintL0Pruning(kappa=100)),
            lc.Param("2.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=40))}


def build(checkpoint_dir, sleep=0.0, additive=False):
    """``additive``: the first layer low rank + sparse (an additive task, whose C step is warm-started)."""
    torch.set_num_threads(1)
    net = digits.reference()
    first = [(lc.AsIs, lc.LowRank(target_rank=2)), (lc.AsVector, lc.ConstraintL0Pruning(kappa=60))] if additive \
        else (lc.AsVector, lc.ConstraintL0Pruning(kappa=100))
    tasks = {lc.Param(net[0].weight): first,
             lc.Param(["2.weight", "2.bias"]): (lc.AsVector, lc.PenaltyL1Pruning(alpha=1e-3))}
    return lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 1.4, 8), LStep(net, sleep), digits.test_error,
                        checkpoint_dir=checkpoint_dir)


if __name__ == "__main__":
    algorithm = build(sys.argv[1], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
    algorithm.run()
    torch.save({"states": [s.to_dict() for s in algorithm.states], "model": algorithm.model.state_dict(),
                "history": [r.evaluation for r in algorithm.history]}, sys.argv[2])
