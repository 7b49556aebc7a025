"""How small-kd's distillation weight β and temperature T were chosen: on a validation split of digits' training
set (its last 20% in a seeded random order; the reference and the students train on the other 80%), never on the
test set. Prints the validation error of the small network without distillation and with each (β, T).

    python -m experiments.baselines.choose_kd              # seeds 0 1, ratios 8 32: a minute on one core
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass

import torch

from tasks.classification import Classification, TaskConfig
from tasks.data import Dataset, load

from .. import cli
from ..cli import option
from .common import Job
from .small import small


@dataclass
class Config:
    """The validation runs (every field a flag)."""

    seeds: list[int] = option([0, 1], "seeds (of the reference and of the students)")
    ratios: list[float] = option([8.0, 32.0], "small networks' target ratios")
    weights: list[float] = option([0.5, 0.9], "distillation weights β")
    temperatures: list[float] = option([1.0, 2.0, 4.0], "temperatures T")
    steps: int = option(20, "L steps (2 epochs each, the tradeoff job's default)")


def main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.baselines.choose_kd", description=__doc__)
    torch.set_num_threads(1)
    full = load("digits")
    n = len(full.y_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    train, held = order[: n - n // 5], order[n - n // 5:]
    data = Dataset("digits", full.x_train[train], full.y_train[train], full.x_train[held], full.y_train[held],
                   "validation: the last 20% of digits' training set (seed 0)")
    totals = {}
    for seed in config.seeds:
        task = Classification(TaskConfig(ref_epochs=30, epochs_per_step=2, seed=seed), data=data)
        reference = task.reference(cache_dir=None)
        print(f"seed {seed}: reference {100 * task.evaluate(reference)['error']:.2f}% validation error")
        for ratio in config.ratios:
            for beta, t in [(0.0, 1.0), *itertools.product(config.weights, config.temperatures)]:
                torch.manual_seed(seed)
                out = small(Job(task, reference, config.steps), ratio, distill=beta, temperature=t)
                error = 100 * task.evaluate(out.model)["error"]
                totals.setdefault((beta, t), []).append(error)
                print(f"  ratio {ratio:g}: β {beta:g}, T {t:g}: {error:.2f}%", flush=True)
    print("mean validation error:")
    for (beta, t), errors in sorted(totals.items(), key=lambda kv: sum(kv[1])):
        print(f"  β {beta:g}, T {t:g}: {sum(errors) / len(errors):.2f}%" + ("  (no distillation)" if not beta else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli.console(main))
