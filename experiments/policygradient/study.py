"""The policy-gradient study: return of the PPO actor vs bits per weight — LC with the offline (distillation + DAgger)
and the online (continued PPO) L step, naive post-training compression of the same structure, and quantization-aware
training (straight-through, learned scale and zero point: LSQ) under the same L step and budget — then the measured
evaluation costs of the exported actors.

    python -m experiments.policygradient.study                      # HalfCheetah-v5, seeds 0-2
    python -m experiments.policygradient.study --env invertedpendulum --seeds 0 --steps 3 --episodes 3 \\
        --lc quantization=4 --naive ptq-kmeans=4 --qat qat=4 --costs-episodes 2 --out /tmp/pg   # smoke test, 1 min

Every run goes through the sweep driver (:mod:`experiments.sweep`) on the adapter
:class:`tasks.policygradient.PolicyGradient`: one output directory per L step and seed (``<out>/<l_step>_s<seed>``;
the naive runs, deterministic, once in ``<out>/naive``), resumable and shareable by several processes (a killed
study resumes where it stopped, finished runs are skipped). QAT trains by the same L step as LC, called as many
times: the same environment steps (online) or distillation steps and visited states (offline). Every run is
evaluated on ``--episodes`` test episodes (seeds 10 000, …; LC reports its last step, nothing is selected on them).

Then, unless ``--no-costs``: each exported actor of the first seed (``lc.export`` of its artifact, batch 1) and the
reference are evaluated alone in a fresh process on ``--costs-episodes`` test episodes (``experiments.rl.costs``):
wall time per transition, CPU time, peak RSS. Writes to ``--out``: study.csv (one row per run, with
``bits_per_weight`` of the actor's weights, from the artifact), summary.csv (mean ± std over seeds per method and
scheme), costs.csv, study.png and target.json (the benchmark: LC ≥ 95% of the reference's return at ≤ 4 bits per
weight where naive compression is not).
"""
from __future__ import annotations

import json
import logging
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import lc  # noqa: E402
from lc._io import write_atomic, write_text_atomic  # noqa: E402
from tasks import policygradient as pg  # noqa: E402

from .. import cli, sweep  # noqa: E402
from ..cli import option  # noqa: E402
from ..plot import save_figure  # noqa: E402
from ..rl import costs  # noqa: E402
from ..runs import csv_text, read_rows  # noqa: E402
from ..schemes import family  # noqa: E402
from .reference import ENVS  # noqa: E402

LC_FAMILIES = {"quantization": [2, 4, 8, 16], "affine": [8, 4], "ternary": [1], "pruning": [0.05],
               "quant2+sparse": [0.05]}
NAIVE_FAMILIES = {"ptq-kmeans": [2, 4, 8, 16], "ptq-affine": [8, 4], "ptq-ternary": [1], "ptq-prune-global": [0.05],
                  "ptq-quant2+sparse": [0.05]}
QAT_FAMILIES = {"qat": [8, 4, 2]}
L_STEPS = ("offline", "online")
TARGET_BITS, TARGET_FRACTION = 4.0, 0.95


@dataclass
class Config:
    """The study's settings (every field a flag and a key of a --config file)."""

    env: str = option("halfcheetah", "environment", choices=tuple(sorted(ENVS)))
    seeds: list[int] = option([0, 1, 2], "seeds of the L step (the reference is the same for all)")
    l_steps: list[str] = option(list(L_STEPS), "L steps of LC and QAT", choices=L_STEPS)
    lc: dict[str, list[int | float]] = option(LC_FAMILIES, "LC families and values (experiments.schemes)")
    naive: dict[str, list[int | float]] = option(NAIVE_FAMILIES, "post-training families and values (run once)")
    qat: dict[str, list[int | float]] = option(QAT_FAMILIES, "QAT families and bits (trained by each L step)")
    steps: int = option(20, "LC steps (length of the μ schedule); QAT calls the L step as often")
    mu0: float = option(1e-2, "μ₀ of the schedule μ_j = μ₀ · a^j")
    mu_multiplier: float = option(1.5, "a of the schedule μ_j = μ₀ · a^j")
    episodes: int = option(10, "test episodes of every evaluation (LC evaluates every step)")
    costs: bool = option(True, "measure the exported actors' evaluation costs (fresh process each)")
    costs_episodes: int = option(100, "test episodes of each cost measurement")
    out: str = option("results/pg/study", "output directory", directory=True)
    cache_dir: str = option(".cache/policygradient", "where the reference is cached (trained there if missing)")
    plot_only: bool = option(False, "only collect the rows and redraw from what --out holds")


