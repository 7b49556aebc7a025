"""The structured-pruning accuracy study (issue 19): error vs FLOPs reduction of LC's exact global allocation of
channels against (a) the same LC with the same fraction of every layer class, (b) Torch-Pruning's magnitude pruner
+ fine-tuning, (c) a Monte Carlo search over layer-wise ratios in the spirit of RL-Pruner + distillation fine-tuning —
one harness, the same data, the same training budget.

    python -m experiments.structured_study --config experiments/configs/structured/lenet5.toml
    python -m experiments.structured_study --config experiments/configs/structured/resnet20.toml --seeds 0
    python -m experiments.structured_study --config … --report-only          # the summary and plot from the rows

Data: the task's training set is split once more (stratified, seed 0) into training and ``validation_images``
validation images; every method trains on the same training images, the Monte Carlo search scores its samples on the
validation images, and the test images are used once, for the reported error of each finished model. Every
hyperparameter was chosen on the validation images (docs/structured.md says which and how).

The budget is the LC run's: ``steps`` L steps of the task's ``epochs_per_step`` epochs. Torch-Pruning fine-tunes
that many epochs; the search counts each evaluation as a forward pass over the validation images (a third of a
training pass per image, :func:`experiments.channel_baselines.eval_epochs`) and fine-tunes for what remains.
Every method reaches its FLOPs target with its own parameter (LC: the kept fraction of the FLOPs cost, found by
bisection on the direct compression of the reference; Torch-Pruning: its steps; the search: its budget per stage);
the reported reduction is measured on the final model (``lc.measure.flops``; LC's exported with its zero channels
removed). LC's runs end beyond their target (its L steps move the allocation), so the methods are compared along
their curves: each seed's error read at the targets by linear interpolation in log reduction (:func:`curve`), then
averaged over seeds (:func:`summary`). A run of LC whose L step diverges is a row too (``diverged``: its error is
the diverged weights', its reduction the target's: the allocation's on the reference), as the sweep records one.
Every method's final model has its batch-norm statistics re-estimated on the training images before it is
evaluated (:meth:`tasks.classification.Classification.recalibrate`: forward passes, no labels; LC's exported model
otherwise keeps its L step's statistics, stale once channels are removed). ``min_keep`` gives lc-global a floor per
layer class (``lc.ChannelPruning(min_keep=...)``); ``lc_distill`` gives LC's L step the search's distillation term
(the reference as the teacher). Rows go to ``out/rows.jsonl`` (:class:`experiments.runs.RunStore`: resumable, shareable), the summary to
``out/summary.csv`` and the plot to ``out/structured.png``.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import resource
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import lc
from tasks.classification import Classification, TaskConfig
from tasks.data import Dataset, load, stratified_split

from . import channel_baselines as cb
from . import cli
from .cli import option
from .runs import RunStore, csv_text
from .structured import kept_channels

__all__ = ["Config", "METHODS", "main", "run", "summary"]

log = logging.getLogger(__name__)

METHODS = ("lc-global", "lc-uniform", "torch-pruning", "mc-search")


@dataclass
class Config:
    """The study. Every field is a flag and a key of a TOML/JSON file; the task's own fields (data, model, reference
    training, the L step) under ``task``."""

    task: TaskConfig = option(TaskConfig(dataset="mnist", model="lenet5"), "the task: tasks.classification.TaskConfig")
    methods: list[str] = option(list(METHODS), "methods to run", choices=METHODS)
    targets: list[float] = option([1.5, 2.0, 3.0, 4.0], "FLOPs reductions (dense multiply-adds / pruned)")
    global_extra_targets: list[float] = option(
        [1.25], "lc-global's targets besides those: its runs end with more than their target's reduction (the LC "
                "steps move the allocation to channels whose removal saves more than their producers' cost), so "
                "that its curve reaches down to the first target")
    seeds: list[int] = option([0, 1, 2], "seeds: of the reference's initialisation and batch order, and each run's")
    validation_images: int = option(1000, "validation images held out of the task's training images (stratified, "
                                          "seed 0; the task's own validation fraction stays 0)")
    steps: int = option(20, "LC steps; the training budget of every method is steps · epochs_per_step epochs")
    mu0: float = option(1e-3, "LC: μ₀ of the schedule μ_j = μ₀ · a^j")
    mu_multiplier: float = option(1.4, "LC: a of the schedule")
    min_keep: float = option(0.0, "lc-global: the fraction of every layer class's channels always kept (a floor in "
                                  "the exact allocation; ChannelPruning(min_keep=...))")
    lc_distill: float = option(0.0, "lc-global, lc-uniform: weight β of a distillation term from the reference in "
                                    "the L step, (1 − β)·CE + β·T²·KL (T: the task's temperature), as the search's "
                                    "fine-tuning has; 0: none")
    tp_lr: float = option(0.01, "Torch-Pruning: initial learning rate of the fine-tuning's cosine schedule")
    tp_importance: str = option("group-norm", "Torch-Pruning: magnitude importance, l1 or group-norm",
                                choices=("l1", "group-norm"))
    tp_global: bool = option(False, "Torch-Pruning: rank channels globally (else the same ratio per layer)")
    search_stages: int = option(3, "search: pruning stages (each followed by distillation fine-tuning)")
    search_samples: int = option(12, "search: allocations sampled and scored per stage")
    search_sigma: float = option(0.5, "search: log-normal noise on the layer classes' shares")
    search_lr: float = option(0.1, "search: initial learning rate of the fine-tuning's cosine schedule")
    search_distill: float = option(0.5, "search: weight β of the distillation term in fine-tuning (T: the task's "
                                                "temperature)")
    out: str = option("results/structured", "output directory (rows.jsonl, rows.csv, summary.csv, structured.png)",
                      directory=True)
    cache_dir: str = option(".cache/references", "where trained reference models are cached")
    threads: int = option(1, "torch CPU threads")
    report_only: bool = option(False, "only write the summary and the plot from the rows there")

    def budget(self) -> int:
        """Training epochs of every method: the LC run's L steps."""
        first = self.task.first_step_epochs or self.task.epochs_per_step
        return first + (self.steps - 1) * self.task.epochs_per_step

    def method_fields(self, method: str) -> dict:
        """What a method's result depends on, besides the task, the seed and the target."""
        common = {"validation": self.validation_images, "budget": self.budget(), "bn": "recalibrated"}
        if method.startswith("lc-"):
            floor = {"min_keep": self.min_keep} if method == "lc-global" and self.min_keep else {}
            distill = {"distill": self.lc_distill, "temperature": self.task.temperature} if self.lc_distill else {}
            return {**common, "bn": "recalibrated before export", "steps": self.steps, "mu0": self.mu0,
                    "mu_multiplier": self.mu_multiplier, **floor, **distill}
        if method == "torch-pruning":
            return {**common, "lr": self.tp_lr, "importance": self.tp_importance, "global": self.tp_global}
        return {**common, "lr": self.search_lr, "stages": self.search_stages, "samples": self.search_samples,
                "sigma": self.search_sigma, "distill": self.search_distill, "temperature": self.task.temperature}


