"""The sweep driver: compress one task's reference with every (family, value) of a sweep under the task's one L step,
for any task adapter (:class:`tasks.adapter.Adapter`), and write one row per run.

    from experiments.sweep import Sweep, run
    from tasks.classification import Classification, TaskConfig
    rows = run(Classification(TaskConfig()), Sweep(families=["pruning"], values={"pruning": [0.05]}, out="out"))

Writes to ``out`` (see :mod:`experiments.runs`, which lets several processes share it): ``rows.jsonl`` (the record),
``rows.csv``, ``config.json``, ``tradeoff.png`` (:mod:`experiments.plot`), the compressed model of every run
(``artifacts/<run_id>.lc``, written by ``lc.save``), and the LC checkpoint of each run in progress
(``checkpoints/<run_id>/``, removed once its row is written). A killed sweep resumes where it stopped.

Every row says what the run chose (``chosen``: per compressed weight, the nonzeros kept, the rank, the codebook
size; ``channels``: per layer, the channels a structured family kept) and warns (``warning``, and a logged WARNING)
when a run ends uncompressed or at the adapter's chance level. ``flops_exported`` counts the multiply-adds of the
exported model (a structured family's with its zero channels removed). A model with batch norms has its running
statistics re-estimated on the task's training inputs before it is evaluated, saved and exported, where the adapter
has a ``recalibrate`` (:func:`recalibrates`).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

import lc
from lc.batchnorm import running_norms
from tasks.adapter import Adapter, flops

from . import parallel
from .cli import option
from .progress import bar
from .baselines.common import Diverged, Job, Outcome, counting, nominal_ratio, train_size
from .parallel import Parallel
from .runs import RunStore
from .plot import X_AXES, plot_rows
from .schemes import FAMILIES, RENAMED, Family, family
from .structured import kept_channels

__all__ = ["Sweep", "run", "run_one", "reference", "columns", "chosen", "DEFAULT_FAMILIES", "LATENCY", "STARTS", "UNCOMPRESSED"]

log = logging.getLogger(__name__)

DEFAULT_FAMILIES = ("quantization", "pruning", "rank", "prune+quant")
LATENCY = ("latency_b1_ms_measured", "latency_b256_ms_measured", "speedup_b1_vs_dense_exported",
           "speedup_b256_vs_dense_exported", "speedup_b1_vs_reference", "speedup_b256_vs_reference")
STARTS = ("first", "zero", "both")
UNCOMPRESSED = 1.05          # a run whose nominal ratio is below this is flagged: it compressed (almost) nothing


def columns(evaluation: tuple[str, ...], metric: str, validation: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The columns of a sweep's rows for an adapter whose evaluation has the keys ``evaluation`` (and whose
    validation, where it has one, the keys ``validation``)."""
    return ("run_id", "task", "split", "family", "scheme", "parameter", "value", "start", "method", "kind",
            *(f"test_{k}" for k in evaluation), "ratio", "bits", "realised_ratio", "file_bytes", "flops",
            "flops_exported", f"reference_{metric}", "higher_is_better", "reference_flops", "steps", "epochs",
            "budget", "wall_time", "l_time", "c_time", "mu0", "mu_multiplier", "seed", *LATENCY, "warning", "chosen",
            "channels", *(f"validation_{k}" for k in validation))