def _check(args: Config) -> None:
    """Everything that can be wrong with the flags, before any training."""
    for name in (*args.lc, *args.naive, *args.qat):
        fam = family(name)
        for v in (args.lc | args.naive | args.qat)[name]:
            fam.check(v)
    bad = [n for n in args.naive if family(n).method != "post-training"]
    bad += [n for n in args.lc if family(n).run is not None]
    bad += [n for n in args.qat if not family(n).method.startswith("qat")]
    if bad:
        raise lc.CompressionError(f"families {bad} are in the wrong group: --lc takes LC families, --naive "
                                  "post-training ones (ptq-*), --qat the qat families")
    if args.steps < 1 or args.episodes < 1 or args.costs_episodes < 1:
        raise lc.CompressionError("--steps, --episodes and --costs-episodes must be ≥ 1")


def _sweep(args: Config, families: dict, out: Path) -> sweep.Sweep:
    return sweep.Sweep(families=list(families), values=families, steps=args.steps, mu0=args.mu0,
                       mu_multiplier=args.mu_multiplier, latency=False, progress=False, out=str(out),
                       cache_dir=args.cache_dir)


def main(argv=None) -> int:
    args = cli.parse(Config, argv, prog="python -m experiments.policygradient.study", description=__doc__)
    out = Path(args.out)
    cfg = ENVS[args.env]()
    _check(args)
    if not args.plot_only:
        out.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                            handlers=[logging.StreamHandler(), logging.FileHandler(out / "log.txt")])
        torch.set_num_threads(1)
        if args.naive:
            task = pg.PolicyGradient(cfg, "offline", seed=0, episodes=args.episodes)    # no L step: one seed
            sweep.run(task, _sweep(args, args.naive, out / "naive"))
        for seed in args.seeds:
            for kind in args.l_steps:
                task = pg.PolicyGradient(cfg, kind, seed=seed, episodes=args.episodes)
                sweep.run(task, _sweep(args, {**args.lc, **args.qat}, out / f"{kind}_s{seed}"))
    rows = collect(out, cfg)
    if not rows:
        raise lc.CompressionError(f"{out} holds no runs yet: run the study without --plot-only first")
    write_text_atomic(out / "study.csv", csv_text(rows), what="the rows")
    groups = summary(rows)
    write_text_atomic(out / "summary.csv", csv_text(groups), what="the summary")
    verdict = target(groups, rows[0]["reference_return"])
    write_text_atomic(out / "target.json", json.dumps(verdict, indent=1) + "\n", what="the verdict")
    if args.costs and not args.plot_only:
        cost_rows = measure_costs(args, out, cfg, [r for r in rows if r["seed"] == args.seeds[0]])
        write_text_atomic(out / "costs.csv", csv_text(cost_rows), what="the costs")
    plot(groups, rows[0]["reference_return"], out / "study.png", cfg.env_id)
    for g in groups:
        print(f"{g['method']:12s} {g['family']:18s} {g['value']!s:5s} {g['bits_per_weight']:6.2f} bits/weight  "
              f"return {g['return_mean']:9.1f} ± {g['return_std']:.1f} ({g['seeds']} seeds)")
    print(json.dumps(verdict["met"]))
    return 0


def _method(row: dict, directory: str) -> str:
    if row["method"] == "post-training":
        return "naive"
    kind = directory.partition("_")[0]
    return f"{'qat' if row['method'].startswith('qat') else 'lc'}-{kind}"


def collect(out: Path, cfg: pg.PPOConfig) -> list[dict]:
    """Every finished run under ``out``, with its method (naive, lc-offline, lc-online, qat-offline, qat-online)
    and the bits per weight of the actor's compressed weights (the states' bits over their number, read from the
    run's artifact)."""
    rows = []
    for d in sorted(p for p in out.iterdir() if (p / "rows.jsonl").exists()) if out.exists() else []:
        for r in read_rows(d / "rows.jsonl")[0]:
            if r.get("file_bytes") is None:
                continue                                     # diverged: no artifact
            actor = pg.make_actor(cfg)
            compressed = lc.load(d / "artifacts" / f"{r['run_id']}.lc", actor)
            weights = sum(actor.get_parameter(n).numel() for t in compressed.tasks for n in t.param_names)
            rows.append({"method": _method(r, d.name), "family": r["family"], "value": r["value"],
                         "seed": r["seed"], "bits_per_weight": compressed.bits / weights,
                         "ratio": r["ratio"], "return": r["test_return"], "return_std": r["test_return_std"],
                         "reference_return": r["reference_return"], "steps": r["steps"],
                         "wall_time": r["wall_time"], "artifact": str(d / "artifacts" / f"{r['run_id']}.lc"),
                         "warning": r.get("warning")})
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Mean and population std over seeds of the test return, per (method, family, value)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["family"], r["value"]), []).append(r)
    out = []
    for (method, fam, value), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))):
        returns = [r["return"] for r in g]
        out.append({"method": method, "family": fam, "kind": family(fam).type, "value": value,
                    "bits_per_weight": statistics.mean(r["bits_per_weight"] for r in g), "seeds": len(g),
                    "return_mean": statistics.mean(returns), "return_std": statistics.pstdev(returns),
                    "fraction_of_reference": statistics.mean(returns) / g[0]["reference_return"]})
    return out