def split(data: Dataset, validation: int) -> tuple[Dataset, Dataset]:
    """(training → test, training → validation): the task's training images less ``validation`` of them (stratified,
    seed 0), with the test set; and the same training images with the validation images as their "test" set."""
    tr, va = stratified_split(data.y_train, validation)
    name = f"{data.split}; its training part split {len(tr)}/{len(va)} (stratified, seed 0) into training/validation"
    test = Dataset(data.name, data.x_train[tr], data.y_train[tr], data.x_test, data.y_test, name, data.num_classes)
    val = Dataset(data.name, data.x_train[tr], data.y_train[tr], data.x_train[va], data.y_train[va], name,
                  data.num_classes)
    return test, val


@dataclass
class _Seed:
    """One seed's task (test evaluation), validation task, reference and example input."""

    task: Classification
    val: Classification
    reference: torch.nn.Module
    example: torch.Tensor

    @property
    def train_images(self) -> int:
        return len(self.task.data.y_train)


def _seed(config: Config, data: tuple[Dataset, Dataset], seed: int) -> _Seed:
    task_config = dataclasses.replace(config.task, seed=seed, distill=0.0)
    task = Classification(task_config, data=data[0])
    reference = task.reference(cache_dir=config.cache_dir).eval()
    return _Seed(task, Classification(task_config, data=data[1]), reference, task.example_input(1))


