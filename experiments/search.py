"""A multi-objective search over compression budgets: instead of hand-picked values, Optuna proposes the next
(family, value) to run from the runs so far, to push the front of validation error against compression ratio (or
FLOPs), and the command returns that Pareto front.

    python -m experiments.search --trials 16                                 # digits, LeNet300: pruning, rank
    python -m experiments.search --families pruning quantization --values pruning=0.01,0.5 --trials 24
    python -m experiments.search --objective flops --families rank --values rank=1.5,40 --workers 2

Every trial is one run of the sweep driver (:func:`experiments.sweep.run_one`): the same reference, L step, rows,
artifacts, claims and resume as ``lc-tradeoff`` in the same ``--out`` (a trial proposing a run already done reads
its row). Each family's values are searched between the lowest and the highest of its ``--values`` (default: the
family's own sweep values), on a log scale, as integers for integer families (k, bits).

**The search chooses on validation data, never on the test set**: the task holds out ``task.validation`` of its
training images (default here 0.2, stratified), the objectives are the validation error and the ratio (or the
exported FLOPs), and the front is the trials' Pareto front in those; each front point's test error is reported
beside it, measured once, as in every row.

Why Optuna: its multi-objective TPE (Ozaki et al., 2020) proposes well from the few trials an LC run's cost allows,
and its journal file storage lets several workers (``--workers N``, or cluster jobs with ``--engine submitit``)
share one study through a file, with no database server. The study (``out/search.journal``) resumes: running the
command again adds trials up to ``--trials`` complete ones; a trial interrupted by a kill is proposed again, its
run resuming from its checkpoint.

Writes to ``--out``: everything a sweep writes, ``search.journal`` (the study), ``front.csv`` (the Pareto front:
family, value, validation and test error, ratio, FLOPs, run id) and ``search.png`` (every trial, the front drawn).
"""
from __future__ import annotations

import logging
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import lc
from lc._io import write_text_atomic
from tasks.classification import Classification, TaskConfig

from . import cli, parallel, sweep
from .cli import option
from .runs import RunStore, csv_text
from .schemes import Family

__all__ = ["Config", "search", "OBJECTIVES"]

log = logging.getLogger(__name__)

OBJECTIVES = ("ratio", "flops")
FRONT = ("family", "value", "validation_error", "test_error", "ratio", "flops", "run_id")


@dataclass
class Config(sweep.Sweep):
    """The search (every field a flag and a key of a --config file); the sweep's fields as in ``lc-tradeoff``,
    ``families`` and ``values`` giving the families searched and each one's range."""

    task: TaskConfig = option(TaskConfig(epochs_per_step=2, ref_epochs=30, validation=0.2),
                              "the task: see tasks.classification.TaskConfig (its validation fraction is what the "
                              "search chooses on)")
    families: list[str] = option(["pruning", "rank"], "families searched (the trial's first choice)")
    trials: int = option(16, "complete trials in all (the study's, over every invocation and worker)")
    objective: str = option("ratio", "the second objective: ratio (compression ratio, maximised) or flops (the "
                                     "exported model's multiply-adds, minimised)", choices=OBJECTIVES)
    sampler_seed: int = option(0, "seed of the search's sampler")
    out: str = option("results/search", "output directory (the sweep's files, search.journal, front.csv, "
                                        "search.png); several workers may share it", directory=True)
    latency: bool = option(False, "measure each run's latency (as lc-tradeoff; off: the search does not use it)")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise lc.CompressionError("the search needs the optuna package: pip install 'lc[search]' (or pip install "
                                  "optuna)") from None
    return optuna


def _range(config: Config, fam: Family) -> tuple[float, float]:
    values = config.values.get(fam.name, fam.values)
    low, high = min(values), max(values)
    if not 0 < low < high:
        raise lc.CompressionError(f"search range of {fam.name}: {low}..{high} (the lowest and highest of its "
                                  "--values); give two positive values, the lowest first smaller, e.g. "
                                  f"--values {fam.name}=0.01,0.5")
    return low, high


@dataclass
class _Objective:
    """One trial: a (family, value) proposed, run (or read) through the sweep driver, scored on validation."""

    task: Classification
    config: Config
    families: list[Family]
    ref: sweep._Reference | None = None
    store: RunStore | None = None

    def __call__(self, trial):
        optuna = _optuna()
        fam = next(f for f in self.families if f.name == trial.suggest_categorical(
            "family", [f.name for f in self.families]))
        low, high = _range(self.config, fam)
        value = (trial.suggest_int(fam.name, math.ceil(low), math.floor(high), log=True) if fam.integer
                 else trial.suggest_float(fam.name, low, high, log=True))
        if self.ref is None:                    # loaded once per process (trained before the workers started)
            self.store = RunStore(Path(self.config.out), self.config.fields(self.task))
            self.ref = sweep.reference(self.task, self.config, self.store)
        row = sweep.run_one(self.task, self.config, self.store, self.ref, fam, value, self.config.starts(fam)[0])
        if row is None:                         # another live worker is doing this very run
            raise optuna.TrialPruned(f"{fam.name}={value} is being done by another worker")
        trial.set_user_attr("run_id", row["run_id"])
        second = row["ratio"] if self.config.objective == "ratio" else \
            row["flops_exported"] if row.get("channels") else row["flops"]   # structured: the smaller model's
        if row.get("validation_error") is None or second is None:
            return float("nan")                 # a diverged run: a failed trial
        return row["validation_error"], second


