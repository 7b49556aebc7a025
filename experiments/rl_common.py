"""Shared pieces of the Q-network study (``experiments/rl_*.py``): environments, compression schemes, one LC run.

The schemes mirror the families of the classification sweep (a scheme = which weights, grouped how, compressed
by what); a scheme whose compression this version of ``lc`` lacks is skipped with a message.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import lc
from lc import AsIs, AsVector, Param
from tasks import qnetwork as qn

ENVS = {"cartpole": qn.CartPoleConfig, "lunarlander": qn.LunarLanderConfig}


def weight_names(net: torch.nn.Module) -> list[str]:
    """The weight matrices of the MLP Q-network, input layer first ('0.weight', '2.weight', …)."""
    return [n for n, p in net.named_parameters() if n.endswith("weight")]


def _rank(fraction: float, shape) -> int:
    """⌈fraction · min(m, n)⌉, at least 1 and below full rank (lc.LowRank refuses a rank that compresses nothing)."""
    return min(max(1, math.ceil(fraction * min(shape))), min(shape) - 1)


@dataclass(frozen=True)
class Scheme:
    """One point of a tradeoff curve: ``tasks(net)`` gives the compression_tasks (weights named by string)."""

    family: str
    value: float
    tasks: Callable[[torch.nn.Module], dict]
    requires: tuple[str, ...] = ()
    layers: str = ""                       # which weights, where the family leaves that open (rl_naive's rows)

    @property
    def name(self) -> str:
        return f"{self.family}={self.value:g}"

    def available(self) -> bool:
        return all(hasattr(lc, r) for r in self.requires)


def quantized(k: int, per_row: bool = False) -> tuple:
    """The (view, compression) of one weight matrix on its own adaptive codebook of k values, or (``per_row``)
    on one codebook per row."""
    if per_row:
        return AsIs, lc.AdaptiveQuantization(k=k, per_channel=True)
    return AsVector, lc.AdaptiveQuantization(k=k)


def quantization(k: int) -> Scheme:
    """Each weight matrix its own adaptive codebook of k values (biases kept in float32)."""
    return Scheme("quantization", k, lambda net: {Param(n): quantized(k) for n in weight_names(net)},
                  ("AdaptiveQuantization",))


def quantization_output_rows(k: int) -> Scheme:
    """As :func:`quantization`, but the output layer has one codebook of k values per row (per action,
    ``per_channel=True``): each action's Q-value is read from its own row, and one codebook for the whole layer
    ties them together. Per-row codebooks for the hidden layers would cost 32·k bits for each of their 64 rows."""
    def tasks(net):
        names = weight_names(net)
        return {Param(n): quantized(k, per_row=n == names[-1]) for n in names}
    return Scheme("quantization-outrows", k, tasks, ("AdaptiveQuantization",))


def _all_weights(compression: Callable[[int], lc.Compression]) -> Callable[[torch.nn.Module], dict]:
    """compression_tasks of one task over all weight matrices together; ``compression(n)`` for n weights."""
    def tasks(net):
        names = weight_names(net)
        n = sum(dict(net.named_parameters())[m].numel() for m in names)
        return {Param(names): (AsVector, compression(n))}
    return tasks


def pruning(keep: float) -> Scheme:
    """ℓ0 constraint over all weights together: keep a fraction ``keep`` of them (the largest in LC's sense)."""
    return Scheme("pruning", keep, _all_weights(lambda n: lc.ConstraintL0Pruning(kappa=max(1, round(keep * n)))))


def low_rank(fraction: float, layers: str = "hidden") -> Scheme:
    """Each matrix at rank ⌈fraction · min(m, n)⌉; ``layers`` = "hidden" (hidden-to-hidden matrices only) or "all"."""
    def tasks(net):
        params = dict(net.named_parameters())
        names = weight_names(net)
        names = names if layers == "all" else names[1:-1]
        return {Param(n): (AsIs, lc.LowRank(target_rank=_rank(fraction, params[n].shape))) for n in names}
    return Scheme(f"low-rank-{layers}", fraction, tasks, ("LowRank",))


def quant_plus_sparse(keep: float) -> Scheme:
    """Additive mix: each weight matrix quantized with k = 2 plus a sparse correction of a fraction of weights."""
    def tasks(net):
        params = dict(net.named_parameters())
        return {Param(n): [(AsVector, lc.AdaptiveQuantization(k=2)),
                           (AsVector, lc.ConstraintL0Pruning(kappa=max(1, round(keep * params[n].numel()))))]
                for n in weight_names(net)}
    return Scheme("quant2+sparse", keep, tasks, ("AdaptiveQuantization",))


def pruned_quantization(keep: float, k: int = 16) -> Scheme:
    """Pruning and quantization at once, over all weights together: keep a fraction ``keep`` of them, their
    values from one learned codebook of k entries (``lc.PrunedQuantization``)."""
    return Scheme(f"pruned-quant{k}", keep,
                  _all_weights(lambda n: lc.PrunedQuantization(kappa=max(1, round(keep * n)), k=k)),
                  ("PrunedQuantization",))


def parse_scheme(text: str) -> Scheme:
    """'quantization=4', 'pruning=0.1', 'low-rank-hidden=0.25', 'low-rank-all=0.5', 'quant2+sparse=0.02',
    'quantization-outrows=4' (the output layer one codebook per row), 'pruned-quant16=0.1' (keep 10%, values
    from one 16-entry codebook; any k: 'pruned-quantK=KEEP')."""
    family, _, value = text.partition("=")
    k = family.removeprefix("pruned-quant")
    if k != family and k.isdigit() and value:
        return pruned_quantization(float(value), int(k))
    makers = {"quantization": lambda v: quantization(int(v)), "pruning": pruning,
              "quantization-outrows": lambda v: quantization_output_rows(int(v)),
              "low-rank-hidden": lambda v: low_rank(v, "hidden"), "low-rank-all": lambda v: low_rank(v, "all"),
              "quant2+sparse": quant_plus_sparse}
    if family not in makers or not value:
        raise lc.CompressionError(f"scheme {text!r}: write FAMILY=VALUE with FAMILY one of {sorted(makers)} "
                                  "or pruned-quantK (K the codebook size)")
    return makers[family](float(value))


def plot_group(family: str) -> str:
    """Colour group of a family in the study's plots: every pruned-quantK family is one group."""
    return "pruned-quant" if family.startswith("pruned-quant") else family


def naive(ref: qn.Reference, scheme: Scheme) -> tuple[torch.nn.Module, lc.Compressed]:
    """Direct (post-training) compression of the reference: Θ = Π(w̄); returns the network, set to Δ(Θ), and Θ
    (``compressed.ratio(net)`` is its nominal ratio, ``lc.save`` writes it)."""
    net = ref.network()
    compressed = lc.Compressed.direct(net, scheme.tasks(net))
    compressed.apply(net)
    return net, compressed


def lc_run(ref: qn.Reference, scheme: Scheme, l_step: str, *, seed: int, mu0: float, multiplier: float,
           steps: int, eval_episodes: int, callbacks=(), **overrides) -> tuple[torch.nn.Module, list, lc.Compressed]:
    """One LC run from the reference; ``l_step`` = "online" (continued double DQN) or "offline" (distillation).
    Returns the network (the last step's Δ(Θ)), the history and the last step's Θ.
    ``overrides`` replace L-step fields of the config (e.g. ``distill_policy_states=5000``; None = keep).
    The per-step evaluation uses the model-selection seeds, never the test seeds."""
    net = ref.network()
    torch.manual_seed(seed)
    cfg = dataclasses.replace(ref.cfg, **{k: v for k, v in overrides.items() if v is not None})
    step = qn.OnlineLStep(cfg, ref, seed=seed) if l_step == "online" else qn.DistillLStep(cfg, ref, seed)
    evaluate = lambda m: qn.evaluate(m, ref.cfg.env_id, eval_episodes, qn.SELECT_SEED0).mean   # noqa: E731
    algorithm = lc.Algorithm(net, scheme.tasks(net), lc.geometric_mu(mu0, multiplier, steps), step, evaluate,
                             callbacks=callbacks)
    history = algorithm.run()
    return net, history, lc.Compressed.of(algorithm)


def rescore(ref: qn.Reference, episodes: int, after: int) -> Callable[[torch.nn.Module], float]:
    """The second validation score of a step (``KeepBest.reselect``): the mean return over ``episodes``
    model-selection episodes starting after the ``after`` that the per-step evaluation of ``lc_run`` uses."""
    return lambda m: qn.evaluate(m, ref.cfg.env_id, episodes, qn.SELECT_SEED0 + after).mean


def l_step_overrides(cfg, items: list[str]) -> dict:
    """``["distill_steps=1000", …]`` → ``{"distill_steps": 1000, …}``: L-step fields (``lc_*``, ``distill_*``) of
    ``cfg`` only, converted to the field's type; any other field would need another reference."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields or not name.startswith(("lc_", "distill_")):
            allowed = sorted(n for n in fields if n.startswith(("lc_", "distill_")))
            raise lc.CompressionError(f"--set {item!r}: write FIELD=VALUE with FIELD an L-step field of "
                                      f"{type(cfg).__name__}: {', '.join(allowed)}")
        kind = type(getattr(cfg, name))
        try:
            out[name] = kind(float(value)) if kind is int else kind(value)
        except ValueError:
            raise lc.CompressionError(f"--set {item!r}: {value!r} is not a valid {kind.__name__}") from None
    return out


def common_args(ap) -> None:
    ap.add_argument("--env", choices=sorted(ENVS), default="lunarlander")
    ap.add_argument("--episodes", type=int, default=100, help="test episodes per evaluation (study: 100)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def reference(env: str) -> qn.Reference:
    torch.set_num_threads(1)
    return qn.reference(ENVS[env]())


def write_rows(rows: list[dict], out: Path) -> None:
    """rows.csv and rows.jsonl in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "rows.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    with open(out / "rows.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def read_rows(out: Path) -> list[dict]:
    path = out / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def setup_logging(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(out / "log.txt")])


def config_row(cfg) -> dict:
    return {"config": type(cfg).__name__, **{k: str(v) for k, v in dataclasses.asdict(cfg).items()}}
