"""Study 4: return vs measured evaluation cost — wall time per transition, CPU time and peak RSS — of the
networks of study 3 (``experiments.rl.tradeoff`` saves them in its nets/ folder).

    python -m experiments.rl.costs [--tradeoff results/rl/tradeoff …] [--episodes 100] [--out results/rl/costs]

Each network is evaluated alone in a fresh Python process (so that its peak RSS belongs to that evaluation:
interpreter + torch + gymnasium + network + episodes), the reference first and last. The networks are the dense
Δ(Θ) as a float32 ``nn.Sequential``: compression changes their storage, not how they run, so differences in
time and memory are expected to be noise — the study measures that. With ``--export``, each network that has an
``lc.save`` artifact is also evaluated from that file as ``lc.export`` makes it for batch 1 (low rank as two
layers where that saves multiply-adds, CSR for a pruned layer where it measures faster; ``sparse_layers``
counts them), rows marked ``form`` = exported. Timings are noisy on a shared machine: the
columns ``*_vs_ref`` are ratios against the mean of the two reference runs of the same command.
Writes rows.csv / rows.jsonl and costs.png.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import lc  # noqa: E402
from lc._io import write_atomic  # noqa: E402
from lc.export import SparseLinear  # noqa: E402
from tasks import policygradient as pg  # noqa: E402
from tasks import qnetwork as qn  # noqa: E402

from .. import cli  # noqa: E402
from ..cli import option  # noqa: E402
from ..plot import save_figure  # noqa: E402
from ..policygradient.reference import ENVS as PG_ENVS  # noqa: E402
from . import common as rc  # noqa: E402


@dataclass
class Config(rc.Common):
    """Study 4's settings (every field a flag and a key of a --config file)."""

    env: str = option("lunarlander", "environment (a PPO actor of experiments.policygradient: for --one only)",
                      choices=tuple(sorted({*rc.ENVS, *PG_ENVS})))
    tradeoff: list[str] = option(["results/rl/tradeoff"], "output folder(s) of experiments.rl.tradeoff")
    export: bool = option(False, "also evaluate each network that has an lc.save artifact as lc.export makes it")
    one: str | None = option(None, "evaluate this one network in this process and print its row (internal)",
                             hidden=True)
    out: str = option("results/rl/costs", "output directory", directory=True)


def network(env: str) -> tuple[torch.nn.Module, str]:
    """A fresh network of ``env``'s study and its gymnasium id: a Q-network (``rc.ENVS``) or a PPO actor
    (``experiments.policygradient``'s environments)."""
    if env in rc.ENVS:
        cfg = rc.ENVS[env]()
        return qn.make_network(cfg), cfg.env_id
    cfg = PG_ENVS[env]()
    return pg.make_actor(cfg), cfg.env_id


def one(env: str, net_path: str, episodes: int) -> dict:
    """Evaluate one saved network in this process (called in a child process): a state dict (``.pt``), or an
    ``lc.save`` artifact (``.lc``), loaded and run as ``lc.export`` makes it for batch-1 inference."""
    torch.set_num_threads(1)
    net, env_id = network(env)
    if net_path.endswith(".lc"):
        net = lc.export(net, lc.load(net_path, net), batch_size=1)
    else:
        net.load_state_dict(torch.load(net_path, weights_only=True))
    sparse_layers = sum(isinstance(m, SparseLinear) for m in net.modules())
    return {**qn.evaluate(net, env_id, episodes).as_dict(), "sparse_layers": sparse_layers}


def measure(env: str, net_path: str, episodes: int) -> dict:
    cmd = [sys.executable, "-m", "experiments.rl.costs", "--env", env, "--one", net_path,
           "--episodes", str(episodes)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = cli.parse(Config, argv, prog="python -m experiments.rl.costs", description=__doc__)
    if args.one:
        print(json.dumps(one(args.env, args.one, args.episodes)))
        return
    out = Path(args.out)
    src = [(Path(d), r) for d in args.tradeoff for r in rc.read_rows(Path(d)) if r.get("net")]
    if not src:
        raise lc.CompressionError(f"no networks in {' '.join(args.tradeoff)}: run experiments.rl.tradeoff "
                                  "first (its rows.jsonl lists them)")
    rows = []
    out.mkdir(parents=True, exist_ok=True)       # the reference network alone, loaded like the others (its cache
    reference = out / "reference.pt"             # file also holds the replay buffer, which would count in RSS)
    state = rc.reference(args.env).network().state_dict()
    write_atomic(reference, lambda f: torch.save(state, f), what="the reference network")
    refs = [measure(args.env, str(reference), args.episodes)]
    forms = [("dense", "net")] + [("exported", "artifact")] * args.export
    for d, r in src:
        for form, key in forms:
            if not r.get(key):
                continue
            m = measure(args.env, str(d / r[key]), args.episodes)
            rows.append({"scheme": r["scheme"], "family": r["family"], "method": r["method"], "seed": r["seed"],
                         "ratio": r["ratio"], "form": form, **m})
            print(f"{r['scheme']:22s} {r['method']:10s} {r['seed']} {form:8s}: return {m['mean']:8.1f}  "
                  f"{1e6 * m['time_per_transition']:.1f} us/step  RSS {m['peak_rss_mb']:.0f} MiB", flush=True)
    refs.append(measure(args.env, str(reference), args.episodes))
    ref = {k: (refs[0][k] + refs[1][k]) / 2 for k in ("time_per_transition", "inference_time_per_transition",
                                                       "peak_rss_mb", "cpu_time")}
    rows = [{"scheme": "reference", "family": "reference", "method": "reference", "seed": i, "ratio": 1.0,
             "form": "dense", **m}
            for i, m in enumerate(refs)] + rows
    for r in rows:
        for k in ("time_per_transition", "inference_time_per_transition", "peak_rss_mb"):
            r[f"{k}_vs_ref"] = r[k] / ref[k]
    rc.write_rows(rows, out)
    plot(rows, out / "costs.png")


def plot(rows, path):
    """Colour: the scheme's family (every pruned-quantK one colour); marker: the method."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), sharey=True)
    markers = {"reference": "*", "naive": "o", "lc-online": "s", "lc-offline": "^"}
    groups = {}
    for r in rows:
        method = r["method"] + (" exported" if r.get("form") == "exported" else "")
        groups.setdefault((rc.plot_group(r["family"]), method), []).append(r)
    colors = {}
    for (fam, method), rr in sorted(groups.items()):
        c = "k" if fam == "reference" else colors.setdefault(fam, f"C{len(colors) % 10}")
        kw = dict(marker="x" if method.endswith("exported") else markers[method], linestyle="none",
                  label=f"{fam} {method}", color=c, mfc="none" if method == "naive" else c)
        axes[0].plot([1e6 * r["time_per_transition"] for r in rr], [r["mean"] for r in rr], **kw)
        axes[1].plot([r["peak_rss_mb"] for r in rr], [r["mean"] for r in rr], **kw)
    axes[0].set(xlabel="evaluation wall time per transition (µs, measured)", ylabel="return (test episodes)")
    axes[1].set(xlabel="peak RSS of the evaluation process (MiB, measured)")
    axes[1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(cli.console(main))
