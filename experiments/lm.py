"""The language-model study: LC against post-training methods on one trained decoder, one calibration batch and one
L step — perplexity vs bits per weight (2, 3, 4) and vs sparsity (50 %, 2:4), plus low rank at half the parameters.

    python -m experiments.lm                                   # everything (about 2.5 hours on one free core)
    python -m experiments.lm --methods gptq-g lc-kmeans --bits 3
    python -m experiments.lm --corpus ~/notes --out results/lm-notes     # your own text files

Post-training methods (:mod:`experiments.lm_ptq`, on the calibration batch, layer by layer): ``rtn-channel``,
``rtn-g`` (round to nearest, per row or per group of ``group`` inputs), ``gptq-channel``, ``gptq-g``, ``awq-g``,
``magnitude``, ``wanda``, ``sparsegpt``, ``svd``, ``whitened-svd``; ``dense``: the reference trained further by the
L step for as long as an LC run trains, uncompressed (the reference is not trained to convergence, so this is what
LC's numbers owe to the extra training alone). LC (``lc.Algorithm``, the adapter's L step, the
μ schedule below): ``lc-kmeans`` (a codebook of 2^bits entries per matrix), ``lc-affine-g`` (group-wise integer grids,
GPTQ's form), ``lc-kmeans-outliers`` (codebook + ``outliers`` of the weights kept exactly: an additive
combination), ``lc-l0`` (50 % of each matrix) or N:M for ``2:4``, ``lc-lowrank``; each ``…-weighted`` is the same
with the data-aware C step (the calibration batch's input statistics; whitened for low rank). Quantization schemes
also hold the token and position embeddings on 8-bit grids per row (RTN, or an LC task); sparsity and low rank leave
them dense. Every scale, codebook and position is counted in ``bits_per_weight`` (whole model, float32 = 32).

Writes to ``--out``: ``rows.jsonl``/``rows.csv`` (one row per method and value, with the corpus hash), ``lm.png``,
``config.json``, ``files.json`` (each split's files). A killed study resumes; several processes may share ``--out``;
a method's row is keyed by what it depends on (``settings``: the group size, the LC schedule, …), so runs of one
method under other settings (another μ₀) join the same directory as rows of their own.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import lc
from lc._io import write_text_atomic
from lc._statistics import layer_of
from lc.compression._coding import position_bits
from tasks.lm import LanguageModel, LMConfig, matrix_names

from . import cli, lm_ptq
from .cli import option
from .runs import RunStore

__all__ = ["Config", "METHODS", "run", "main", "embedding_names"]

log = logging.getLogger(__name__)

QUANT = ("rtn-channel", "rtn-g", "gptq-channel", "gptq-g", "awq-g", "lc-kmeans", "lc-kmeans-weighted",
         "lc-affine-g", "lc-kmeans-outliers", "lc-kmeans-outliers-weighted")
SPARSE = ("magnitude", "wanda", "sparsegpt", "lc-l0", "lc-l0-weighted")
RANK = ("svd", "whitened-svd", "lc-lowrank", "lc-lowrank-whitened")
DENSE = ("dense",)
METHODS = QUANT + SPARSE + RANK + DENSE
DATA_AWARE = {"gptq-channel", "gptq-g", "awq-g", "wanda", "sparsegpt", "whitened-svd", "lc-kmeans-weighted",
              "lc-kmeans-outliers-weighted", "lc-l0-weighted", "lc-lowrank-whitened"}


@dataclass
class Config:
    """The study. Every field is a flag and a key of a TOML/JSON config file; the task's (corpus, reference, L step,
    evaluation) are under ``task``."""

    task: LMConfig = option(LMConfig(), "the task: see tasks.lm.LMConfig")
    methods: list[str] = option(list(METHODS), f"methods, of: {', '.join(METHODS)}")
    bits: list[int] = option([2, 3, 4], "code widths of the quantization methods (a codebook of 2^bits entries)")
    sparsity: list[str] = option(["50%", "2:4"], "sparsity of the pruning methods: a percentage or N:M")
    rank_fraction: float = option(0.5, "low rank: each matrix's rank r with r(m + n) = this fraction of mn")
    group: int = option(128, "group size of the group-wise grids (-g methods), along the input")
    outliers: float = option(0.005, "lc-kmeans-outliers: the fraction of each matrix kept exactly (float32 values "
                                    "and their positions)")
    steps: int = option(20, "LC: steps (the length of the μ schedule); each L step is task.iterations iterations")
    mu0: float = option(3e-3, "LC: μ₀ of μ_j = μ₀·a^j (chosen on validation data, see docs/lm.md)")
    mu_multiplier: float = option(1.4, "LC: a of μ_j = μ₀·a^j")
    final_tokens: int = option(131072, "tokens of the validation and of the test split in the reported numbers")
    out: str = option("results/lm", "output directory; several processes may share it", directory=True)
    cache_dir: str = option(".cache/references", "where the trained reference is cached (by config and corpus hash)")
    threads: int = option(1, "torch CPU threads")
    overwrite: bool = option(False, "discard earlier results in --out written by a different config")

    def check(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise lc.CompressionError(f"unknown methods {bad}; choose among {', '.join(METHODS)}")
        for s in self.sparsity:
            _sparsity(s)
        if not all(1 <= b <= 8 for b in self.bits) or not 0 < self.rank_fraction < 1:
            raise lc.CompressionError("bits must lie in 1 … 8 and rank_fraction in (0, 1)")

    def values(self, method: str) -> list:
        if method in DENSE:
            return ["continued"]
        return list(self.bits) if method in QUANT else list(self.sparsity) if method in SPARSE else [self.rank_fraction]


def _sparsity(s: str) -> tuple[float, tuple[int, int] | None]:
    """"50%" → (0.5, None); "2:4" → (0.5, (2, 4))."""
    try:
        if ":" in s:
            n, m = map(int, s.split(":"))
            if 0 <= n <= m and m > 0:
                return 1 - n / m, (n, m)
        elif s.endswith("%") and 0 < float(s[:-1]) < 100:
            return float(s[:-1]) / 100, None
    except ValueError:
        pass
    raise lc.CompressionError(f"sparsity {s!r}: write a percentage (50%) or N:M (2:4)")


def embedding_names(model: nn.Module) -> list[str]:
    """The weights of the model's embeddings (the token one holds a tied head too)."""
    ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def _rank(shape, fraction: float) -> int:
    m, n = shape
    return max(1, round(fraction * m * n / (m + n)))