# ---------------------------------------------------------------------------------------------- the methods
def _lc_keep(s: _Seed, target: float, allocation: str, min_keep: float = 0.0) -> float:
    """The largest kept fraction of the FLOPs cost whose direct compression of the reference has ``target``× fewer
    multiply-adds (bisection, 20 halvings; the FLOPs of the model with the zeroed groups removed). With a floor
    (``min_keep``), a fraction too small to pay for it counts as too small; where the floor allows less than the
    target, the smallest fraction that pays for it (the floor alone: the run ends short of its target, and its row
    says by how much in ``flops_reduction``)."""
    channels = cb.Channels(s.reference, s.example)
    dense = channels.flops(np.ones(channels.count, dtype=bool))
    lo, hi, payable = 0.0, 1.0, True             # payable: lo was solved (not refused by the floor)
    for _ in range(20):
        keep = (lo + hi) / 2
        try:
            tasks = _lc_tasks(s, keep, allocation, min_keep)
            c = lc.Compressed.direct(s.reference, tasks, example_input=s.example)
        except lc.CompressionError:
            if not min_keep:
                raise
            lo, payable = keep, False
            continue
        deltas = c.deltas()
        kept = np.array([any(bool(deltas[n][j].any()) for n, j in g.members) for g in channels.graph.groups])
        lo, hi, payable = (keep, hi, True) if dense / channels.flops(kept) >= target else (lo, keep, payable)
    if not payable:
        log.warning("%s: the floor min_keep=%g allows less than %gx fewer multiply-adds; the run keeps the floor "
                    "(keep=%.6f)", allocation, min_keep, target, hi)
        return hi
    return lo


def _pruning(keep: float, allocation: str, min_keep: float = 0.0) -> lc.ChannelPruning:
    return lc.ChannelPruning(keep=keep, cost="flops", allocation=allocation,
                             min_keep=min_keep if allocation == "global" else 0.0)


def _lc_tasks(s: _Seed, keep: float, allocation: str, min_keep: float = 0.0) -> dict:
    return lc.channel_tasks(s.reference, _pruning(keep, allocation, min_keep), s.example)


def _distilling(s: _Seed, beta: float) -> Classification:
    """The seed's task with the distillation term of weight ``beta`` in its training loss (the teacher: whoever
    trains with it passes the reference)."""
    return Classification(dataclasses.replace(s.task.config, distill=beta), data=s.task.data)


def run_lc(config: Config, s: _Seed, target: float, allocation: str) -> tuple[torch.nn.Module, dict]:
    keep = _lc_keep(s, target, allocation, config.min_keep)
    net = copy.deepcopy(s.reference)
    torch.manual_seed(s.task.seed)
    l_step = _distilling(s, config.lc_distill).l_step(s.reference) if config.lc_distill else s.task.l_step()
    algorithm = lc.Algorithm(net, lc.channel_tasks(net, _pruning(keep, allocation, config.min_keep), s.example),
                             lc.geometric_mu(config.mu0, config.mu_multiplier, config.steps), l_step,
                             s.val.evaluate, example_input=s.example)
    try:
        history = algorithm.run()
    except lc.CompressionError as e:          # the L step diverged: a result of the method at this budget, as the
        if all(bool(torch.isfinite(p).all()) for p in net.parameters()):      # sweep records it (no model to export)
            raise
        return net, {"keep": keep, "epochs_used": config.budget(), "val_error": s.val.evaluate(net)["error"],
                     "diverged": f"after LC step {len(algorithm.history) - 1}: {e}"}
    return export_lc(s.task, net, algorithm, s.example), {"keep": keep, "epochs_used": config.budget(), "val_error": history[-1].evaluation["error"]}


def export_lc(task: Classification, net: torch.nn.Module, compressed, example: torch.Tensor) -> torch.nn.Module:
    """Δ(Θ) of ``compressed`` with its batch-norm statistics re-estimated on the task's training images (``net``'s
    are the L step's weights', stale once channels are removed), then exported with the zero channels removed —
    in this order, because ``lc.export`` folds the batch norms into the convolutions."""
    compressed = lc.Compressed.of(compressed)
    delta = task.recalibrate(compressed.apply(copy.deepcopy(net)))
    return lc.export(delta, compressed, channels=True, example=example)


