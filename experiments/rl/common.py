"""Shared pieces of the Q-network study (``experiments/rl/``): environments, the options every study has, one LC
run, rows on disk. The compression schemes are the families of :mod:`experiments.schemes` (``FAMILY=VALUE``, see
:func:`experiments.schemes.parse_scheme`), shared with the classification sweep.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import lc
from lc._io import write_text_atomic
from tasks import qnetwork as qn

from ..cli import option
from ..runs import csv_text
from ..runs import read_rows as _read_rows
from ..schemes import Scheme

ENVS = {"cartpole": qn.CartPoleConfig, "lunarlander": qn.LunarLanderConfig}


@dataclass
class Common:
    """The options of every Q-network study."""

    env: str = option("lunarlander", "environment", choices=tuple(sorted(ENVS)))
    episodes: int = option(100, "test episodes per evaluation (study: 100)")
    threads: int = option(1, "torch CPU threads")


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


def reference(env: str) -> qn.Reference:
    torch.set_num_threads(1)
    return qn.reference(ENVS[env]())


def write_rows(rows: list[dict], out: Path, name: str = "rows") -> None:
    """``{name}.csv`` and ``{name}.jsonl`` in ``out``, each written whole (``lc._io.write_text_atomic``)."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{name}.csv", csv_text(rows), what="the rows")
    if name == "rows":
        write_text_atomic(out / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows), what="the rows")


def read_rows(out: Path) -> list[dict]:
    return _read_rows(out / "rows.jsonl")[0]


def setup_logging(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(out / "log.txt")])


def config_row(cfg) -> dict:
    return {"config": type(cfg).__name__, **{k: str(v) for k, v in dataclasses.asdict(cfg).items()}}