# ---------------------------------------------------------------------------------------------- LC
def _lc_tasks(method: str, value, net: nn.Module, config: Config) -> dict:
    mats = matrix_names(net)
    weighted = method.endswith(("-weighted", "-whitened"))
    shapes = {n: net.get_parameter(n).shape for n in mats}
    tasks = {}
    for n in mats:
        size = math.prod(shapes[n])
        if method in QUANT:
            k = 2 ** int(value)
            codebook = lc.WeightedAdaptiveQuantization(k=k) if weighted else lc.AdaptiveQuantization(k=k)
            if method == "lc-affine-g":
                _, axis = layer_of(net, n)
                tasks[lc.Param(n)] = (lc.AsGroups(config.group, axis=axis),
                                      lc.AffineQuantization(int(value), symmetric=False, per_channel=True))
            elif method.startswith("lc-kmeans-outliers"):
                kappa = max(1, round(config.outliers * size))
                sparse = lc.WeightedL0Pruning(kappa=kappa) if weighted else lc.ConstraintL0Pruning(kappa=kappa)
                tasks[lc.Param(n)] = [(lc.AsVector, codebook), (lc.AsVector, sparse)]
            else:
                tasks[lc.Param(n)] = (lc.AsVector, codebook)
        elif method in SPARSE:
            fraction, nm = _sparsity(value)
            if nm is None:
                kappa = size - round(fraction * size)
                c = lc.WeightedL0Pruning(kappa=kappa) if weighted else lc.ConstraintL0Pruning(kappa=kappa)
                tasks[lc.Param(n)] = (lc.AsVector, c)
            else:
                _, axis = layer_of(net, n)
                c = lc.WeightedNMPruning(*nm) if weighted else lc.NMPruning(*nm)
                tasks[lc.Param(n)] = (lc.AsGroups(nm[1], axis=axis), c)
        else:
            r = _rank(shapes[n], float(value))
            tasks[lc.Param(n)] = (lc.AsIs, lc.WhitenedLowRank(r) if weighted else lc.LowRank(r))
    if method in QUANT:
        for n in embedding_names(net):
            tasks[lc.Param(n)] = (lc.AsIs, lc.AffineQuantization(8, symmetric=False, per_channel=True))
    return tasks


