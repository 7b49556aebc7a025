"""The main job: tradeoff curves of test error vs compression ratio, one curve per compression family, all under the
same L step (one fixed set of training hyperparameters per task).

    python -m experiments.tradeoff                                  # digits + LeNet300, a few minutes on a CPU
    python -m experiments.tradeoff --config experiments/configs/lenet300_mnist.toml --data-dir /data/mnist
    python -m experiments.tradeoff --families pruning quantization --values pruning=0.05,0.1 --steps 30
    lc-tradeoff --model mypkg.models:SmallCNN --weights small_cnn.pt --dataset mypkg.data:load   # yours
    lc-tradeoff --help

Your model (``--model MODULE:ATTR``) with its trained weights (``--weights FILE``, a state_dict: the reference, not
retrained) and your data (``--dataset MODULE:ATTR`` or ``FILE.npz``) are loaded, and every mistake there reported,
before anything is trained; from Python, :class:`tasks.custom.Custom` takes your own L step and evaluation too.

Trains (or loads from ``--cache-dir``) the reference, then runs every (family, value) of the sweep with
:class:`lc.Algorithm` through the sweep driver (:mod:`experiments.sweep`, with the classification adapter).
Writes to ``--out``: ``rows.jsonl`` (one JSON object per run, the record), ``rows.csv`` (the same rows),
``tradeoff.png`` (plotted from the rows by :mod:`experiments.plot`), ``config.json``, and the compressed model of
every run (``artifacts/<run_id>.lc``, written by ``lc.save``). A killed sweep resumes where it stopped (finished
runs are skipped, an unfinished run continues from its last LC step); several processes may share one ``--out``
(each run is claimed by one of them); results of a different config are never overwritten unless
``--overwrite`` is given.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from tasks.classification import Classification, TaskConfig

from . import cli, sweep
from .cli import option
from .sweep import DEFAULT_FAMILIES, Sweep

__all__ = ["Config", "main", "run_sweep", "load_config", "COLUMNS", "DEFAULT_FAMILIES"]

COLUMNS = sweep.columns(("error", "loss"), "error")


@dataclass
class Config(Sweep):
    """The sweep. Every field is a flag (``--mu-multiplier 1.2``) and a key of a TOML/JSON config file; the task's
    own fields (data, model, reference training, L step) are under ``task`` (``[task]`` table, or flags such as
    ``--lr``)."""

    task: TaskConfig = option(TaskConfig(epochs_per_step=2, ref_epochs=30),
                              "the task: see tasks.classification.TaskConfig")


def load_config(argv=None) -> Config:
    """Defaults ← config file ← flags."""
    return cli.parse(Config, argv, prog="lc-tradeoff", description=__doc__)


def run_sweep(config: Config) -> list[dict]:
    """Run every (family, value) not yet in ``config.out``; returns all rows there."""
    return sweep.run(Classification(config.task), config)   # a missing dataset fails here, before --out is touched


def _number(x) -> float:
    return float("nan") if x is None else x


def _main(argv=None) -> int:
    config = load_config(argv)
    if config.progress:                       # the bars show each step's error and ratio; keep the log for the rest
        logging.getLogger("lc").setLevel(logging.WARNING)
    rows = run_sweep(config)
    split = rows[0]["split"] if rows else ""
    print(f"\n{len(rows)} runs in {config.out} ({split}):")
    print(f"{'family':<22} {'parameter':<16} {'value':>8} {'error %':>8} {'ratio':>8} {'on disk':>8} {'MFLOPs':>8} "
          f"{'time s':>7} {'speedup':>8}")
    for r in sorted(rows, key=lambda r: (r["family"], r.get("start") or "", r["ratio"])):
        family = r["family"] + (" (μ→0)" if r.get("start") == "zero" else "")
        speedup = r.get("speedup_b256_vs_dense_exported")
        realised = r["realised_ratio"]                                # None for a run that diverged (no artifact)
        flops = r["flops_exported"] if r.get("channels") else r["flops"]      # structured: the smaller model's
        print(f"{family:<22} {r['parameter']:<16} {r['value']!s:>8} {100 * r['test_error']:8.2f} "
              f"{r['ratio']:8.1f} {_number(realised):8.1f} {_number(flops) / 1e6:8.3f} "
              f"{r['wall_time']:7.1f} "
              + (f"{speedup:8.2f}" if speedup else f"{'-':>8}") + (f"  {r['warning']}" if r.get("warning") else ""))
    if rows:
        print(f"reference: {100 * rows[0]['reference_error']:.2f}% error; speedup: measured at batch 256 against the "
              f"dense reference put through the same lc.export; (μ→0): the LC path started at μ → 0⁺; "
              f"plot: {Path(config.out) / 'tradeoff.png'}")
    return 0


def main(argv=None) -> int:
    """The command line (``lc-tradeoff``): a mistake in the config is printed as ``error: …``, exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return cli.console(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
