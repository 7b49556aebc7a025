"""Study 3: return vs compression ratio of double-DQN Q-networks, LC (online and offline L steps) vs naive
compression, mean ± std over seeds, for quantization (k = 2, 4, 16; k = 4 also with one codebook per row of the
output layer), pruning, low rank, an additive mix and pruning with a codebook for the kept values
(lc.PrunedQuantization).

    python -m experiments.rl.tradeoff                         # the study: LunarLander-v3, 3 seeds, 100 episodes
    python -m experiments.rl.tradeoff --env cartpole --schemes pruning=0.2 --seeds 0 --steps 3 --episodes 5 \\
        --out /tmp/rl_tradeoff                                # smoke test, about a minute

A seed sets the L step's environment, exploration and minibatch streams (the reference is the same for all);
naive compression is deterministic, so its spread over seeds is zero. Every run is tested on ``--episodes``
episodes with the test seeds; during LC each step is evaluated on ``--eval-episodes`` episodes with the
model-selection seeds, and the network reported is chosen by validation (``--select best``,
:class:`lc.KeepBest`; every step's Δ(Θ) is a compressed network of the same ratio, and the reference itself is
the best of its training snapshots by validation): the ``--candidates`` steps with the best of those returns are
evaluated again on ``--rescore-episodes`` further validation episodes and the best of them by that is reported
(``--candidates 1``: the best per-step return, as runs before this option). ``--select last`` reports the last
step; its test return is recorded either way. Finished runs are recorded in
rows.jsonl and skipped when the command is run again; several processes may share one ``--out`` (each run is
claimed by one of them, see :mod:`experiments.runs`). Each compressed network is saved in nets/ twice: the dense
Δ(Θ) as a state dict (for experiments.rl.costs) and Θ as an ``lc.save`` artifact (``file_bytes``,
``realised_ratio`` = float32 bytes of the network / file bytes). Writes rows.csv, rows.jsonl, tradeoff.png.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import json  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import lc  # noqa: E402
from lc._io import write_atomic  # noqa: E402
from tasks import qnetwork as qn  # noqa: E402

from .. import cli  # noqa: E402
from ..cli import option  # noqa: E402
from ..plot import save_figure  # noqa: E402
from ..parallel import Parallel, run_workers  # noqa: E402
from ..runs import RunStore  # noqa: E402
from ..schemes import parse_scheme  # noqa: E402
from . import common as rc  # noqa: E402

SCHEMES = ("quantization=2", "quantization=4", "quantization-outrows=4", "quantization=16", "pruning=0.1",
           "pruning=0.3", "pruning=0.5", "low-rank-hidden=0.25", "low-rank-hidden=0.5", "quant2+sparse=0.05",
           "pruned-quant16=0.25")
METHODS = ("naive", "lc-online", "lc-offline")


@dataclass
class Config(rc.Common, Parallel):
    """Study 3's settings (every field a flag and a key of a --config file)."""

    schemes: list[str] = option(list(SCHEMES), "FAMILY=VALUE, see experiments.schemes.parse_scheme")
    methods: list[str] = option(list(METHODS), "methods", choices=METHODS)
    seeds: list[int] = option([0, 1, 2], "seeds of the L step")
    steps: int = option(30, "LC steps (length of the μ schedule)")
    mu0: float = option(1e-3, "μ₀ of the schedule μ_j = μ₀ · a^j")
    multiplier: float = option(1.25, "a of the schedule μ_j = μ₀ · a^j")
    eval_episodes: int = option(20, "validation episodes of the per-step LC evaluation (model-selection seeds, as "
                                    "the reference's selection)")
    select: str = option("best", "report the LC step chosen by validation (lc.KeepBest, see --candidates; the "
                                 "reference was selected by validation too) or the last step", choices=("best", "last"))
    candidates: int = option(5, "--select best: keep the steps with the M best validation returns and choose among "
                                "them by --rescore-episodes further validation episodes (KeepBest.reselect); 1 = the "
                                "best of the per-step validation returns")
    rescore_episodes: int = option(100, "validation episodes (seeds after those of the per-step evaluation) that "
                                        "choose among the --candidates")
    policy_states: int | None = option(None, "offline L step: states of the compressed policy added per L step "
                                              "(DAgger; default: the config's distill_policy_states)")
    action_weight: float | None = option(None, "offline L step: weight of the cross-entropy on the reference's "
                                                "greedy action (default: the config's distill_action_weight)")
    regret_weight: float | None = option(None, "offline L step: weight of the expected regret of the softmax policy "
                                                "(default: the config's distill_regret_weight)")
    set: list[str] = option([], "override L-step fields of the config (lc_*, distill_*), e.g. --set "
                                "distill_steps=1000 distill_temperature=0.2", metavar="FIELD=VALUE")
    out: str = option("results/rl/tradeoff", "output directory; several processes may share it (each run is "
                                             "claimed by one)", directory=True)
    plot_only: bool = option(False, "only redraw tradeoff.png from --out's rows")