def _run_lc(method, value, net, task, calib, config, checkpoint_dir) -> dict:
    tasks = _lc_tasks(method, value, net, config)
    algorithm = lc.Algorithm(net, tasks, lc.geometric_mu(config.mu0, config.mu_multiplier, config.steps),
                             task.l_step(), lambda m: task.evaluate_split(m, "validation"),
                             example_input=calib, checkpoint_dir=checkpoint_dir,
                             callbacks=[lambda a, r: log.info("  %s %s: LC step %d, mu %.3g, validation perplexity %.4f",
                                                              method, value, r.step, r.mu,
                                                              r.evaluation["perplexity"])])
    history = algorithm.run()
    mats = set(matrix_names(net))
    matrix_bits = sum(s.bits for t, s in zip(algorithm.tasks, algorithm.states) if set(t.param_names) <= mats)
    return {"matrix_bits": matrix_bits, "model_bits_per_weight": 32 / history[-1].ratio,
            "direct_validation_perplexity": history[0].evaluation["perplexity"],
            "method_time": sum(r.l_step_time + r.c_step_time for r in history), "lc_steps": history[-1].step,
            "trajectory": [round(r.evaluation["perplexity"], 4) for r in history]}


def _run_dense(net, task, config) -> dict:
    """The reference trained further by the L step, uncompressed, for as many iterations as an LC run's L steps: what
    LC's perplexity owes to the extra training alone (the reference is not trained to convergence)."""
    t, l_step = time.perf_counter(), task.l_step()
    for j in range(config.steps):
        l_step(net, None, j)
    return {"matrix_bits": 32 * sum(net.get_parameter(n).numel() for n in matrix_names(net)),
            "model_bits_per_weight": 32.0, "method_time": time.perf_counter() - t}


def _family(method: str) -> str:
    return ("quantization" if method in QUANT else "sparsity" if method in SPARSE else "lowrank" if method in RANK
            else "reference")


# ---------------------------------------------------------------------------------------------- post-training
def _apply_direct(net, names, f):
    """W ← f(W) for each weight, handed over as (out, in)."""
    with torch.no_grad():
        for n in names:
            _, axis = layer_of(net, n)
            p = net.get_parameter(n)
            w = p.detach() if axis == 1 else p.detach().T
            new = f(w)
            p.copy_(new if axis == 1 else new.T)


def _run_ptq(method, value, net, calib, config) -> dict:
    mats, t = matrix_names(net), time.perf_counter()
    info = None
    if method in QUANT:
        bits, group = int(value), (config.group if method.endswith("-g") else None)
        if method.startswith("rtn"):
            _apply_direct(net, mats, lambda w: lm_ptq.rtn(w, bits, group))
        elif method.startswith("gptq"):
            lm_ptq.sequential(net, calib, mats, lambda g, ws, hs, xs: (
                [lm_ptq.gptq(w, h, bits, group) for w, h in zip(ws, hs)], None))
        else:
            info = lm_ptq.sequential(net, calib, mats, lambda g, ws, hs, xs: lm_ptq.awq(ws, hs, xs[0], bits, group))
        with torch.no_grad():
            for n in embedding_names(net):
                p = net.get_parameter(n)
                p.copy_(lm_ptq.rtn(p.detach(), 8))
    elif method in SPARSE:
        fraction, nm = _sparsity(value)
        if method == "magnitude":
            _apply_direct(net, mats, lambda w: lm_ptq.magnitude(w, fraction, nm))
        else:
            f = lm_ptq.wanda if method == "wanda" else lm_ptq.sparsegpt
            lm_ptq.sequential(net, calib, mats, lambda g, ws, hs, xs: ([f(w, h, fraction, nm) for w, h in zip(ws, hs)],
                                                                       None))
    else:
        if method == "svd":
            _apply_direct(net, mats, lambda w: lm_ptq.svd(w, _rank(w.shape, float(value))))
        else:
            lm_ptq.sequential(net, calib, mats, lambda g, ws, hs, xs: (
                [lm_ptq.whitened_svd(w, h, _rank(w.shape, float(value))) for w, h in zip(ws, hs)], None))
    method_time = time.perf_counter() - t
    return {**_ptq_bits(method, value, net, config, info), "method_time": method_time,
            "awq_alpha": None if info is None else sorted(set(info.values()))}


def _ptq_bits(method, value, net, config, info) -> dict:
    """Bits of the compressed model as stored: codes, a float32 scale and a zero point per grid (per row or group);
    AWQ's scales where they cannot be folded into the layer before (the MLP's second layer, after the GELU); pruned
    matrices as float32 values and their positions (as lc counts them); low rank as factors, or dense if smaller."""
    mats, total = matrix_names(net), 0
    matrix_bits = 0
    for n in mats:
        p = net.get_parameter(n).detach()
        shape = p.shape if layer_of(net, n)[1] == 1 else p.T.shape
        if method in QUANT:
            b = lm_ptq.grid_bits(shape, int(value), config.group if method.endswith("-g") else None)
            b += 32 * shape[1] if method == "awq-g" and n.endswith("mlp.proj.weight") else 0
        elif method in SPARSE:
            idx = torch.nonzero(p.reshape(-1)).reshape(-1)
            b = 32 * idx.numel() + position_bits(idx, p.numel())[0]
        else:
            r = _rank(shape, float(value))
            b = 32 * min(r * sum(shape), math.prod(shape))
        matrix_bits += b
    embeddings = embedding_names(net) if method in QUANT else []
    total = matrix_bits + sum(lm_ptq.grid_bits(net.get_parameter(n).shape, 8, None) for n in embeddings)
    rest = sum(p.numel() for n, p in net.named_parameters() if n not in set(mats) | set(embeddings))
    count = sum(p.numel() for p in net.parameters())
    return {"matrix_bits": matrix_bits, "model_bits_per_weight": (total + 32 * rest) / count}