@dataclass
class Sweep(Parallel):
    """What a sweep runs and where its results go (the task is the adapter's), and by how many workers
    (:class:`experiments.parallel.Parallel`). Every field is a flag (``--mu-multiplier 1.2``) and a key of a
    TOML/JSON config file."""

    families: list[str] = option(list(DEFAULT_FAMILIES), f"families to sweep, of: {', '.join(FAMILIES)}, "
                                                         "pruned-quantK")
    values: dict[str, list[int | float]] = option({}, "values per family, overriding its defaults: "
                                                      "--values pruning=0.05,0.1 quantization=2,4")
    steps: int = option(20, "LC steps (length of the μ schedule)")
    mu0: float = option(3e-3, "μ₀ of the schedule μ_j = μ₀ · a^j (for families without their own μ₀)")
    family_mu0: dict[str, float] = option({}, "μ₀ per family, overriding the family's own: --family-mu0 rank=1e-3")
    mu_multiplier: float = option(1.4, "a of the schedule μ_j = μ₀ · a^j")
    out: str = option("results/tradeoff", "output directory (rows.jsonl, rows.csv, tradeoff.png, config.json); "
                                          "several processes may share it", directory=True)
    cache_dir: str = option(".cache/references", "where trained reference models are cached (by config hash)")
    overwrite: bool = option(False, "discard earlier results in --out written by a different config")
    threads: int = option(1, "torch CPU threads (0: torch's default)")
    start: str = option("first", "where the LC path of the penalty forms (the α-valued families) starts: first "
                                 "(the direct compression at μ₁, the schedule's first μ), zero (at μ → 0⁺, the LC "
                                 "papers' start: nothing kept, rank 0), both (each run twice: two curves); other "
                                 "families start at μ₁, which is the same for them", choices=STARTS)
    latency: bool = option(True, "measure the latency of each run's exported model (lc.export) against the dense "
                                 "reference put through the same export, and against the reference itself, at "
                                 "batch 1 and 256, round-robin in the same process")
    progress: bool = option(True, "show progress: tqdm bars on a terminal, plain lines otherwise")
    budget: float = option(1.0, "the training budget of the baselines that train (experiments.baselines), as a "
                                "fraction of the LC run's: they call the task's L step round(budget · steps) times "
                                "(1: the same optimizer, schedule, batches and epochs as LC; 0.25: a cheaper one)")
    x_axis: str = option("ratio", "x axis of tradeoff.png: ratio (nominal compression ratio) or flops (FLOPs "
                                  "reduction: the dense multiply-adds over the exported model's)", choices=X_AXES)

    def fields(self, task: Adapter) -> dict:
        """What the results depend on (not where they go, nor how they are shown)."""
        return {"task": task.fingerprint(), "steps": self.steps, "mu0": self.mu0,
                "mu_multiplier": self.mu_multiplier}

    def mu0_of(self, fam: Family) -> float:
        return self.family_mu0.get(fam.name, fam.mu0 or self.mu0)

    def starts(self, fam: Family) -> tuple[str, ...]:
        """The starts of ``fam``'s runs: ``start`` for penalty forms (both, for "both"), else "first"."""
        if not fam.penalty:
            return ("first",)
        return ("first", "zero") if self.start == "both" else (self.start,)


def _families(config: Sweep) -> list[tuple[Family, tuple]]:
    unknown = []
    for name in [*config.families, *config.values, *config.family_mu0]:
        try:
            family(name)
        except lc.CompressionError:
            unknown.append(name)
    if unknown:
        renamed = "".join(f"; {n!r} is now called {RENAMED[n]}" for n in unknown if n in RENAMED)
        raise lc.CompressionError(f"unknown families {unknown}; choose among {', '.join(FAMILIES)}, or "
                                  f"pruned-quantK (K the codebook size){renamed}")
    out = [(family(name), tuple(config.values.get(name, family(name).values))) for name in config.families]
    for fam, values in out:
        for v in values:
            fam.check(v)
    return out


def _run_id(fields: dict, fam: Family, value, mu0: float, start: str = "first", budget: float = 1.0) -> str:
    spec = {**fields, "family": fam.name, "value": value, "mu0": mu0}
    if start != "first":                      # runs from μ₁ keep the ids they had before starts were offered
        spec["start"] = start
    if fam.run is not None and budget != 1:   # a baseline at another budget than LC's is another run
        spec["budget"] = budget
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class _Reference:
    """The reference and what every run is compared with."""

    model: torch.nn.Module
    evaluation: dict
    flops: int
    dense_export: torch.nn.Module | None      # the reference through lc.export, uncompressed (for the speedups)


def run(task: Adapter, config: Sweep, *, plot: bool = True) -> list[dict]:
    """Run every (family, value, start) of ``config`` on ``task`` not yet in ``config.out`` and not claimed by
    another live process there — in this process, or in ``config.workers`` workers (:mod:`experiments.parallel`);
    returns all rows there. ``plot``: (re)draw ``tradeoff.png`` from the rows at the end."""
    if config.threads:
        torch.set_num_threads(config.threads)
    config.check_parallel()
    families = _families(config)
    fields = config.fields(task)
    store = RunStore(Path(config.out), fields, overwrite=config.overwrite)
    if config.workers > 1:
        return _in_workers(task, config, store, sum(len(v) * len(config.starts(f)) for f, v in families), plot)
    ref = reference(task, config, store)
    runs = [(fam, v, start) for fam, values in families for v in values for start in config.starts(fam)]
    progress = bar(runs, desc="runs", enabled=config.progress)
    skipped = 0
    for fam, value, start in progress:
        progress.set_postfix_str(f"{fam.name} {fam.parameter}={value}" + (" from μ→0" if start == "zero" else ""))
        skipped += run_one(task, config, store, ref, fam, value, start) is None
    progress.close()
    if skipped:
        log.info("runs being done by other processes sharing %s: %d (their rows appear there when they finish)",
                 config.out, skipped)
    rows = store.rows()
    if plot:
        plot_rows(rows, Path(config.out) / "tradeoff.png", x=config.x_axis)
    return rows


