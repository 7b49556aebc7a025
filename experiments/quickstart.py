"""A first LC run: ℓ0-prune a small MLP on scikit-learn's digits to 5% of its first layer's weights.

    python -m experiments.quickstart [--kappa 200] [--steps 20] [--seed 0]
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lc

from . import cli
from .cli import option


@dataclass
class Config:
    kappa: int = option(200, "weights kept in the first layer (of 4096)")
    steps: int = option(20, "LC steps")
    seed: int = option(0, "seed of the initialisation and of the batch order")


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.quickstart", description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    xtr, xte = torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def train(model, epochs, lr, penalty=lambda: 0.0):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
        for _ in range(epochs):
            for idx in torch.randperm(len(xtr)).split(64):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]) + penalty()
                loss.backward()
                opt.step()

    def error(model):
        with torch.no_grad():
            return float((model(xte).argmax(1) != yte).float().mean())

    train(net, epochs=30, lr=0.05)
    print(f"reference test error: {error(net):.4f}")
    tasks = {lc.Param(net[0].weight): (lc.AsVector, lc.ConstraintL0Pruning(kappa=args.kappa))}
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(1e-3, 1.5, args.steps),
                             l_step_optimization=lambda m, pen, step: train(m, 2, 0.05 * 0.95 ** step, pen),
                             evaluation_func=error)
    history = algorithm.run()
    print(f"compressed test error: {history[-1].evaluation:.4f}, nonzeros in layer 1: "
          f"{int((net[0].weight != 0).sum())}, nominal compression ratio {algorithm.compression_ratio():.2f}x")


if __name__ == "__main__":
    sys.exit(cli.console(main))