def target(groups: list[dict], reference: float) -> dict:
    """The benchmark: the points at ≤ TARGET_BITS bits per weight, everything stored counted (codebooks, scales,
    zero points: a 4-bit grid with its per-tensor scale is 4.02 bits and does not count, k = 8 codebooks per layer
    at 3.14 do), where an LC method keeps ≥ TARGET_FRACTION of the reference's return and naive compression of the
    same structure does not (QAT beside them)."""
    at = [g for g in groups if g["bits_per_weight"] <= TARGET_BITS]
    naive = {(g["kind"], g["value"]): g for g in at if g["method"] == "naive"}
    keep = reference - (1 - TARGET_FRACTION) * abs(reference)        # 95% of it, for a negative return too
    wins = [{"method": g["method"], "family": g["family"], "value": g["value"],
             "bits_per_weight": g["bits_per_weight"], "return": g["return_mean"], "seeds": g["seeds"],
             "naive_return": naive[(g["kind"], g["value"])]["return_mean"]}
            for g in at if g["method"].startswith("lc-") and g["return_mean"] >= keep
            and (g["kind"], g["value"]) in naive and naive[(g["kind"], g["value"])]["return_mean"] < keep]
    return {"reference_return": reference, "keep": keep, "max_bits_per_weight": TARGET_BITS,
            "met": {m: any(w["method"] == m for w in wins) for m in sorted({g["method"] for g in groups
                                                                             if g["method"].startswith("lc-")})},
            "wins": wins, "points": at}


def measure_costs(args: Config, out: Path, cfg: pg.PPOConfig, rows: list[dict]) -> list[dict]:
    """Evaluation time per transition, CPU time and peak RSS of each run's exported actor and of the reference
    (its actor alone, dense, measured first and last), each in a fresh process (``experiments.rl.costs``)."""
    reference = out / "reference_actor.pt"
    state = pg.reference(cfg, args.cache_dir).actor_state
    write_atomic(reference, lambda f: torch.save(state, f), what="the reference actor")
    done = {r["key"]: r for r in read_rows(out / "costs.jsonl")[0]} if (out / "costs.jsonl").exists() else {}
    todo = [("reference", "reference", 0, str(reference))] + \
        [(r["method"], r["family"], r["value"], r["artifact"]) for r in rows] + \
        [("reference", "reference", 1, str(reference) + "#last")]
    result = []
    for method, fam, value, path in todo:
        key = path if method != "reference" else f"reference-{value}"
        if key not in done:
            m = costs.measure(args.env, path.removesuffix("#last"), args.costs_episodes)
            done[key] = {"key": key, "method": method, "family": fam, "value": value, **m}
            write_text_atomic(out / "costs.jsonl", "".join(json.dumps(r) + "\n" for r in done.values()),
                              what="the costs")
            print(f"costs {method:12s} {fam:18s} {value!s:5s}: return {m['mean']:9.1f}  "
                  f"{1e6 * m['time_per_transition']:.1f} us/step  CPU {m['cpu_time']:.1f}s  "
                  f"RSS {m['peak_rss_mb']:.0f} MiB", flush=True)
        result.append(done[key])
    return result


def plot(groups: list[dict], reference: float, path: Path, env_id: str) -> None:
    """Return vs bits per weight of the actor (log scale), one colour per method, one marker per compression type."""
    fig, ax = plt.subplots(figsize=(10, 6))
    colours = {"lc-offline": "C0", "lc-online": "C2", "naive": "C3", "qat-offline": "C1", "qat-online": "C4"}
    kinds = sorted({g["kind"] for g in groups})
    markers = dict(zip(kinds, "osD^v<>pP*Xh"))
    for method in sorted({g["method"] for g in groups}):
        for kind in kinds:
            pts = sorted((g["bits_per_weight"], g["return_mean"], g["return_std"]) for g in groups
                         if g["method"] == method and g["kind"] == kind)
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, e, marker=markers[kind], color=colours.get(method, "k"), capsize=3,
                            linestyle="-" if method.startswith("lc") else ":",
                            mfc="none" if method == "naive" else colours.get(method, "k"), label=f"{method} {kind}")
    ax.axhline(reference, color="k", lw=1, label="reference (float32)")
    ax.axhline(reference - (1 - TARGET_FRACTION) * abs(reference), color="k", lw=1, ls="--", label=f"{TARGET_FRACTION:.0%} of reference")
    ax.axvline(TARGET_BITS, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="bits per weight of the actor (nominal)", ylabel="test return (mean ± std over seeds)",
           title=f"{env_id}: PPO actor compressed")
    ax.set_xticks([1, 2, 4, 8, 16, 32])
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(cli.console(main))