def reference(task: Adapter, config: Sweep, store: RunStore) -> _Reference:
    """The task's reference (trained, or loaded from ``config.cache_dir``) and what every run is compared with; sets
    the store's CSV columns."""
    model = task.reference(cache_dir=config.cache_dir)
    ref_eval = _evaluate_reference(task, model)
    shape = tuple(task.example_input(1).shape[1:])
    ref = _Reference(model, ref_eval, flops(model, shape),
                     lc.export(model, lc.Compressed.none()) if config.latency else None)
    validation = tuple(k.removeprefix("validation_") for k in _validation(task, model))
    store.columns = list(columns(tuple(ref_eval), task.metric, validation))
    store.sync()
    log.info("reference: %s %.4f (%s)", task.metric, ref_eval[task.metric], task.split)
    return ref


def _evaluate_reference(task: Adapter, model: torch.nn.Module) -> dict:
    """``task.evaluate(model)`` of the reference; an :class:`lc.CompressionError` if it is no better than chance
    (its training diverged), before any run."""
    evaluation = task.evaluate(model)
    if _at_chance(task, evaluation[task.metric]):
        raise lc.CompressionError(
            f"the reference is no better than chance ({task.metric} {evaluation[task.metric]:.4g}, chance from "
            f"{task.chance:.4g}): every run would start from a useless network, so nothing is swept. Give a "
            "reference that learned: for the classifier (lc-tradeoff) a lower reference learning rate (--ref-lr), "
            "more reference epochs (--ref-epochs), another --seed, or trained weights (--weights)")
    return evaluation


def run_one(task: Adapter, config: Sweep, store: RunStore, ref: _Reference, fam: Family, value,
            start: str = "first") -> dict | None:
    """The row of one run (``fam`` at ``value``): done now if no process has claimed it, read from the store if it
    is done; None while another live process does it."""
    fields = config.fields(task)
    if recalibrates(task, ref.model):         # the rows of a batch-norm model mean another thing than before
        fields = {**fields, "bn": "recalibrated"}
    run_id = _run_id(fields, fam, value, config.mu0_of(fam), start, config.budget)
    if not store.claim(run_id):
        return next((r for r in store.rows() if r["run_id"] == run_id), None)
    try:
        one = _one_run if fam.run is None else _baseline_run
        row = one(config, task, ref, fam, value, start, run_id)
    except BaseException:
        store.release(run_id)
        raise
    store.add(row)
    return row


def _in_workers(task: Adapter, config: Sweep, store: RunStore, total: int, plot: bool) -> list[dict]:
    """The sweep's runs done by ``config.workers`` workers sharing ``store``: the reference trained first, once
    (here, or as one job), then every worker runs the sweep (:func:`run` in one process, without a plot), each run
    claimed by one of them; the plot drawn here at the end."""
    folder = Path(config.out) / "jobs"                  # submitit's job files and logs
    parallel.run_job(_Prepare(task, config.cache_dir), config, folder, name="lc-reference")
    single = dataclasses.replace(config, workers=1, overwrite=False, progress=False)
    progress = bar(total=total, desc=f"runs ({config.workers} workers)", enabled=config.progress)
    done = [0]

    def report():
        finished = len(store.done())
        progress.update(finished - done[0])
        done[0] = finished
    try:
        parallel.run_workers(_Worker(task, single), config, folder, progress=report, name="lc-sweep")
        report()
    finally:
        progress.close()
    rows = store.sync()
    if plot:
        plot_rows(rows, Path(config.out) / "tradeoff.png", x=config.x_axis)
    return rows


@dataclass
class _Prepare:
    """Train (or load) the task's reference into the cache (a picklable callable: a cluster job); refuse one at
    chance here, before any worker starts."""

    task: Adapter
    cache_dir: str

    def __call__(self):
        _evaluate_reference(self.task, self.task.reference(cache_dir=self.cache_dir))


