"""The main job: tradeoff curves of test error vs compression ratio, one curve per compression family, all under the
same L step (one fixed set of training hyperparameters per task).

    python -m experiments.tradeoff                                  # digits + LeNet300, a few minutes on a CPU
    python -m experiments.tradeoff --config experiments/configs/lenet300_mnist.toml --data-dir /data/mnist
    python -m experiments.tradeoff --families pruning quantization --values pruning=0.05,0.1 --steps 30
    lc-tradeoff --help

Trains (or loads from ``--cache-dir``) the reference, then runs every (family, value) of the sweep with
:class:`lc.Algorithm`. Writes to ``--out``: ``rows.jsonl`` (one JSON object per run, the record), ``rows.csv``
(the same rows), ``tradeoff.png`` (plotted from the rows by :mod:`experiments.plot`), ``config.json``, and the
compressed model of every run (``artifacts/<run_id>.lc``, written by ``lc.save``). A killed
sweep resumes where it stopped (finished runs are skipped, an unfinished run continues from its last LC step);
results of a different config are never overwritten unless ``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

import lc
from tasks.classification import Classification, TaskConfig, compression_tasks, flops

from .families import FAMILIES, Family

__all__ = ["Config", "main", "run_sweep", "COLUMNS"]

DEFAULT_FAMILIES = ("quantization", "pruning", "rank", "prune+quant")
COLUMNS = ("run_id", "task", "split", "family", "scheme", "parameter", "value", "test_error", "test_loss",
           "ratio", "bits", "realised_ratio", "file_bytes", "flops", "reference_error", "reference_flops", "steps",
           "wall_time", "l_time", "c_time", "mu0", "mu_multiplier", "seed",
           "latency_b1_ms_measured", "latency_b256_ms_measured", "speedup_b1_measured", "speedup_b256_measured")


def _field(default, help: str):
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    """The sweep. Every field is a flag (``--mu-multiplier 1.2``) and a key of a TOML/JSON config file; the task's
    own fields (data, model, reference training, L step) are under ``task`` (``[task]`` table, or flags such as
    ``--lr``)."""

    task: TaskConfig = field(default_factory=lambda: TaskConfig(epochs_per_step=2, ref_epochs=30),
                             metadata={"help": "the task: see tasks.classification.TaskConfig"})
    families: list = _field(list(DEFAULT_FAMILIES), f"families to sweep, of: {', '.join(FAMILIES)}")
    values: dict = _field({}, "values per family, overriding its defaults: "
                                  "--values pruning=0.05,0.1 quantization=2,4")
    steps: int = _field(20, "LC steps (length of the μ schedule)")
    mu0: float = _field(3e-3, "μ₀ of the schedule μ_j = μ₀ · a^j (for families without their own μ₀)")
    family_mu0: dict = _field({}, "μ₀ per family, overriding the family's own: --family-mu0 rank=1e-3")
    mu_multiplier: float = _field(1.4, "a of the schedule μ_j = μ₀ · a^j")
    out: str = _field("results/tradeoff", "output directory (rows.jsonl, rows.csv, tradeoff.png, config.json)")
    cache_dir: str = _field(".cache/references", "where trained reference models are cached (by config hash)")
    overwrite: bool = _field(False, "discard earlier results in --out written by a different config")
    threads: int = _field(1, "torch CPU threads (0: torch's default)")
    latency: bool = _field(True, "measure the latency of each run's exported model (lc.export) against the "
                                 "reference, at batch 1 and 256, round-robin in the same process")
    progress: bool = _field(True, "show tqdm progress bars")

    def sweep_fields(self) -> dict:
        """What the results depend on (not where they go, nor how they are shown)."""
        return {"task": {k: v for k, v in dataclasses.asdict(self.task).items() if k not in ("data_dir", "device")},
                "steps": self.steps, "mu0": self.mu0, "mu_multiplier": self.mu_multiplier}

    def mu0_of(self, family: Family) -> float:
        return self.family_mu0.get(family.name, family.mu0 or self.mu0)


# ------------------------------------------------------------------------------------------------ config / CLI
def _parse_values(items) -> dict:
    out = {}
    for item in items or ():
        name, _, vals = item.partition("=")
        if not vals:
            raise lc.CompressionError(f"--values {item!r}: write FAMILY=V1,V2,… (e.g. pruning=0.05,0.1)")
        out[name] = [json.loads(v) for v in vals.split(",")]
    return out


def _arg_type(f: dataclasses.Field):
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"int": int, "float": float, "str": str, "int | None": int, "str | None": str}.get(t, str)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lc-tradeoff", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="a TOML or JSON file of Config fields (flags override it)")
    for group, cls in (("sweep", Config), ("task", TaskConfig)):
        g = ap.add_argument_group(group)
        for f in dataclasses.fields(cls):
            if f.name == "task":
                continue
            flag, help = "--" + f.name.replace("_", "-"), f.metadata.get("help", "")
            if f.name == "families":
                g.add_argument(flag, nargs="+", help=help)
            elif f.name == "values":
                g.add_argument(flag, nargs="+", metavar="FAMILY=V1,V2", help=help)
            elif f.name == "family_mu0":
                g.add_argument(flag, nargs="+", metavar="FAMILY=MU0", help=help)
            elif f.type in (bool, "bool"):
                g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)
            else:
                g.add_argument(flag, type=_arg_type(f), help=help)
    return ap


def load_config(argv=None) -> Config:
    """Defaults ← config file ← flags."""
    args = vars(build_parser().parse_args(argv))
    path, raw = args.pop("config"), {}
    if path:
        text = Path(path).read_text()
        raw = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    task_raw = dict(raw.pop("task", {}))
    unknown = (set(raw) - {f.name for f in dataclasses.fields(Config)}) | \
        {f"task.{k}" for k in set(task_raw) - {f.name for f in dataclasses.fields(TaskConfig)}}
    if unknown:
        raise lc.CompressionError(f"config file {path}: unknown keys {sorted(unknown)}; see lc-tradeoff --help")
    task_names = {f.name for f in dataclasses.fields(TaskConfig)}
    for k, v in args.items():
        if v is None:
            continue
        if k == "values":
            raw["values"] = {**raw.get("values", {}), **_parse_values(v)}
        elif k == "family_mu0":
            raw["family_mu0"] = {**raw.get("family_mu0", {}), **{n: x for n, (x, *_) in _parse_values(v).items()}}
        elif k in task_names:
            task_raw[k] = v
        else:
            raw[k] = v
    base = Config()
    return dataclasses.replace(base, **raw, task=dataclasses.replace(base.task, **task_raw))


# ------------------------------------------------------------------------------------------------ the sweep
def _families(config: Config) -> list[tuple[Family, tuple]]:
    unknown = [n for n in [*config.families, *config.values, *config.family_mu0] if n not in FAMILIES]
    if unknown:
        raise lc.CompressionError(f"unknown families {unknown}; choose among {', '.join(FAMILIES)}")
    out = []
    for name in config.families:
        fam = FAMILIES[name]
        if not fam.available():
            logging.getLogger(__name__).warning("family %r skipped: this lc has no %s", name, ", ".join(
                r for r in fam.requires if not hasattr(lc, r)))
            continue
        out.append((fam, tuple(config.values.get(name, fam.values))))
    return out


def _run_id(config: Config, family: Family, value) -> str:
    spec = {**config.sweep_fields(), "family": family.name, "value": value, "mu0": config.mu0_of(family)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Results:
    """``rows.jsonl`` is the record (appended and flushed run by run); ``rows.csv`` holds the same rows."""

    def __init__(self, out: Path, config: Config):
        self.out = out
        self.jsonl, self.csv, self.config_file = out / "rows.jsonl", out / "rows.csv", out / "config.json"
        mine = config.sweep_fields()
        if self.jsonl.exists() and self.jsonl.stat().st_size > 0:
            theirs = json.loads(self.config_file.read_text()) if self.config_file.exists() else None
            if theirs != mine:
                if not config.overwrite:
                    raise lc.CompressionError(
                        f"{out} holds results of a different config (task, μ schedule or steps); give another "
                        "--out, or --overwrite to discard them")
                for p in (self.jsonl, self.csv, self.config_file, out / "tradeoff.png"):
                    p.unlink(missing_ok=True)
                for d in ("checkpoints", "artifacts"):
                    shutil.rmtree(out / d, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(mine, indent=1, sort_keys=True))
        self.rows = [json.loads(line) for line in self.jsonl.read_text().splitlines()] if self.jsonl.exists() \
            else []
        self._write_csv()

    def done(self) -> set[str]:
        return {r["run_id"] for r in self.rows}

    def add(self, row: dict) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
        self._write_csv()

    def _write_csv(self) -> None:
        tmp = self.csv.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.csv)


def run_sweep(config: Config) -> list[dict]:
    """Run every (family, value) not yet in ``config.out``; returns all rows there."""
    log = logging.getLogger(__name__)
    if config.threads:
        torch.set_num_threads(config.threads)
    families = _families(config)
    task = Classification(config.task)                     # a missing dataset fails here, before --out is touched
    results = Results(Path(config.out), config)
    reference = task.reference(cache_dir=config.cache_dir)
    ref_eval = task.evaluate(reference)
    ref_flops = flops(reference, task.data.input_shape)
    log.info("reference: test error %.4f (%s)", ref_eval["error"], task.data.split)
    runs = [(fam, v) for fam, values in families for v in values]
    done = results.done()
    bar = tqdm(runs, desc="runs", disable=not config.progress, dynamic_ncols=True)
    for fam, value in bar:
        run_id = _run_id(config, fam, value)
        bar.set_postfix_str(f"{fam.name} {fam.parameter}={value}")
        if run_id in done:
            continue
        results.add(_one_run(config, task, reference, fam, value, run_id, ref_eval, ref_flops))
    bar.close()
    from .plot import plot_rows
    plot_rows(results.rows, Path(config.out) / "tradeoff.png")
    return results.rows


def _one_run(config, task, reference, fam: Family, value, run_id, ref_eval, ref_flops) -> dict:
    net = copy.deepcopy(reference)
    torch.manual_seed(config.task.seed)
    tasks = compression_tasks(net, lambda shapes: fam.make(value, shapes), joint=fam.joint,
                              names=fam.names(net) if fam.names else None)
    mu0 = config.mu0_of(fam)
    steps = tqdm(total=config.steps + 1, desc=f"  {fam.name} {value}", leave=False, disable=not config.progress,
                 dynamic_ncols=True)

    def progress(algorithm, record):
        steps.update(record.step + 1 - steps.n)
        steps.set_postfix(error=f"{record.evaluation['error']:.4f}", ratio=f"{record.ratio:.1f}")

    t = time.perf_counter()
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(mu0, config.mu_multiplier, config.steps),
                             task.l_step(teacher=reference), task.evaluate, callbacks=[progress],
                             checkpoint_dir=Path(config.out) / "checkpoints" / run_id,
                             example_input=torch.zeros(1, *task.data.input_shape, device=task.device))
    history = algorithm.run()
    wall = time.perf_counter() - t
    steps.close()
    last = history[-1]
    artifact = Path(config.out) / "artifacts" / f"{run_id}.lc"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    file_bytes = lc.save(artifact, net, algorithm, overwrite=True)    # an unfinished run's file, if any, is ours
    row = {**_latency(config, task, reference, net, algorithm), "run_id": run_id, "task": f"{config.task.dataset}/{config.task.model}", "split": task.data.split,
           "family": fam.name, "scheme": _describe(fam, tasks), "parameter": fam.parameter, "value": value,
           "test_error": last.evaluation["error"], "test_loss": last.evaluation["loss"], "ratio": last.ratio,
           "bits": last.bits, "file_bytes": file_bytes,
           "realised_ratio": lc.storage.realised_ratio(net, file_bytes),
           "flops": flops(net, task.data.input_shape), "reference_error": ref_eval["error"],
           "reference_flops": ref_flops, "steps": last.step, "wall_time": wall,
           "l_time": sum(r.l_step_time for r in history), "c_time": sum(r.c_step_time for r in history),
           "mu0": mu0, "mu_multiplier": config.mu_multiplier, "seed": config.task.seed}
    shutil.rmtree(Path(config.out) / "checkpoints" / run_id, ignore_errors=True)
    return row


def _latency(config, task, reference, net, algorithm) -> dict:
    """Measured: median forward time of the exported compressed model and of the reference, timed round-robin in
    one process (so the speedup is against a baseline measured in the same run, under the same load)."""
    keys = ("latency_b1_ms_measured", "latency_b256_ms_measured", "speedup_b1_measured", "speedup_b256_measured")
    if not config.latency:
        return dict.fromkeys(keys)
    shape = task.data.input_shape
    exported = lc.export(net, algorithm, example=torch.randn(256, *shape))
    t = lc.measure.timings({"reference": copy.deepcopy(reference), "exported": exported}, shape, (1, 256), repeats=20,
                           threads=max(config.threads, 1))
    ms = {b: 1e3 * t["exported"][b].wall for b in (1, 256)}
    return dict(zip(keys, (ms[1], ms[256], t["reference"][1].wall / t["exported"][1].wall,
                           t["reference"][256].wall / t["exported"][256].wall)))


def _describe(fam: Family, tasks: dict) -> str:
    first = next(iter(tasks.values()))
    parts = first if isinstance(first, list) else [first]
    what = " + ".join(f"{getattr(v, '__name__', type(v).__name__)}/{type(c).__name__}" for v, c in parts)
    return f"{'all weights jointly' if fam.joint else 'each weight its own task'}: {what}"


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_config(argv)
        if config.progress:                   # the bars show each step's error and ratio; keep the log for the rest
            logging.getLogger("lc").setLevel(logging.WARNING)
        rows = run_sweep(config)
    except lc.CompressionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    split = rows[0]["split"] if rows else ""
    print(f"\n{len(rows)} runs in {config.out} ({split}):")
    print(f"{'family':<14} {'parameter':<16} {'value':>8} {'error %':>8} {'ratio':>8} {'on disk':>8} {'MFLOPs':>8} "
          f"{'time s':>7} {'speedup':>8}")
    for r in sorted(rows, key=lambda r: (r["family"], r["ratio"])):
        print(f"{r['family']:<14} {r['parameter']:<16} {r['value']!s:>8} {100 * r['test_error']:8.2f} "
              f"{r['ratio']:8.1f} {r['realised_ratio']:8.1f} {r['flops'] / 1e6:8.3f} {r['wall_time']:7.1f} "
              + (f"{r['speedup_b256_measured']:8.2f}" if r.get("speedup_b256_measured") else f"{'-':>8}"))
    if rows:
        print(f"reference: {100 * rows[0]['reference_error']:.2f}% error; plot: {Path(config.out) / 'tradeoff.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