# ---------------------------------------------------------------------------------------------- the study
def _settings(config: Config, method: str) -> dict:
    """What a method's result depends on beyond the task, the calibration batch and its value."""
    out = {}
    if method.endswith("-g"):
        out["group"] = config.group
    if "outliers" in method:
        out["outliers"] = config.outliers
    if method in RANK:
        out["rank_fraction"] = config.rank_fraction
    if method.startswith("lc-"):
        out.update(steps=config.steps, mu0=config.mu0, mu_multiplier=config.mu_multiplier)
    if method in DENSE:
        out["steps"] = config.steps
    return out


def _run_id(fields: dict, method: str, value, settings: dict) -> str:
    spec = json.dumps({**fields, "method": method, "value": value, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def run(config: Config) -> list[dict]:
    """Every (method, value) of ``config`` not yet in ``config.out``; returns all rows there."""
    config.check()
    torch.set_num_threads(config.threads)
    task = LanguageModel(config.task)
    fields = {"task": task.fingerprint(), "final_tokens": config.final_tokens}
    store = RunStore(Path(config.out), fields, overwrite=config.overwrite)
    write_text_atomic(Path(config.out) / "files.json", json.dumps(task.tokens.files, indent=1))
    reference = task.reference(cache_dir=config.cache_dir)
    calib = task.calibration()
    ref = {s: task.evaluate_split(reference, s, config.final_tokens) for s in ("validation", "test")}
    mats = matrix_names(reference)
    log.info("%s; reference %d weights, validation perplexity %.4f, test %.4f", task.tokens.describe(),
             sum(p.numel() for p in reference.parameters()), ref["validation"]["perplexity"], ref["test"]["perplexity"])
    for method in config.methods:
        for value in config.values(method):
            settings = _settings(config, method)
            run_id = _run_id(fields, method, value, settings)
            if not store.claim(run_id):
                continue
            try:
                net = copy.deepcopy(reference)
                torch.manual_seed(config.task.seed)
                t, cpu = time.perf_counter(), time.process_time()
                if method in DENSE:
                    out = _run_dense(net, task, config)
                elif method.startswith("lc-"):
                    out = _run_lc(method, value, net, task, calib, config, Path(config.out) / "checkpoints" / run_id)
                else:
                    out = _run_ptq(method, value, net, calib, config)
                final = {s: task.evaluate_split(net, s, config.final_tokens) for s in ("validation", "test")}
                row = {"run_id": run_id, "method": method, "value": value,
                       "family": _family(method),
                       "lc": method.startswith("lc-"), "data_aware": method in DATA_AWARE,
                       "bits_per_weight": out.pop("model_bits_per_weight"),
                       "matrix_bits_per_weight": out.pop("matrix_bits") / sum(reference.get_parameter(n).numel()
                                                                               for n in mats),
                       **{f"{s}_{k}": v for s in final for k, v in final[s].items()},
                       **{f"reference_{s}_{k}": v for s in ref for k, v in ref[s].items()},
                       "wall_time": time.perf_counter() - t, "cpu_time": time.process_time() - cpu,
                       "l_step_iterations": config.task.iterations, "calibration_tokens": calib.numel(),
                       "corpus": task.tokens.name, "corpus_sha256": task.tokens.sha256, "seed": config.task.seed,
                       "settings": settings, **out}
            except BaseException:
                store.release(run_id)
                raise
            store.add(row)
            log.info("%-28s %-5s bits/weight %6.3f  perplexity validation %.4f test %.4f  (%.0f s)", method, value,
                     row["bits_per_weight"], row["validation_perplexity"], row["test_perplexity"], row["wall_time"])
    rows = store.rows()
    from .lm_report import plot
    plot(rows, Path(config.out) / "lm.png")
    return rows


def _main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.lm", description=__doc__)
    rows = run(config)
    from .lm_report import summary
    print(summary(rows))
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lc").setLevel(logging.WARNING)
    return cli.console(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