@dataclass
class _Worker:
    """One worker: the whole sweep in one process, skipping what the others have claimed or done."""

    task: Adapter
    config: Sweep

    def __call__(self, i: int):
        logging.getLogger("experiments.runs").setLevel(logging.WARNING)    # not every run the others are doing
        run(self.task, self.config, plot=False)


def recalibrates(task: Adapter, model: torch.nn.Module) -> bool:
    """Whether a run's final model has its batch-norm statistics re-estimated before it is evaluated, saved and
    exported: where ``model`` has batch norms and the adapter a ``recalibrate(model)`` (the classifier's: forward
    passes over its training images, :func:`lc.recalibrate_batchnorm`). A batch norm's running mean and variance are
    buffers, which no C step touches: Δ(Θ) would otherwise be evaluated with the statistics of the L step's weights
    w, stale once the C step has moved them (ResNet20 with channels removed: 39.9 % validation error against
    9.3 % recalibrated; docs/structured.md)."""
    return callable(getattr(task, "recalibrate", None)) and bool(running_norms(model))


def _one_run(config: Sweep, task: Adapter, ref: _Reference, fam: Family, value, start: str, run_id: str) -> dict:
    net = copy.deepcopy(ref.model)
    torch.manual_seed(task.seed)
    shape = tuple(task.example_input(1).shape[1:])
    tasks = fam.tasks(net, value, task.compression_tasks, example=task.example_input(1))
    mu0 = config.mu0_of(fam)
    steps = bar(total=config.steps + 1, desc=f"  {fam.name} {value}" + (" from μ→0" if start == "zero" else ""),
                enabled=config.progress, leave=False)

    def progress(algorithm, record):
        steps.update(record.step + 1 - steps.n)
        steps.set_postfix({task.metric: f"{record.evaluation[task.metric]:.4f}", "ratio": f"{record.ratio:.1f}"})

    t = time.perf_counter()
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(mu0, config.mu_multiplier, config.steps),
                             task.l_step(ref.model), task.evaluate, callbacks=[progress],
                             checkpoint_dir=Path(config.out) / "checkpoints" / run_id,
                             example_input=task.example_input(1), direct_mu=0 if start == "zero" else None)
    diverged = None
    with counting(net) as examples:           # the training examples of this process (a resumed run: since then)
        try:
            history = algorithm.run()
        except lc.CompressionError as e:      # the L step diverged: recorded as such, as a baseline's would be
            if all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                raise
            history, diverged = algorithm.history, e
    wall = time.perf_counter() - t
    steps.close()
    last = history[-1]
    exported, final = None, net
    if diverged is None:
        evaluation = last.evaluation
        if recalibrates(task, net):           # Δ(Θ) with fresh statistics, before lc.export folds the batch norms
            final = task.recalibrate(lc.Compressed.of(algorithm).apply(copy.deepcopy(net)))
            evaluation = task.evaluate(final)
            last = SimpleNamespace(ratio=last.ratio, bits=last.bits, step=last.step, evaluation=evaluation)
        artifact = Path(config.out) / "artifacts" / f"{run_id}.lc"
        artifact.parent.mkdir(parents=True, exist_ok=True)
        file_bytes = lc.save(artifact, final, algorithm, overwrite=True)  # an unfinished run's file, if any, is ours
        exported = lc.export(final, algorithm, channels=fam.structured, example=task.example_input(1)) \
            if config.latency or fam.structured else None
        sizes = {"file_bytes": file_bytes, "realised_ratio": lc.storage.realised_ratio(net, file_bytes),
                 "flops": flops(net, shape),
                 "flops_exported": lc.measure.flops(exported, task.example_input(1)) if exported is not None else None,
                 **_latency(config, shape, ref, exported)}
    else:                                     # the diverged weights, at chance; no artifact
        evaluation = task.evaluate(net)
        last = SimpleNamespace(ratio=last.ratio, bits=last.bits, step=last.step, evaluation=evaluation)
        sizes = {"file_bytes": None, "realised_ratio": None, "flops": None, "flops_exported": None,
                 **dict.fromkeys(LATENCY)}
    row = {"run_id": run_id, "task": task.name, "split": task.split, "family": fam.name,
           "scheme": _describe(fam, tasks), "parameter": fam.parameter, "value": value, "start": start,
           "method": fam.method, "kind": fam.type,
           **{f"test_{k}": v for k, v in evaluation.items()}, "ratio": last.ratio, "bits": last.bits,
           f"reference_{task.metric}": ref.evaluation[task.metric],
           "higher_is_better": task.higher_is_better, "reference_flops": ref.flops, "steps": last.step,
           "epochs": _epochs(task, examples[0]), "budget": 1.0, "wall_time": wall,
           "l_time": sum(r.l_step_time for r in history), "c_time": sum(r.c_step_time for r in history),
           "mu0": mu0, "mu_multiplier": config.mu_multiplier, "seed": task.seed, **sizes, **_validation(task, final)}
    warnings = _warnings(task, last) + ([f"diverged after LC step {last.step}: {diverged}"] if diverged else [])
    for w in warnings:
        log.warning("%s %s=%s%s: %s", fam.name, fam.parameter, value, " (from μ→0)" if start == "zero" else "", w)
    row.update(warning="; ".join(warnings) or None, chosen=chosen(algorithm),
               channels=kept_channels(ref.model, exported) if exported is not None and fam.structured else None)
    shutil.rmtree(Path(config.out) / "checkpoints" / run_id, ignore_errors=True)
    return row


