"""Any optimizer in the L step: final test error of LC with SGD, Adam, AdamW (and Adam under a cosine schedule
stepped inside the L step) on the same model, data, compression, μ schedule and epochs.

    python -m benchmarks.optimizers                        # the documented run: 2 models × 3 schemes × 3 seeds
    python -m benchmarks.optimizers --models cnn --schemes l0 --seeds 0 --steps 4   # a quick look

SGD is the LC papers' L step (Nesterov momentum, the penalty added to the loss); ``sgd-step`` is the same SGD with
the penalty decoupled. The adaptive optimizers apply the penalty decoupled, ``optimizer.step();
lc_penalty.step(optimizer)``; ``adam-coupled`` is Adam with the penalty
added to the loss (what the guide showed before: the failure this benchmark documents); ``adam-prox-lr`` is Adam
with the proximal step at its plain learning rate (``lc_penalty.prox_(lr)``, as AdamW's weight decay uses lr),
not in Adam's metric: the ablation of :meth:`lc.penalty.Penalty.step`'s per-coordinate step sizes. Models: a small CNN (conv
1→16, conv 16→32, linear; its reference trained with Adam) and LeNet300 (reference trained with SGD), on the
embedded digits (8×8). Schemes: ℓ0 pruning to 10 % of all weights jointly, a 4-entry codebook per layer, and
pruning + a 4-entry codebook for the kept 10 % (PrunedQuantization) jointly. Each optimizer keeps its state across
L steps (as a user's training loop does); the learning rate decays ×0.98 per LC step. Prints mean ± std over
seeds of the final step's test error, and each optimizer's gap to SGD; rows go to ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import lc
from tasks.data import load
from tasks.models import LeNet300

OPTIMIZERS = ("sgd", "sgd-step", "adam", "adamw", "adam-cosine", "adam-coupled", "adam-prox-lr")
SCHEMES = ("l0", "quant4", "prunedquant")
MODELS = ("cnn", "lenet300")


class SmallCNN(nn.Module):
    """conv 1→16, conv 16→32 (3×3, ReLU), 2×2 max-pool, linear: a user's own small model."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2).flatten(1))