def _key(row: dict) -> str:
    """A run's id (and the name of its files in nets/)."""
    return f"{row['scheme']}_{row['method']}_{row['seed']}".replace("=", "-")


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.rl.tradeoff", description=__doc__)
    args.check_parallel()
    out = Path(args.out)
    if args.plot_only:
        return plot(rc.read_rows(out), out / "tradeoff.png")
    rc.setup_logging(out)
    torch.set_num_threads(args.threads)
    overrides = rc.l_step_overrides(rc.ENVS[args.env](), args.set)     # checked before anything runs
    for name, value in (("distill_policy_states", args.policy_states), ("distill_action_weight", args.action_weight),
                        ("distill_regret_weight", args.regret_weight)):
        if value is not None:
            if name in overrides:
                raise lc.CompressionError(f"{name} is given twice (a flag and --set): give it once")
            overrides[name] = value
    if args.candidates < 1 or args.rescore_episodes < 1:
        raise lc.CompressionError(f"--candidates {args.candidates} and --rescore-episodes {args.rescore_episodes} "
                                  "must both be ≥ 1")
    rescoring = args.select == "best" and args.candidates > 1
    settings = json.dumps({"steps": args.steps, "mu0": args.mu0, "multiplier": args.multiplier,
                           "eval_episodes": args.eval_episodes, "select": args.select, **overrides,
                           **({"candidates": args.candidates, "rescore_episodes": args.rescore_episodes}
                              if rescoring else {})}, sort_keys=True)
    schemes = [parse_scheme(text) for text in args.schemes]
    store = RunStore(out, None, key=_key)                   # settings are checked here, not by config.json
    other = {r["settings"] for r in store.rows() if r.get("settings", settings) != settings}
    if other:
        raise lc.CompressionError(f"{out} holds LC runs made with other settings ({sorted(other)[0]}); these are "
                                  f"{settings}: give another --out (finished runs are skipped only when the settings "
                                  "match)")
    ref = rc.reference(args.env)
    ref_row = {"env": ref.cfg.env_id, "scheme": "reference", "family": "reference", "value": 0,
               "method": "reference", "seed": 0, "ratio": 1.0}
    if store.claim(_key(ref_row)):
        ev = qn.evaluate(ref.network(), ref.cfg.env_id, args.episodes)
        store.add({**ref_row, **_ev(ev), "seconds": 0.0})
        print(f"reference: {ev.mean:.1f} ± {ev.std:.1f}")
    (out / "nets").mkdir(parents=True, exist_ok=True)
    work = _Runs(args, ref, schemes, overrides, rescoring, settings)
    if args.workers > 1:                    # the same loop in each worker; the claims share the runs out
        run_workers(work, args, out / "jobs", name="lc-rl-tradeoff")
    else:
        work(0)
    plot(store.rows(), out / "tradeoff.png")


@dataclass
class _Runs:
    """Every run of the study not done or claimed in ``args.out``, in one process (a worker, or the only one)."""

    args: Config
    ref: qn.Reference
    schemes: list
    overrides: dict
    rescoring: bool
    settings: str

    def __call__(self, worker: int) -> None:
        args = self.args
        store = RunStore(Path(args.out), None, key=_key)
        for scheme in self.schemes:
            for method in args.methods:
                for seed in (args.seeds if method != "naive" else args.seeds[:1]):
                    key = _key({"scheme": scheme.name, "method": method, "seed": seed})
                    if not store.claim(key):
                        continue
                    try:
                        row = _one_run(args, self.ref, scheme, method, seed, key, self.overrides, self.rescoring,
                                       self.settings)
                    except BaseException:
                        store.release(key)
                        raise
                    store.add(row)
                    print(f"{scheme.name:24s} {method:10s} seed {seed}: ratio {row['ratio']:6.2f}  return "
                          f"{row['return_mean']:8.1f} ± {row['return_std']:.1f}  ({row['seconds']:.0f}s)",
                          flush=True)