def _validation(task: Adapter, model: torch.nn.Module) -> dict:
    """``validation_<key>`` of the adapter's ``validate(model)``, where it has one and holds data out."""
    validate = getattr(task, "validate", None)
    values = validate(model) if validate is not None else None
    return {f"validation_{k}": v for k, v in (values or {}).items()}


def _epochs(task: Adapter, examples: int) -> float | None:
    """Training epochs: examples seen over the task's training set's size (None for a task without one: the
    Q-network's L step samples states)."""
    size = train_size(task)
    return examples / size if size else None


def _baseline_run(config: Sweep, task: Adapter, ref: _Reference, fam: Family, value, start: str,
                  run_id: str) -> dict:
    """One run of a baseline family (:mod:`experiments.baselines`): its method instead of lc.Algorithm, at the LC
    run's training budget (``config.steps`` L steps, times ``config.budget``); the same row, artifact and checks."""
    torch.manual_seed(task.seed)
    job = Job(task, ref.model, max(1, round(config.steps * config.budget)), fam)
    t = time.perf_counter()
    try:
        out, diverged = fam.run(job, value), None
    except Diverged as e:                     # recorded as what it is: the method diverged at this budget
        b = e.budget
        out, diverged = Outcome(e.model, lc.Compressed.none(), b.calls, b.examples, b.time), e
    wall = time.perf_counter() - t
    net, compressed = out.model, out.compressed
    if diverged is None and recalibrates(task, net):      # as LC's: fresh batch-norm statistics before anything
        task.recalibrate(net)
    evaluation = task.evaluate(net)
    shape = tuple(task.example_input(1).shape[1:])
    if diverged is None:
        ratio, bits = nominal_ratio(ref.model, net, compressed)
        artifact = Path(config.out) / "artifacts" / f"{run_id}.lc"
        artifact.parent.mkdir(parents=True, exist_ok=True)
        file_bytes = lc.save(artifact, net, compressed, overwrite=True)
        exported = lc.export(net, compressed) if config.latency else None
        sizes = {"file_bytes": file_bytes, "realised_ratio": lc.storage.realised_ratio(ref.model, file_bytes),
                 "flops": flops(net, shape), **_latency(config, shape, ref, exported)}
    else:                                     # the ratio its structure has; no artifact of non-finite weights
        planned = copy.deepcopy(ref.model)
        structure = fam.tasks(planned, value)
        ratio, bits = nominal_ratio(ref.model, planned, lc.Compressed.direct(planned, structure)) if structure \
            else nominal_ratio(ref.model, net, compressed)
        sizes = {"file_bytes": None, "realised_ratio": None, "flops": None, **dict.fromkeys(LATENCY)}
    record = SimpleNamespace(ratio=ratio, evaluation=evaluation)
    row = {"run_id": run_id, "task": task.name, "split": task.split, "family": fam.name,
           "scheme": f"{fam.method}: {fam.description}", "parameter": fam.parameter, "value": value, "start": None,
           "method": fam.method, "kind": fam.type, **{f"test_{k}": v for k, v in evaluation.items()},
           "ratio": ratio, "bits": bits, f"reference_{task.metric}": ref.evaluation[task.metric],
           "higher_is_better": task.higher_is_better, "reference_flops": ref.flops, "steps": out.steps,
           "epochs": _epochs(task, out.examples), "budget": config.budget if out.steps else None,
           "wall_time": wall, "l_time": out.l_time, "c_time": out.c_time, "mu0": None, "mu_multiplier": None,
           "seed": task.seed, **sizes, **_validation(task, net)}
    warnings = _warnings(task, record) + ([f"diverged: {diverged} (the metric is the diverged model's; no "
                                           "artifact)"] if diverged else [])
    for w in warnings:
        log.warning("%s %s=%s: %s", fam.name, fam.parameter, value, w)
    states = SimpleNamespace(tasks=compressed.tasks, states=compressed.states, model=net)
    row.update(warning="; ".join(warnings) or None, chosen={**chosen(states), **({"method": out.chosen}
                                                                                 if out.chosen else {})})
    return row


