"""Study 3: return vs compression ratio of double-DQN Q-networks, LC (online and offline L steps) vs naive
compression, mean ± std over seeds, for quantization (k = 2, 4, 16; k = 4 also with one codebook per row of the
output layer), pruning, low rank, an additive mix and pruning with a codebook for the kept values
(lc.PrunedQuantization).

    python -m experiments.rl_tradeoff                         # the study: LunarLander-v3, 3 seeds, 100 episodes
    python -m experiments.rl_tradeoff --env cartpole --schemes pruning=0.2 --seeds 0 --steps 3 --episodes 5 \\
        --out /tmp/rl_tradeoff                                # smoke test, about a minute

A seed sets the L step's environment, exploration and minibatch streams (the reference is the same for all);
naive compression is deterministic, so its spread over seeds is zero. Every run is tested on ``--episodes``
episodes with the test seeds; during LC each step is evaluated on ``--eval-episodes`` episodes with the
model-selection seeds, and the network reported is chosen by validation (``--select best``,
:class:`lc.KeepBest`; every step's Δ(Θ) is a compressed network of the same ratio, and the reference itself is
the best of its training snapshots by validation): the ``--candidates`` steps with the best of those returns are
evaluated again on ``--rescore-episodes`` further validation episodes and the best of them by that is reported
(``--candidates 1``: the best per-step return, as runs before this option). ``--select last`` reports the last
step; its test return is recorded either way. Finished runs are appended to
rows.jsonl and skipped when the command is run again. Each compressed network is saved in nets/ twice: the dense
Δ(Θ) as a state dict (for experiments.rl_costs) and Θ as an ``lc.save`` artifact (``file_bytes``,
``realised_ratio`` = float32 bytes of the network / file bytes). Writes rows.csv, rows.jsonl, tradeoff.png.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import json  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import lc  # noqa: E402
from tasks import qnetwork as qn  # noqa: E402

from . import rl_common as rc  # noqa: E402

SCHEMES = ("quantization=2", "quantization=4", "quantization-outrows=4", "quantization=16", "pruning=0.1",
           "pruning=0.3", "pruning=0.5", "low-rank-hidden=0.25", "low-rank-hidden=0.5", "quant2+sparse=0.05",
           "pruned-quant16=0.25")
METHODS = ("naive", "lc-online", "lc-offline")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rc.common_args(ap)
    ap.add_argument("--schemes", nargs="+", default=SCHEMES, help="FAMILY=VALUE, see rl_common.parse_scheme")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--seeds", type=int, nargs="+", default=(0, 1, 2))
    ap.add_argument("--steps", type=int, default=30, help="LC steps (length of the μ schedule)")
    ap.add_argument("--mu0", type=float, default=1e-3)
    ap.add_argument("--multiplier", type=float, default=1.25)
    ap.add_argument("--eval-episodes", type=int, default=20, help="validation episodes of the per-step LC evaluation "
                    "(model-selection seeds, as the reference's selection)")
    ap.add_argument("--select", choices=("best", "last"), default="best", help="report the LC step chosen by "
                    "validation (lc.KeepBest, see --candidates; the reference was selected by validation too) or the "
                    "last step")
    ap.add_argument("--candidates", type=int, default=5, help="--select best: keep the steps with the M best "
                    "validation returns and choose among them by --rescore-episodes further validation episodes "
                    "(KeepBest.reselect); 1 = the best of the per-step validation returns")
    ap.add_argument("--rescore-episodes", type=int, default=100, help="validation episodes (seeds after those of "
                    "the per-step evaluation) that choose among the --candidates")
    ap.add_argument("--policy-states", type=int, default=None, help="offline L step: states of the compressed "
                    "policy added per L step (DAgger; default: the config's distill_policy_states)")
    ap.add_argument("--action-weight", type=float, default=None, help="offline L step: weight of the cross-entropy "
                    "on the reference's greedy action (default: the config's distill_action_weight)")
    ap.add_argument("--regret-weight", type=float, default=None, help="offline L step: weight of the expected "
                    "regret of the softmax policy (default: the config's distill_regret_weight)")
    ap.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", help="override L-step fields of the "
                    "config (lc_*, distill_*), e.g. --set distill_steps=1000 distill_temperature=0.2")
    ap.add_argument("--out", default="results/rl/tradeoff")
    ap.add_argument("--plot-only", action="store_true", help="only redraw tradeoff.png from --out's rows")
    args = ap.parse_args(argv)
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
    rows = rc.read_rows(out)
    other = {r["settings"] for r in rows if r.get("settings", settings) != settings}
    if other:
        raise lc.CompressionError(f"{out} holds LC runs made with other settings ({sorted(other)[0]}); these are "
                                  f"{settings}: give another --out (finished runs are skipped only when the settings "
                                  "match)")
    ref = rc.reference(args.env)
    done = {(r["scheme"], r["method"], r["seed"]) for r in rows}
    ref_row = next((r for r in rows if r["method"] == "reference"), None)
    if ref_row is None:
        ev = qn.evaluate(ref.network(), ref.cfg.env_id, args.episodes)
        ref_row = {"env": ref.cfg.env_id, "scheme": "reference", "family": "reference", "value": 0,
                   "method": "reference", "seed": 0, "ratio": 1.0, **_ev(ev), "seconds": 0.0}
        rows.append(ref_row)
        print(f"reference: {ev.mean:.1f} ± {ev.std:.1f}")
    (out / "nets").mkdir(parents=True, exist_ok=True)
    for text in args.schemes:
        scheme = rc.parse_scheme(text)
        if not scheme.available():
            print(f"skipped {text}: this lc lacks {scheme.requires}")
            continue
        for method in args.methods:
            for seed in (args.seeds if method != "naive" else args.seeds[:1]):
                if (scheme.name, method, seed) in done:
                    continue
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
                key = f"{scheme.name}_{method}_{seed}".replace("=", "-")
                torch.save(net.state_dict(), out / "nets" / f"{key}.pt")
                file_bytes = lc.save(out / "nets" / f"{key}.lc", net, compressed,
                                     overwrite=True)     # a file here is ours: a run killed before its row was written
                row = {"env": ref.cfg.env_id, "scheme": scheme.name, "family": scheme.family,
                       "value": scheme.value, "method": method, "seed": seed, "ratio": ratio, **_ev(ev),
                       "seconds": time.perf_counter() - t0, "net": f"nets/{key}.pt",
                       "artifact": f"nets/{key}.lc", "file_bytes": file_bytes,
                       "realised_ratio": lc.storage.realised_ratio(net, file_bytes),
                       "mu0": args.mu0, "multiplier": args.multiplier, "policy_states": args.policy_states,
                       "action_weight": args.action_weight,
                       "regret_weight": args.regret_weight, "set": " ".join(args.set), "settings": settings,
                       "l_step_config": json.dumps(rc.config_row(ref.cfg)),
                       **lc_info}
                rows.append(row)
                rc.write_rows(rows, out)
                print(f"{scheme.name:24s} {method:10s} seed {seed}: ratio {ratio:6.2f}  return {ev.mean:8.1f} ± "
                      f"{ev.std:.1f}  ({row['seconds']:.0f}s)", flush=True)
    rc.write_rows(rows, out)
    plot(rows, out / "tradeoff.png")


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
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