def _study(config: Config):
    optuna = _optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    Path(config.out).mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(Path(config.out) / "search.journal")))
    direction = "maximize" if config.objective == "ratio" else "minimize"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)     # TPE's multivariate, group
        sampler = optuna.samplers.TPESampler(seed=config.sampler_seed, multivariate=True, group=True,
                                             n_startup_trials=min(8, max(2, config.trials // 3)), constant_liar=True)
        return optuna.create_study(study_name="lc-search", storage=storage, sampler=sampler, load_if_exists=True,
                                   directions=["minimize", direction])


@dataclass
class _Worker:
    task: Classification
    config: Config
    families: list[Family]

    def __call__(self, i: int = 0):
        optuna = _optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = _study(self.config)
        done = optuna.trial.TrialState.COMPLETE
        left = self.config.trials - len(study.get_trials(deepcopy=False, states=(done,)))
        if left > 0:
            study.optimize(_Objective(self.task, self.config, self.families), n_trials=left,
                           callbacks=[optuna.study.MaxTrialsCallback(self.config.trials, states=(done,))],
                           catch=(lc.CompressionError,))


def search(config: Config) -> list[dict]:
    """Run the search in ``config.out`` (resuming it); returns the Pareto front's rows."""
    optuna = _optuna()
    if config.trials < 1:
        raise lc.CompressionError(f"trials={config.trials}: give at least 1")
    config.check_parallel()
    if config.task.validation <= 0:
        raise lc.CompressionError("the search chooses on validation data: give the task a validation fraction "
                                  "(--validation 0.2), never the test set")
    task = Classification(config.task)
    families = [fam for fam, _ in sweep._families(config)]
    for fam in families:
        _range(config, fam)
    RunStore(Path(config.out), config.fields(task), overwrite=config.overwrite)
    study = _study(config)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "family" in t.params:                # interrupted by a kill: proposed again (its run resumes)
            study.enqueue_trial(t.params, skip_if_exists=True)
    parallel.run_job(sweep._Prepare(task, config.cache_dir), config, Path(config.out) / "jobs", name="lc-reference")
    worker = _Worker(task, config, families)
    if config.workers > 1:
        parallel.run_workers(worker, config, Path(config.out) / "jobs", name="lc-search")
    else:
        worker()
    return _report(config, _study(config))


def _report(config: Config, study) -> list[dict]:
    rows = {r["run_id"]: r for r in RunStore(Path(config.out), None).rows()}
    trials = [t for t in study.get_trials(deepcopy=False) if t.values is not None and "run_id" in t.user_attrs]
    front = sorted((rows[t.user_attrs["run_id"]] for t in study.best_trials if t.user_attrs.get("run_id") in rows),
                   key=lambda r: r["ratio"])
    front = list({r["run_id"]: r for r in front}.values())
    write_text_atomic(Path(config.out) / "front.csv", csv_text(front, FRONT), what="the front")
    _plot(config, trials, front, Path(config.out) / "search.png")
    from .plot import plot_rows
    plot_rows(list(rows.values()), Path(config.out) / "tradeoff.png", x=config.objective)
    return front


def _plot(config: Config, trials, front: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import save_figure
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in config.families:
        points = [t.values for t in trials if t.params.get("family") == name]
        if points:
            ax.plot([p[1] for p in points], [100 * p[0] for p in points], "o", alpha=0.6, label=name)
    x = "ratio" if config.objective == "ratio" else "flops"
    ax.plot([r[x] for r in front], [100 * r["validation_error"] for r in front], "k-", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio" if x == "ratio" else "multiply-adds of the exported model")
    ax.set_ylabel("validation error (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def _main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.search", description=__doc__)
    if config.progress:
        logging.getLogger("lc").setLevel(logging.WARNING)
    front = search(config)
    print(f"\nPareto front of {config.trials} trials in {config.out} (chosen on validation; test measured once):")
    print(f"{'family':<16} {'value':>10} {'val err %':>10} {'test err %':>10} {'ratio':>8} {'MFLOPs':>8}")
    for r in front:
        print(f"{r['family']:<16} {r['value']:>10.4g} {100 * r['validation_error']:10.2f} "
              f"{100 * r['test_error']:10.2f} {r['ratio']:8.1f} {(r['flops'] or 0) / 1e6:8.3f}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(cli.console(_main))
