"""The sweep driver: compress one task's reference with every (family, value) of a sweep under the task's one L step,
for any task adapter (:class:`tasks.adapter.Adapter`), and write one row per run.

    from experiments.sweep import Sweep, run
    from tasks.classification import Classification, TaskConfig
    rows = run(Classification(TaskConfig()), Sweep(families=["pruning"], values={"pruning": [0.05]}, out="out"))

Writes to ``out`` (see :mod:`experiments.runs`, which lets several processes share it): ``rows.jsonl`` (the record),
``rows.csv``, ``config.json``, ``tradeoff.png`` (:mod:`experiments.plot`), the compressed model of every run
(``artifacts/<run_id>.lc``, written by ``lc.save``), and the LC checkpoint of each run in progress
(``checkpoints/<run_id>/``, removed once its row is written). A killed sweep resumes where it stopped.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

import lc
from tasks.adapter import Adapter, flops

from .cli import option
from .runs import RunStore
from .schemes import FAMILIES, Family, family

__all__ = ["Sweep", "run", "columns", "DEFAULT_FAMILIES", "LATENCY"]

log = logging.getLogger(__name__)

DEFAULT_FAMILIES = ("quantization", "pruning", "rank", "prune+quant")
LATENCY = ("latency_b1_ms_measured", "latency_b256_ms_measured", "speedup_b1_measured", "speedup_b256_measured")


def columns(evaluation: tuple[str, ...], metric: str) -> tuple[str, ...]:
    """The columns of a sweep's rows for an adapter whose evaluation has the keys ``evaluation``."""
    return ("run_id", "task", "split", "family", "scheme", "parameter", "value",
            *(f"test_{k}" for k in evaluation), "ratio", "bits", "realised_ratio", "file_bytes", "flops",
            f"reference_{metric}", "reference_flops", "steps", "wall_time", "l_time", "c_time", "mu0",
            "mu_multiplier", "seed", *LATENCY)


@dataclass
class Sweep:
    """What a sweep runs and where its results go (the task is the adapter's). Every field is a flag
    (``--mu-multiplier 1.2``) and a key of a TOML/JSON config file."""

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
    latency: bool = option(True, "measure the latency of each run's exported model (lc.export) against the "
                                 "reference, at batch 1 and 256, round-robin in the same process")
    progress: bool = option(True, "show tqdm progress bars")

    def fields(self, task: Adapter) -> dict:
        """What the results depend on (not where they go, nor how they are shown)."""
        return {"task": task.fingerprint(), "steps": self.steps, "mu0": self.mu0,
                "mu_multiplier": self.mu_multiplier}

    def mu0_of(self, fam: Family) -> float:
        return self.family_mu0.get(fam.name, fam.mu0 or self.mu0)


def _families(config: Sweep) -> list[tuple[Family, tuple]]:
    unknown = []
    for name in [*config.families, *config.values, *config.family_mu0]:
        try:
            family(name)
        except lc.CompressionError:
            unknown.append(name)
    if unknown:
        raise lc.CompressionError(f"unknown families {unknown}; choose among {', '.join(FAMILIES)}, or "
                                  "pruned-quantK (K the codebook size)")
    return [(family(name), tuple(config.values.get(name, family(name).values))) for name in config.families]


def _run_id(fields: dict, fam: Family, value, mu0: float) -> str:
    spec = {**fields, "family": fam.name, "value": value, "mu0": mu0}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(task: Adapter, config: Sweep) -> list[dict]:
    """Run every (family, value) of ``config`` on ``task`` not yet in ``config.out`` and not claimed by another
    live process there; returns all rows there."""
    if config.threads:
        torch.set_num_threads(config.threads)
    families = _families(config)
    fields = config.fields(task)
    store = RunStore(Path(config.out), fields, overwrite=config.overwrite)
    reference = task.reference(cache_dir=config.cache_dir)
    ref_eval = task.evaluate(reference)
    shape = tuple(task.example_input(1).shape[1:])
    ref_flops = flops(reference, shape)
    store.columns = list(columns(tuple(ref_eval), task.metric))
    store.sync()
    log.info("reference: %s %.4f (%s)", task.metric, ref_eval[task.metric], task.split)
    runs = [(fam, v) for fam, values in families for v in values]
    bar = tqdm(runs, desc="runs", disable=not config.progress, dynamic_ncols=True)
    skipped = 0
    for fam, value in bar:
        run_id = _run_id(fields, fam, value, config.mu0_of(fam))
        bar.set_postfix_str(f"{fam.name} {fam.parameter}={value}")
        if not store.claim(run_id):
            skipped += run_id not in store.done()
            continue
        try:
            row = _one_run(config, task, reference, fam, value, run_id, ref_eval, ref_flops)
        except BaseException:
            store.release(run_id)
            raise
        store.add(row)
    bar.close()
    if skipped:
        log.info("runs being done by other processes sharing %s: %d (their rows appear there when they finish)",
                 config.out, skipped)
    rows = store.rows()
    from .plot import plot_rows
    plot_rows(rows, Path(config.out) / "tradeoff.png")
    return rows