def _error(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        out = float((model(x).argmax(1) != y).float().mean())
    model.train()
    return out


def _epoch(model, data, opt, gen, penalty=None, coupled=True, scheduler=None, plain_lr=False):
    for idx in torch.randperm(len(data.y_train), generator=gen).split(128):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        (loss + penalty() if penalty is not None and coupled else loss).backward()
        opt.step()
        if penalty is not None and not coupled and plain_lr:
            penalty.prox_(opt.param_groups[0]["lr"])  # decoupled, at the plain learning rate (the ablation)
        elif penalty is not None and not coupled:
            penalty.step(opt)                         # the penalty, decoupled: a proximal step in opt's metric
        if scheduler is not None:
            scheduler.step()


def reference(model_name: str, data, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = SmallCNN() if model_name == "cnn" else LeNet300(data.input_shape)
    gen = torch.Generator().manual_seed(seed)
    if model_name == "cnn":                           # the user's recipe: Adam
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:                                             # the LC papers' recipe: SGD with Nesterov momentum
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(30):
        _epoch(model, data, opt, gen)
    return model


def compression_tasks(model: nn.Module, scheme: str) -> dict:
    names = [n for n, p in model.named_parameters() if n.endswith("weight")]
    n = sum(model.get_parameter(m).numel() for m in names)
    if scheme == "l0":
        return {lc.Param(names): (lc.AsVector, lc.ConstraintL0Pruning(kappa=round(0.1 * n)))}
    if scheme == "quant4":
        return {lc.Param(m): (lc.AsVector, lc.AdaptiveQuantization(k=4)) for m in names}
    return {lc.Param(names): (lc.AsVector, lc.PrunedQuantization(kappa=round(0.1 * n), k=4))}


class LStep:
    """The L step of one optimizer; the optimizer (and its scheduler) persist across LC steps."""

    def __init__(self, name: str, data, epochs: int, seed: int, fresh: bool = False):
        self.name, self.data, self.epochs, self.fresh = name, data, epochs, fresh
        self.gen = torch.Generator().manual_seed(1000 + seed)
        self.opt = None

    def __call__(self, model, lc_penalty, step):
        if self.opt is None or self.fresh:
            if self.name.startswith("sgd"):
                self.opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
            elif self.name == "adamw":
                self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            else:
                self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            self.base = self.opt.param_groups[0]["lr"]
        for g in self.opt.param_groups:
            g["lr"] = self.base * 0.98 ** step
        scheduler = None
        if self.name == "adam-cosine":                # a schedule the user steps inside the L step, every batch
            batches = math.ceil(len(self.data.y_train) / 128) * self.epochs
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=batches)
        coupled = self.name in ("sgd", "adam-coupled")
        for _ in range(self.epochs):
            _epoch(model, self.data, self.opt, self.gen, lc_penalty, coupled, scheduler, self.name == "adam-prox-lr")


def run(model_name, scheme, optimizer, seed, data, ref, args) -> dict:
    model = copy.deepcopy(ref)
    torch.manual_seed(seed)
    t = time.perf_counter()
    algorithm = lc.Algorithm(model, compression_tasks(model, scheme), lc.geometric_mu(args.mu0, args.multiplier,
                                                                                      args.steps),
                             LStep(optimizer, data, args.epochs, seed, args.fresh),
                             lambda m: _error(m, data.x_test, data.y_test))
    history = algorithm.run()
    return {"model": model_name, "scheme": scheme, "optimizer": optimizer, "seed": seed,
            "error": history[-1].evaluation, "direct_error": history[0].evaluation,
            "reference_error": _error(ref, data.x_test, data.y_test), "ratio": history[-1].ratio,
            "distance": sum(history[-1].distance.values()), "steps": args.steps, "epochs_per_step": args.epochs,
            "fresh_optimizer": args.fresh, "mu0": args.mu0, "multiplier": args.multiplier,
            "seconds": time.perf_counter() - t}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--schemes", nargs="+", default=SCHEMES, choices=SCHEMES)
    ap.add_argument("--optimizers", nargs="+", default=OPTIMIZERS, choices=OPTIMIZERS)
    ap.add_argument("--seeds", nargs="+", type=int, default=(0, 1, 2))
    ap.add_argument("--steps", type=int, default=20, help="LC steps")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per L step")
    ap.add_argument("--mu0", type=float, default=3e-3)
    ap.add_argument("--multiplier", type=float, default=1.4)
    ap.add_argument("--fresh", action="store_true", help="a new optimizer every L step (as the LC papers' L step) "
                    "instead of one kept across L steps (as a user's training loop)")
    ap.add_argument("--out", default="results/benchmarks/optimizers")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = load("digits")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model_name in args.models:
        for seed in args.seeds:
            ref = reference(model_name, data, seed)
            for scheme in args.schemes:
                for optimizer in args.optimizers:
                    row = run(model_name, scheme, optimizer, seed, data, ref, args)
                    rows.append(row)
                    print(f"{model_name:9s} {scheme:12s} {optimizer:13s} seed {seed}: error {100 * row['error']:6.2f}% "
                          f"(direct {100 * row['direct_error']:6.2f}%, reference {100 * row['reference_error']:5.2f}%,"
                          f" |w-Δ|² {row['distance']:.3g}, {row['seconds']:.0f}s)", flush=True)
                    lc._io.write_text_atomic(out / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    print(f"\nfinal test error, mean ± std over seeds {list(args.seeds)} ({args.steps} LC steps × {args.epochs} "
          "epochs); gap = mean − SGD's mean, in points")
    for model_name in args.models:
        for scheme in args.schemes:
            errs = {o: [100 * r["error"] for r in rows if (r["model"], r["scheme"], r["optimizer"]) ==
                        (model_name, scheme, o)] for o in args.optimizers}
            base = statistics.mean(errs["sgd"]) if errs.get("sgd") else None
            cells = []
            for o, e in errs.items():
                sd = statistics.stdev(e) if len(e) > 1 else 0.0
                gap = f" ({statistics.mean(e) - base:+.2f})" if base is not None and o != "sgd" else ""
                cells.append(f"{o} {statistics.mean(e):.2f}±{sd:.2f}{gap}")
            print(f"{model_name:9s} {scheme:12s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
