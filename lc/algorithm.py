"""The LC algorithm (Carreira-Perpiñán 2017): alternate an L step (the user's training plus a quadratic
penalty) with exact C steps, under an increasing penalty μ and, by default, Lagrange multipliers λ."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from . import _checkpoint
from ._errors import CompressionError
from ._tasks import Task, build_tasks, c_step, model_ratio
from .compression._base import State

__all__ = ["Algorithm", "StepRecord", "geometric_mu"]

log = logging.getLogger(__name__)


def geometric_mu(mu0: float, multiplier: float, steps: int) -> list[float]:
    """The usual schedule μ_j = μ₀ · a^j, j = 0 … steps − 1 (e.g. ``geometric_mu(9e-5, 1.1, 40)``)."""
    if not (isinstance(steps, int) and steps >= 1):
        raise CompressionError(f"geometric_mu: steps={steps!r} must be an integer ≥ 1")
    if not (mu0 > 0 and math.isfinite(mu0)):
        raise CompressionError(f"geometric_mu: mu0={mu0!r} must be a finite number > 0")
    if not (multiplier >= 1 and math.isfinite(multiplier)):
        raise CompressionError(f"geometric_mu: multiplier={multiplier!r} must be ≥ 1 (μ may not decrease)")
    return [mu0 * multiplier ** j for j in range(steps)]


def _check_schedule(mu_schedule) -> list[float]:
    try:
        mus = [float(m) for m in mu_schedule]
    except (TypeError, ValueError):
        raise CompressionError(f"mu_schedule must be a sequence of numbers, got {mu_schedule!r}") from None
    if not mus:
        raise CompressionError("mu_schedule is empty: give at least one μ, e.g. lc.geometric_mu(1e-3, 1.1, 30)")
    bad = [m for m in mus if not (m > 0 and math.isfinite(m))]
    if bad:
        raise CompressionError(f"mu_schedule must hold finite values > 0; got {bad[0]!r}")
    for j in range(1, len(mus)):
        if mus[j] < mus[j - 1]:
            raise CompressionError(f"mu_schedule must not decrease: μ[{j}]={mus[j]:g} < μ[{j-1}]={mus[j-1]:g}; "
                                   "sort it or use lc.geometric_mu")
    return mus


@dataclass
class StepRecord:
    """What one LC step did. Step 0 is the direct compression Θ = Π(w̄) (``mu`` = 0)."""

    step: int
    mu: float
    distance: dict[str, float]           # ‖w − Δ(Θ)‖² per task
    evaluation: Any                      # what evaluation_func returned, with Δ(Θ) in the model
    bits: int                            # nominal bits of all compressed tasks
    ratio: float                         # nominal compression ratio of the whole model (all parameters, float32)
    l_step_time: float                   # seconds
    c_step_time: float                   # seconds
    info: dict[str, dict] = field(default_factory=dict)   # per task: what its C step chose (e.g. ranks)


class Algorithm:
    """``Algorithm(model, compression_tasks, mu_schedule, l_step_optimization, evaluation_func)``; ``run()``.

    - ``l_step_optimization(model, lc_penalty, step)`` trains ``model`` on its loss + ``lc_penalty()``, where
      ``lc_penalty()`` = Σ_tasks μ/2 ‖w − Δ(Θ) − λ/μ‖² (a differentiable scalar on the weights' device; or call
      ``lc_penalty.add_grad_()`` after ``loss.backward()`` to add its gradient directly, see :class:`Penalty`) and
      ``step`` is the index of μ in ``mu_schedule``. If it has ``state_dict``/``load_state_dict`` (e.g. it keeps
      an optimizer across steps), that state is checkpointed too.
    - ``evaluation_func(model)`` is called after every step with Δ(Θ) in the model; its result is recorded.
    - ``multipliers=True``: augmented Lagrangian (λ updated); ``False``: quadratic penalty (λ = 0).
    - ``tolerance``: stop early once Σ_tasks ‖w − Δ(Θ)‖² < tolerance.
    - ``callbacks``: ``cb(algorithm, record)`` after every step; a callback that returns ``True`` stops the run.
    - ``checkpoint_dir``: after every step the run is saved there atomically; ``run()`` on a directory holding a
      checkpoint of the same run continues from its last finished step (and returns at once if it had
      finished). A checkpoint of a different run is an error, never overwritten.
    - ``example_input``: an input batch for ``model`` (a tuple is passed as several arguments), needed only by
      compressions that ask for their layer's output size (``RankSelection(criterion="flops")``): the model is run
      on it once, in eval mode and without gradients, when the tasks are built.

    After ``run()`` the model holds Δ(Θ); ``uncompressed`` holds w (by parameter name).
    """

    def __init__(self, model: torch.nn.Module, compression_tasks: Mapping, mu_schedule: Sequence[float],
                 l_step_optimization: Callable, evaluation_func: Callable | None = None, *,
                 multipliers: bool = True, tolerance: float = 1e-8, callbacks: Iterable[Callable] = (),
                 checkpoint_dir: str | Path | None = None, example_input: Any = None):
        self.model = model
        self.tasks: list[Task] = build_tasks(model, compression_tasks, example_input)
        self.mu_schedule = _check_schedule(mu_schedule)
        if not callable(l_step_optimization):
            raise CompressionError("l_step_optimization must be callable as f(model, lc_penalty, step)")
        if evaluation_func is not None and not callable(evaluation_func):
            raise CompressionError("evaluation_func must be callable as f(model) or None")
        self.l_step_optimization = l_step_optimization
        self.evaluation_func = evaluation_func
        self.multipliers = bool(multipliers)
        self.tolerance = float(tolerance)
        self.callbacks = list(callbacks)
        self.checkpoint_path = Path(checkpoint_dir) / _checkpoint.FILENAME if checkpoint_dir is not None else None
        self.states: list[State | None] = [None] * len(self.tasks)
        self.history: list[StepRecord] = []
        self.uncompressed: dict[str, torch.Tensor] | None = None
        self._delta = {n: None for t in self.tasks for n in t.param_names}           # Δ(Θ) per parameter
        self._lam = {n: torch.zeros_like(p) for t in self.tasks for n, p in zip(t.param_names, t.params)}
        self._finished = False

    # ----------------------------------------------------------------------------------------- the loop
    def run(self) -> list[StepRecord]:
        """Direct compression, then an L step and a C step per μ; returns the history."""
        if self._finished:
            raise CompressionError("this Algorithm has already run; build a new one to run again")
        start = self._resume()
        if start == 0:
            self._record(step=0, mu=0.0, l_time=0.0, c_time=self._c_step(self.mu_schedule[0]))  # Θ = Π(w̄)
        for j in range(start, len(self.mu_schedule)):
            if self._finished:
                break
            mu = self.mu_schedule[j]
            t = time.perf_counter()
            self.l_step_optimization(self.model, self._penalty(mu), j)  # w ← argmin L(w) + μ/2‖w − Δ(Θ) − λ/μ‖²
            l_time = time.perf_counter() - t
            c_time = self._c_step(mu)                                   # Θ ← Π(w − λ/μ)
            if self.multipliers:
                for n, p in self._named_params():
                    self._lam[n] = self._lam[n] - mu * (p.detach() - self._delta[n])  # λ ← λ − μ(w − Δ(Θ))
            self._record(step=j + 1, mu=mu, l_time=l_time, c_time=c_time)
        self._finished = True
        self.uncompressed = {n: p.detach().clone() for n, p in self._named_params()}
        self._load(self._delta)                                         # the model holds Δ(Θ)
        return self.history

    def _c_step(self, mu: float) -> float:
        t = time.perf_counter()
        ws = [self._shifted(task, mu) for task in self.tasks]                  # w − λ/μ per task
        self.states = c_step(self.tasks, ws, mu, self.states)                   # Θ ← Π(w − λ/μ)
        for task, state in zip(self.tasks, self.states):
            for n, d in zip(task.param_names, task.c.decompress(state)):
                self._delta[n] = d
        return time.perf_counter() - t

    def _shifted(self, task: Task, mu: float) -> list[torch.Tensor]:
        ws = [p.detach() - self._lam[n] / mu for n, p in zip(task.param_names, task.params)]       # w − λ/μ
        if not all(bool(torch.isfinite(w).all()) for w in ws):
            raise CompressionError(f"task {task.name!r}: the weights hold NaN or inf at the C step with "
                                   f"μ={mu:g}: the L step diverged (lower its learning rate or the μ schedule)."
                                   + (f" The last good checkpoint in {self.checkpoint_path.parent} is intact."
                                      if self.checkpoint_path else ""))
        return ws

    def _penalty(self, mu: float) -> "Penalty":
        params = list(self._named_params())
        return Penalty(mu, [(p, self._delta[n] + self._lam[n] / mu) for n, p in params])   # Δ(Θ) + λ/μ, fixed

    # ----------------------------------------------------------------------------------------- records
    def _record(self, step: int, mu: float, l_time: float, c_time: float) -> None:
        distance = {t.name: float(sum(((p.detach() - self._delta[n]) ** 2).sum()
                                      for n, p in zip(t.param_names, t.params))) for t in self.tasks}
        with self.compressed():
            evaluation = self.evaluation_func(self.model) if self.evaluation_func else None
        bits = sum(s.bits for s in self.states)
        record = StepRecord(step, mu, distance, evaluation, bits, self._ratio(bits), l_time, c_time,
                            {t.name: _info(s) for t, s in zip(self.tasks, self.states)})
        self.history.append(record)
        log.info("LC step %d  mu=%.3g  |w-Delta|^2=%.4g  bits=%d  ratio=%.2f  eval=%s  (L %.2fs, C %.2fs)", step,
                 mu, sum(distance.values()), bits, record.ratio, evaluation, l_time, c_time)
        stop = any(cb(self, record) is True for cb in self.callbacks)
        if stop or (step > 0 and sum(distance.values()) < self.tolerance) or step == len(self.mu_schedule):
            self._finished = True
        if self.checkpoint_path is not None:
            self._save_checkpoint()

    def _ratio(self, bits: int) -> float:
        return model_ratio(self.model, self.tasks, bits)

    # ----------------------------------------------------------------------------------------- weights
    def _named_params(self):
        for t in self.tasks:
            yield from zip(t.param_names, t.params)

    def _load(self, tensors: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in self._named_params():
                p.copy_(tensors[n])

    @contextlib.contextmanager
    def compressed(self):
        """Within this context the model holds Δ(Θ) (after at least one C step); w is restored on exit."""
        if any(d is None for d in self._delta.values()):
            raise CompressionError("no C step has run yet: call run() first")
        if self._finished and self.uncompressed is not None:
            yield self.model                                   # after run() the model already holds Δ(Θ)
            return
        w = {n: p.detach().clone() for n, p in self._named_params()}
        self._load(self._delta)
        try:
            yield self.model
        finally:
            self._load(w)

    def compression_ratio(self) -> float:
        """Nominal compression ratio of the whole model after the last C step."""
        return self._ratio(sum(s.bits for s in self.states))

    # ----------------------------------------------------------------------------------------- checkpoints
    def _fingerprint(self) -> str:
        spec = {"tasks": [t.spec() for t in self.tasks], "mu": self.mu_schedule, "multipliers": self.multipliers,
                "tolerance": self.tolerance,
                "params": [[n, list(p.shape)] for n, p in self.model.named_parameters()]}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def _save_checkpoint(self) -> None:
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        obj = {"format": 1, "fingerprint": self._fingerprint(), "finished": self._finished,
               "model": self.model.state_dict(), "states": [s.to_dict() for s in self.states],
               "lam": self._lam, "history": [_plain(dataclasses.asdict(r)) for r in self.history],
               "rng": _checkpoint.rng_state()}
        if hasattr(self.l_step_optimization, "state_dict"):
            obj["l_step"] = self.l_step_optimization.state_dict()
        _checkpoint.save_atomic(obj, self.checkpoint_path)

    def _resume(self) -> int:
        """Load the checkpoint if there is one; return the index in ``mu_schedule`` of the next L step."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return 0
        ck = _checkpoint.load(self.checkpoint_path)
        if ck.get("fingerprint") != self._fingerprint():
            raise CompressionError(f"{self.checkpoint_path} holds a checkpoint of a different run (other tasks, "
                                   "compressions, μ schedule or model); give another checkpoint_dir, or move that "
                                   "file away to start afresh")
        self.model.load_state_dict(ck["model"])
        device = {n: p.device for n, p in self._named_params()}
        self.states = [State.from_dict(s).to(t.params[0].device) for s, t in zip(ck["states"], self.tasks)]
        self._lam = {n: v.to(device[n]) for n, v in ck["lam"].items()}
        for t, s in zip(self.tasks, self.states):
            for n, d in zip(t.param_names, t.c.decompress(s)):
                self._delta[n] = d
        self.history = [StepRecord(**r) for r in ck["history"]]
        _checkpoint.set_rng_state(ck["rng"])
        if "l_step" in ck and hasattr(self.l_step_optimization, "load_state_dict"):
            self.l_step_optimization.load_state_dict(ck["l_step"])
        self._finished = ck["finished"]
        log.info("resumed from %s after LC step %d", self.checkpoint_path, self.history[-1].step)
        return self.history[-1].step