def run_torch_pruning(config: Config, s: _Seed, target: float) -> tuple[torch.nn.Module, dict]:
    net = cb.torch_pruning(s.reference, s.example, target, config.tp_importance, config.tp_global)
    torch.manual_seed(s.task.seed)
    cb.fine_tune(s.task, net, config.budget(), config.tp_lr)
    return net, {"epochs_used": config.budget(), "val_error": s.val.evaluate(net)["error"]}


def run_search(config: Config, s: _Seed, target: float) -> tuple[torch.nn.Module, dict]:
    search = cb.Search(stages=config.search_stages, samples=config.search_samples, sigma=config.search_sigma)
    evaluations = search.stages * search.samples
    searching = evaluations * cb.eval_epochs(config.validation_images, s.train_images)
    tuning = math.floor(config.budget() - searching)
    if tuning < search.stages:
        raise lc.CompressionError(f"the search's {evaluations} evaluations ({searching:.1f} epochs) leave "
                                  f"{tuning} epochs of the budget of {config.budget()} for fine-tuning; fewer "
                                  "samples or stages, or more steps")
    per_stage = [tuning // search.stages + (i < tuning % search.stages) for i in range(search.stages)][::-1]
    distilling = _distilling(s, config.search_distill)
    teacher = copy.deepcopy(s.reference).eval().requires_grad_(False)

    def score(model):
        e = s.val.evaluate(model)
        return e["error"], e["loss"]

    def tune(model, stage):
        cb.fine_tune(distilling, model, per_stage[stage - 1], config.search_lr, teacher=teacher)

    torch.manual_seed(s.task.seed)
    found = cb.mc_search(s.reference, s.example, target, score, tune, search, np.random.default_rng(s.task.seed))
    assert found["evaluations"] == evaluations
    return found["model"], {"epochs_used": tuning + searching, "evaluations": evaluations, "share": found["share"],
                            "finetune_epochs": per_stage, "val_error": s.val.evaluate(found["model"])["error"]}


def _run_id(config: Config, task: Classification, method: str, target: float) -> str:
    spec = {"task": task.fingerprint(), "method": method, "target": target, **config.method_fields(method)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _one(config: Config, s: _Seed, method: str, target: float, run_id: str) -> dict:
    wall, cpu = time.perf_counter(), _cpu()
    row = {"run_id": run_id, "model": config.task.model, "method": method, "seed": s.task.seed, "target": target,
           "split": s.task.split, "budget_epochs": config.budget()}
    try:
        if method.startswith("lc-"):
            net, info = run_lc(config, s, target, method.removeprefix("lc-"))
        elif method == "torch-pruning":
            net, info = run_torch_pruning(config, s, target)
        else:
            net, info = run_search(config, s, target)
    except Exception as e:  # noqa: BLE001 - a baseline that cannot prune this model is a result, said in the row
        if method != "torch-pruning":
            raise
        log.warning("%s on %s: %s: %s", method, config.task.model, type(e).__name__, e)
        return {**row, "failed": f"{type(e).__name__}: {str(e)[:300]}"}
    dense, diverged = lc.measure.flops(s.reference, s.example), "diverged" in info
    if not diverged:        # every method's final model: batch-norm statistics re-estimated on the training images
        info["val_error"] = s.val.evaluate(s.task.recalibrate(net))["error"]      # (LC's: before export, above)
    flops = None if diverged else lc.measure.flops(net, s.example)
    if diverged:
        log.warning("%s on %s seed %d at %gx diverged %s", method, config.task.model, s.task.seed, target,
                    info["diverged"])
    return {**row, "test_error": s.task.evaluate(net)["error"], **info,
            "reference_test_error": s.task.evaluate(s.reference)["error"],
            "reference_val_error": s.val.evaluate(s.reference)["error"],
            "flops_dense": dense, "flops": flops, "flops_reduction": target if diverged else dense / flops,
            "params_dense": lc.measure.parameter_count(s.reference),
            "params": None if diverged else lc.measure.parameter_count(net),
            "channels": None if diverged else kept_channels(s.reference, net), "wall_time": time.perf_counter() - wall,
            "cpu_time": _cpu() - cpu}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(config: Config) -> list[dict]:
    """Every (seed, target, method) of ``config`` not yet in ``config.out``; returns this config's rows there."""
    if config.task.validation:
        raise lc.CompressionError(f"task.validation={config.task.validation}: the study holds out its own validation "
                                  "images (validation_images); leave the task's fraction at 0")
    if not 0 <= config.lc_distill <= 1:
        raise lc.CompressionError(f"lc_distill={config.lc_distill!r} is the weight β of the distillation term in "
                                  "(1 − β)·cross-entropy + β·distillation; it must lie in [0, 1]")
    torch.set_num_threads(config.threads)
    store = RunStore(Path(config.out), None)
    data = split(load(config.task.dataset, config.task.data_dir), config.validation_images)
    ids = []
    for seed in config.seeds:
        task, s = Classification(dataclasses.replace(config.task, seed=seed, distill=0.0), data=data[0]), None
        runs = [(t, m) for t in config.targets for m in config.methods] + \
            [(t, "lc-global") for t in config.global_extra_targets if "lc-global" in config.methods]
        for target, method in runs:
            run_id = _run_id(config, task, method, target)
            ids.append(run_id)
            if config.report_only or not store.claim(run_id):
                continue
            log.info("%s seed %d: %s at %gx", config.task.model, seed, method, target)
            try:
                s = s or _seed(config, data, seed)          # the reference: trained (or loaded) once a run needs it
                row = _one(config, s, method, target, run_id)
            except BaseException:
                store.release(run_id)
                raise
            store.add(row)
            if "failed" not in row:
                log.info("  test error %.2f%%, %.2fx fewer multiply-adds, %.0f s", 100 * row["test_error"],
                         row["flops_reduction"], row["wall_time"])
    rows = [r for r in store.rows() if r["run_id"] in set(ids)]
    report(rows, Path(config.out), sorted(config.targets))
    return rows


# ---------------------------------------------------------------------------------------------- the report
EXTRAPOLATE = 0.05
"""How far (in log FLOPs reduction) a seed's curve is read beyond its measured points: ±5 % (a method that lands
at 1.51× for the target 1.5× is read at 1.5× as its 1.51× run); further, the point is left out."""


def curve(rows: list[dict], at: float) -> float | None:
    """One seed's test error (%) at the FLOPs reduction ``at``: linear in log reduction between its runs' measured
    points (within :data:`EXTRAPOLATE` beyond them, the nearest run's), else None."""
    points = sorted((math.log(r["flops_reduction"]), 100 * r["test_error"]) for r in rows)
    x = math.log(at)
    if not points or x < points[0][0] - EXTRAPOLATE or x > points[-1][0] + EXTRAPOLATE:
        return None
    return float(np.interp(x, [p for p, _ in points], [e for _, e in points]))


def summary(rows: list[dict], grid: list[float]) -> list[dict]:
    """Per method and FLOPs reduction of ``grid``: each seed's curve read there (:func:`curve`), their mean and
    standard deviation; and, for every method but lc-global, lc-global's mean there and ``lc_at_or_below`` (its mean
    at or below the method's) and ``lc_minus_other_paired`` (the mean over the seeds both have of lc-global − the
    method: the same reference, so paired)."""
    done = [r for r in rows if "failed" not in r]
    read = {}                                         # (method, at) → {seed: error}
    for method in dict.fromkeys(r["method"] for r in done):
        for seed in sorted({r["seed"] for r in done if r["method"] == method}):
            rs = [r for r in done if r["method"] == method and r["seed"] == seed]
            for at in grid:
                e = curve(rs, at)
                if e is not None:
                    read.setdefault((method, at), {})[seed] = e
    out = []
    for (method, at), errors in read.items():
        row = {"method": method, "flops_reduction": at, "seeds": len(errors),
               "test_error_mean": statistics.mean(errors.values()),
               "test_error_std": statistics.stdev(errors.values()) if len(errors) > 1 else 0.0}
        mine = read.get(("lc-global", at), {})
        if method != "lc-global" and mine:
            both = sorted(set(mine) & set(errors))
            row["lc_global_mean"] = statistics.mean(mine.values())
            row["lc_at_or_below"] = row["lc_global_mean"] <= row["test_error_mean"]
            row["lc_minus_other_paired"] = statistics.mean(mine[k] - errors[k] for k in both) if both else None
        out.append(row)
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(out, key=lambda r: (order.get(r["method"], 99), r["flops_reduction"]))


def report(rows: list[dict], out: Path, grid: list[float]) -> None:
    """``summary.csv`` and ``structured.png`` in ``out``, and the summary printed."""
    table = summary(rows, grid)
    lc._io.write_text_atomic(out / "summary.csv", csv_text(table), what="the summary")
    _plot(rows, table, out / "structured.png")
    for r in table:
        verdict = "" if "lc_at_or_below" not in r else (
            f"  lc-global {r['lc_global_mean']:.2f}%: {'at or below' if r['lc_at_or_below'] else 'ABOVE'}"
            + (f", paired difference {r['lc_minus_other_paired']:+.2f}" if r["lc_minus_other_paired"] is not None
               else ""))
        print(f"{r['method']:<14} {r['flops_reduction']:>4g}x  {r['test_error_mean']:5.2f} ± "
              f"{r['test_error_std']:4.2f}% ({r['seeds']} seeds){verdict}")
    for r in rows:
        if "failed" in r:
            print(f"{r['method']} seed {r['seed']} at {r['target']:g}x failed: {r['failed']}")
        if "diverged" in r:
            print(f"{r['method']} seed {r['seed']} at {r['target']:g}x diverged {r['diverged'][:120]}")


def _plot(rows: list[dict], table: list[dict], path: Path) -> None:
    """Each method's mean (± std) over seeds at the grid's reductions, and every run as a small dot at its measured
    reduction; the references' mean as a dashed line. With diverged runs the y axis ends at 3× the worst error of
    the others (100 % if every run diverged): a diverged run is an ×, at the edge, its error written."""
    from .plot import plt, save_figure
    fig, ax = plt.subplots(figsize=(7, 4.5))
    done = [r for r in rows if "failed" not in r]
    tidy = [100 * r["test_error"] for r in done if "diverged" not in r]
    edge = None
    if len(tidy) < len(done):                                  # diverged runs, drawn at the edge
        edge = min(100.0, 3 * max(tidy)) if tidy else 100.0
    for method in [m for m in METHODS if any(r["method"] == m for r in table)]:
        rs = [r for r in table if r["method"] == method]
        line = ax.errorbar([r["flops_reduction"] for r in rs], [r["test_error_mean"] for r in rs],
                           yerr=[r["test_error_std"] for r in rs], marker="o", capsize=3, label=method)
        colour = line.lines[0].get_color()
        runs = [r for r in done if r["method"] == method and "diverged" not in r]
        ax.plot([r["flops_reduction"] for r in runs], [100 * r["test_error"] for r in runs], ".", ms=4, alpha=0.5,
                color=colour)
        for r in (r for r in done if r["method"] == method and "diverged" in r):
            ax.plot([r["flops_reduction"]], [edge], "x", color=colour, ms=8, clip_on=False)
            ax.annotate(f"diverged, seed {r['seed']}: {100 * r['test_error']:.3g}%", (r["flops_reduction"], edge),
                        fontsize=6, color=colour, textcoords="offset points", xytext=(4, -8), annotation_clip=False)
    if done:
        refs = {r["seed"]: 100 * r["reference_test_error"] for r in done}
        ax.axhline(statistics.mean(refs.values()), color="k", ls="--", lw=1,
                   label=f"reference ({statistics.mean(refs.values()):.2f}%, mean of {len(refs)} seeds)")
        ax.set_title("\n".join(textwrap.wrap(f"{done[0]['model']} — {done[0]['split']}", 120)), fontsize=7)
    if edge is not None:
        ax.set_ylim(0, edge)
    ax.set_xscale("log")
    ticks = sorted({r["flops_reduction"] for r in table})
    ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("FLOPs reduction (dense multiply-adds / the pruned model's, measured)")
    ax.set_ylabel("test error (%): mean ± std over seeds; dots: runs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lc").setLevel(logging.WARNING)
    config = cli.parse(Config, argv, prog="python -m experiments.structured_study", description=__doc__)
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(cli.console(main))