def _warnings(task: Adapter, last) -> list[str]:
    """Why a run's result is suspect: it compressed (almost) nothing, or its metric is at the adapter's
    ``chance`` (the value from which a model counts as no better than chance; absent: not checked)."""
    out = []
    if last.ratio < UNCOMPRESSED:
        out.append(f"uncompressed: nominal ratio {last.ratio:.3f} < {UNCOMPRESSED}")
    value = last.evaluation[task.metric]
    if _at_chance(task, value):
        out.append(f"at chance: {task.metric} {value:.4g} {'≤' if task.higher_is_better else '≥'} {task.chance:.4g}")
    return out


def _at_chance(task: Adapter, value: float) -> bool:
    """Whether ``value`` of ``task.metric`` is no better than the adapter's ``chance`` (absent: never)."""
    chance = getattr(task, "chance", None)
    return chance is not None and (value <= chance if task.higher_is_better else value >= chance)


def chosen(algorithm: lc.Algorithm) -> dict[str, dict]:
    """What a finished run chose, per compressed parameter (by name): ``kept``, the nonzeros of Δ(Θ), of
    ``size``; and from its task's state: ``rank`` (low rank, rank selection), ``codebook`` (its number of entries;
    per row: of each row's), ``bits`` (affine), ``alpha`` and ``budget_fraction`` (a shared rank budget); an
    additive combination lists its ``parts`` (a sparse part's ``kept``: its stored nonzeros). A task whose C step
    failed (its run diverged) has no state and is left out."""
    out = {}
    for task, state in zip(algorithm.tasks, algorithm.states):
        if state is None:                     # a C step that failed (a diverged L step) left none
            continue
        what = _choice(state)
        for name in task.param_names:
            delta = algorithm.model.get_parameter(name).detach()
            out[name] = {"kept": int(torch.count_nonzero(delta)), "size": delta.numel(), **what}
    return out


def _choice(state: lc.State) -> dict:
    what = {k: state.meta[k] for k in ("rank", "bits", "alpha", "budget_fraction") if k in state.meta}
    if "codebook" in state.tensors:
        what["codebook"] = int(state.tensors["codebook"].shape[-1])
    if state.parts:
        what["parts"] = [{**_choice(p), **({"kept": int(p.tensors["indices"].numel())}
                                            if "indices" in p.tensors else {})} for p in state.parts]
    return what


def _latency(config: Sweep, shape, ref: _Reference, exported) -> dict:
    """Measured: median forward time of the exported compressed model, of the dense reference put through the same
    export (``lc.Compressed.none()``: batch norms folded, channels-last, as the compressed model gets them) and of
    the reference itself, timed round-robin in one process (so both speedups are against baselines measured in the
    same run, under the same load). Neither export is micro-batched (``lc.export``'s default)."""
    if not config.latency:
        return dict.fromkeys(LATENCY)
    t = lc.measure.timings({"reference": copy.deepcopy(ref.model), "dense": ref.dense_export, "exported": exported},
                           shape, (1, 256), repeats=20, threads=max(config.threads, 1))
    ms = {b: 1e3 * t["exported"][b].wall for b in (1, 256)}
    return dict(zip(LATENCY, (ms[1], ms[256], t["dense"][1].wall / t["exported"][1].wall,
                              t["dense"][256].wall / t["exported"][256].wall,
                              t["reference"][1].wall / t["exported"][1].wall,
                              t["reference"][256].wall / t["exported"][256].wall)))


def _describe(fam: Family, tasks: dict) -> str:
    first = next(iter(tasks.values()))
    parts = first if isinstance(first, list) else [first]
    what = " + ".join(f"{getattr(v, '__name__', type(v).__name__)}/{type(c).__name__}" for v, c in parts)
    shared = any(getattr(c, "coupling", None) is not None for _, c in parts)
    return (f"{'all weights jointly' if fam.joint else 'each weight its own task'}"
            f"{', one shared budget' if shared else ''}: {what}")