def _info(state: State) -> dict:
    """What a C step chose (its meta), with the parts' of an additive combination under ``"parts"``."""
    return {**state.meta, "parts": [_info(p) for p in state.parts]} if state.parts else dict(state.meta)


class Penalty:
    """The ``lc_penalty`` given to the L step: ``lc_penalty()`` is μ/2 Σ‖w − Δ(Θ) − λ/μ‖², a differentiable scalar;
    ``lc_penalty.add_grad_()`` adds its gradient μ(w − Δ(Θ) − λ/μ) to each weight's ``.grad`` in place, without an
    autograd graph — the same step, cheaper: ``loss.backward(); lc_penalty.add_grad_(); optimizer.step()``;
    ``lc_penalty.prox_(eta)`` takes the proximal step on the penalty alone (stable for every μ)."""

    def __init__(self, mu: float, targets: list[tuple[torch.nn.Parameter, torch.Tensor]]):
        self.mu, self.targets = mu, targets

    def __call__(self) -> torch.Tensor:
        return self.mu / 2 * sum(((p - t) ** 2).sum() for p, t in self.targets)  # μ/2 ‖w − Δ(Θ) − λ/μ‖²

    @torch.no_grad()
    def prox_(self, eta: float) -> None:
        """The proximal step on the penalty, in place: w ← argmin_v 1/(2η)‖v − w‖² + μ/2‖v − Δ(Θ) − λ/μ‖²
        = (w + ημ (Δ(Θ) + λ/μ)) / (1 + ημ). It moves w the fraction ημ/(1 + ημ) of the way to its target: the
        gradient step w − η∇ to first order in ημ, but stable for every μ (the gradient step overshoots once
        ημ > 1 and diverges once ημ > 2). For L steps that treat the penalty apart from the loss (for instance
        when an adaptive optimizer such as Adam would rescale its gradient)."""
        if not (eta > 0 and math.isfinite(eta)):
            raise CompressionError(f"prox_: eta={eta!r} must be a finite number > 0")
        f = eta * self.mu / (1 + eta * self.mu)
        for p, t in self.targets:
            p.lerp_(t, f)                                                       # w + f (t − w)

    @torch.no_grad()
    def add_grad_(self) -> None:
        for p, t in self.targets:
            if p.grad is None:
                p.grad = self.mu * (p - t)
            else:
                p.grad.add_(p - t, alpha=self.mu)                                 # ∇ = μ(w − Δ(Θ) − λ/μ)


def _plain(x):
    """Numbers, strings, lists and dicts only (evaluation results may hold numpy or torch scalars)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)