def _one_run(args: Config, ref: qn.Reference, scheme, method: str, seed: int, key: str, overrides: dict,
             rescoring: bool, settings: str) -> dict:
    out = Path(args.out)
    t0 = time.perf_counter()
    if method == "naive":
        net, compressed = rc.naive(ref, scheme)
        ratio = compressed.ratio(net)
        lc_info = {}
    else:
        best = lc.KeepBest(keep=args.candidates if rescoring else 1)
        net, history, compressed = rc.lc_run(
            ref, scheme, method.removeprefix("lc-"), seed=seed, mu0=args.mu0, multiplier=args.multiplier,
            steps=args.steps, eval_episodes=args.eval_episodes, callbacks=[best], **overrides)
        ratio = history[-1].ratio
        last = qn.evaluate(net, ref.cfg.env_id, args.episodes)
        if rescoring:       # validation seeds after the per-step evaluation's: disjoint from them
            best.reselect(net, rc.rescore(ref, args.rescore_episodes, args.eval_episodes))
        elif args.select == "best":
            best.restore(net)
        if args.select == "best":
            ratio, compressed = best.record.ratio, best.compressed
        lc_info = {"lc_steps": len(history) - 1, "mu_last": history[-1].mu,
                   "distance_last": sum(history[-1].distance.values()),
                   "select": args.select, "selected_step": best.step if args.select == "best"
                   else history[-1].step, "last_return_mean": last.mean, "last_return_std": last.std,
                   "select_returns": json.dumps([h.evaluation for h in history]),
                   "candidates": json.dumps([(c.step, c.value, c.rescore) for c in best.candidates])}
    ev = qn.evaluate(net, ref.cfg.env_id, args.episodes)
    write_atomic(out / "nets" / f"{key}.pt", lambda f: torch.save(net.state_dict(), f), what="the network")
    file_bytes = lc.save(out / "nets" / f"{key}.lc", net, compressed,
                         overwrite=True)     # a file here is ours: a run killed before its row was written
    return {"env": ref.cfg.env_id, "scheme": scheme.name, "family": scheme.family,
            "value": scheme.value, "method": method, "seed": seed, "ratio": ratio, **_ev(ev),
            "seconds": time.perf_counter() - t0, "net": f"nets/{key}.pt",
            "artifact": f"nets/{key}.lc", "file_bytes": file_bytes,
            "realised_ratio": lc.storage.realised_ratio(net, file_bytes),
            "mu0": args.mu0, "multiplier": args.multiplier, "policy_states": args.policy_states,
            "action_weight": args.action_weight,
            "regret_weight": args.regret_weight, "set": " ".join(args.set), "settings": settings,
            "l_step_config": json.dumps(rc.config_row(ref.cfg)),
            **lc_info}


def _ev(ev: qn.Evaluation) -> dict:
    return {"return_mean": ev.mean, "return_std": ev.std, "episodes": ev.episodes}


def summary(rows) -> list[dict]:
    """Mean ± std over seeds of the per-run mean return, per (scheme, method)."""
    groups = {}
    for r in rows:
        if r["method"] != "reference":
            groups.setdefault((r["scheme"], r["family"], r["method"]), []).append(r)
    return [{"scheme": s, "family": f, "method": m, "ratio": g[0]["ratio"], "seeds": len(g),
             "mean": float(np.mean([r["return_mean"] for r in g])),
             "std": float(np.std([r["return_mean"] for r in g]))} for (s, f, m), g in groups.items()]


def plot(rows, path):
    """Left: every point. Right: the top of the same plot (return ≥ 100), where LC's points are, labelled."""
    ref = next(r for r in rows if r["method"] == "reference")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    styles = {"naive": ("o", ":"), "lc-online": ("s", "-"), "lc-offline": ("^", "--")}
    points = summary(rows)
    groups = sorted({rc.plot_group(s["family"]) for s in points})
    colors = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    for ax in axes:
        for s in points:
            marker, _ = styles[s["method"]]
            c = colors[rc.plot_group(s["family"])]
            ax.errorbar(s["ratio"], s["mean"], s["std"], marker=marker, color=c, capsize=3, linestyle="none",
                        mfc="none" if s["method"] == "naive" else c)
        for g in groups:
            for m, (marker, ls) in styles.items():
                pts = sorted((s["ratio"], s["mean"]) for s in points
                             if rc.plot_group(s["family"]) == g and s["method"] == m)
                if pts:                          # pruned-quant points differ in two settings: not joined
                    ax.plot(*zip(*pts), color=colors[g], linestyle="none" if g == "pruned-quant" else ls,
                            marker=marker, label=f"{g} {m}", mfc="none" if m == "naive" else colors[g])
        ax.axhline(ref["return_mean"], color="k", lw=1, label="reference")
        ax.axhline(0.95 * ref["return_mean"], color="k", lw=1, ls="--", label="95% of reference")
        ax.set(xscale="log", xlabel="nominal compression ratio (whole network)")
    for s in points:
        if s["family"].startswith("pruned-quant") and s["method"] != "naive" and s["mean"] >= 100:
            k = s["family"].removeprefix("pruned-quant")
            axes[1].annotate(f"{s['scheme'].partition('=')[2]}/{k}", (s["ratio"], s["mean"]), fontsize=6,
                             xytext=(3, -9), textcoords="offset points")
    axes[0].set(ylabel="return (mean ± std over seeds)", title=f"{ref['env']}: LC vs naive compression")
    axes[1].set(ylim=(100, 1.15 * ref["return_mean"]), title="top of the plot; pruned-quant points: keep/k")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(cli.console(main))