def _one_run(config: Sweep, task: Adapter, reference, fam: Family, value, run_id, ref_eval, ref_flops) -> dict:
    net = copy.deepcopy(reference)
    torch.manual_seed(task.seed)
    tasks = fam.tasks(net, value, task.compression_tasks)
    mu0 = config.mu0_of(fam)
    steps = tqdm(total=config.steps + 1, desc=f"  {fam.name} {value}", leave=False, disable=not config.progress,
                 dynamic_ncols=True)

    def progress(algorithm, record):
        steps.update(record.step + 1 - steps.n)
        steps.set_postfix({task.metric: f"{record.evaluation[task.metric]:.4f}", "ratio": f"{record.ratio:.1f}"})

    t = time.perf_counter()
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(mu0, config.mu_multiplier, config.steps),
                             task.l_step(reference), task.evaluate, callbacks=[progress],
                             checkpoint_dir=Path(config.out) / "checkpoints" / run_id,
                             example_input=task.example_input(1))
    history = algorithm.run()
    wall = time.perf_counter() - t
    steps.close()
    last = history[-1]
    artifact = Path(config.out) / "artifacts" / f"{run_id}.lc"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    file_bytes = lc.save(artifact, net, algorithm, overwrite=True)    # an unfinished run's file, if any, is ours
    shape = tuple(task.example_input(1).shape[1:])
    row = {"run_id": run_id, "task": task.name, "split": task.split, "family": fam.name,
           "scheme": _describe(fam, tasks), "parameter": fam.parameter, "value": value,
           **{f"test_{k}": v for k, v in last.evaluation.items()}, "ratio": last.ratio, "bits": last.bits,
           "file_bytes": file_bytes, "realised_ratio": lc.storage.realised_ratio(net, file_bytes),
           "flops": flops(net, shape), f"reference_{task.metric}": ref_eval[task.metric],
           "reference_flops": ref_flops, "steps": last.step, "wall_time": wall,
           "l_time": sum(r.l_step_time for r in history), "c_time": sum(r.c_step_time for r in history),
           "mu0": mu0, "mu_multiplier": config.mu_multiplier, "seed": task.seed,
           **_latency(config, shape, reference, net, algorithm)}
    shutil.rmtree(Path(config.out) / "checkpoints" / run_id, ignore_errors=True)
    return row


def _latency(config: Sweep, shape, reference, net, algorithm) -> dict:
    """Measured: median forward time of the exported compressed model and of the reference, timed round-robin in
    one process (so the speedup is against a baseline measured in the same run, under the same load)."""
    if not config.latency:
        return dict.fromkeys(LATENCY)
    exported = lc.export(net, algorithm, example=torch.randn(256, *shape))
    t = lc.measure.timings({"reference": copy.deepcopy(reference), "exported": exported}, shape, (1, 256),
                           repeats=20, threads=max(config.threads, 1))
    ms = {b: 1e3 * t["exported"][b].wall for b in (1, 256)}
    return dict(zip(LATENCY, (ms[1], ms[256], t["reference"][1].wall / t["exported"][1].wall,
                              t["reference"][256].wall / t["exported"][256].wall)))


def _describe(fam: Family, tasks: dict) -> str:
    first = next(iter(tasks.values()))
    parts = first if isinstance(first, list) else [first]
    what = " + ".join(f"{getattr(v, '__name__', type(v).__name__)}/{type(c).__name__}" for v, c in parts)
    return f"{'all weights jointly' if fam.joint else 'each weight its own task'}: {what}"
