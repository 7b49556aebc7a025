"""The LC algorithm (Carreira-Perpiñán 2017): alternate an L step (the user's training plus a quadratic
penalty) with exact C steps, under an increasing penalty μ and, by default, Lagrange multipliers λ."""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import numbers
import time
from collections import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ._checkpoint import Checkpoint, LoopState, rng_state
from ._distributed import ranks_for
from ._errors import CompressionError
from ._memory import release_freed_memory
from ._steps import solve
from ._tasks import Task, build_tasks
from .compressed import model_ratio
from .compression._base import State
from .penalty import Penalty

__all__ = ["Algorithm", "StepRecord", "geometric_mu"]

log = logging.getLogger(__name__)


def geometric_mu(mu0: float, multiplier: float, steps: int) -> list[float]:
    """The usual schedule μ_j = μ₀ · a^j, j = 0 … steps − 1 (e.g. ``geometric_mu(9e-5, 1.1, 40)``)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise CompressionError(f"geometric_mu: steps={steps!r} must be an integer ≥ 1")
    if isinstance(mu0, bool) or not isinstance(mu0, numbers.Real) or not (mu0 > 0 and math.isfinite(mu0)):
        raise CompressionError(f"geometric_mu: mu0={mu0!r} must be a finite number > 0")
    if isinstance(multiplier, bool) or not isinstance(multiplier, numbers.Real) or not (
            multiplier >= 1 and math.isfinite(multiplier)):
        raise CompressionError(f"geometric_mu: multiplier={multiplier!r} must be a finite number ≥ 1 (μ may not "
                               "decrease)")
    try:
        mus = [float(mu0) * float(multiplier) ** j for j in range(int(steps))]
    except OverflowError:
        mus = [math.inf]
    if not math.isfinite(mus[-1]):
        raise CompressionError(f"geometric_mu({mu0!r}, {multiplier!r}, {steps!r}): μ₀·a^(steps−1) overflows a "
                               "float; lower the multiplier or the number of steps")
    return mus


def _check_schedule(mu_schedule) -> list[float]:
    if isinstance(mu_schedule, (str, bytes, Mapping, set, frozenset)):
        raise CompressionError(f"mu_schedule must be a sequence of numbers in order (a list, e.g. "
                               f"lc.geometric_mu(1e-3, 1.1, 30)), not a {type(mu_schedule).__name__}")
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


def _check_callable(f, name: str, call: str, args: tuple) -> None:
    """``f`` must be callable with ``args`` (checked on its signature, before anything runs)."""
    if not callable(f):
        raise CompressionError(f"{name} must be callable as {call}")
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):
        return                                              # no signature to check (some builtins)
    try:
        signature.bind(*args)
    except TypeError as e:
        raise CompressionError(f"{name} cannot be called as {call}: its signature is {signature} ({e}); give it "
                               f"exactly those arguments (or *args)") from None


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
      ``lc_penalty.add_grad_()`` after ``loss.backward()`` to add its gradient directly, see :class:`lc.Penalty`)
      and ``step`` is the index of μ in ``mu_schedule``. If it has ``state_dict``/``load_state_dict`` (e.g. it keeps
      an optimizer across steps), that state is checkpointed too.
    - ``evaluation_func(model)`` is called after every step with Δ(Θ) in the model; its result is recorded.
    - ``multipliers=True``: augmented Lagrangian (λ updated); ``False``: quadratic penalty (λ = 0).
    - ``tolerance``: stop early once Σ_tasks ‖w − Δ(Θ)‖² < tolerance.
    - ``callbacks``: ``cb(algorithm, record)`` after every step, every callback every step; the run stops after
      a step at which any of them returned ``True``.
    - ``checkpoint_dir``: after every step the run is saved there atomically; ``run()`` on a directory holding a
      checkpoint of the same run continues from its last finished step (and returns at once if it had
      finished). A checkpoint of a different run is an error, never overwritten.
    - ``example_input``: an input batch for ``model`` (a tuple is passed as several arguments), needed only by
      compressions that ask for their layer's output size (``RankSelection(criterion="flops")``): the model is run
      on it once, in eval mode and without gradients, when the tasks are built.
    - ``distributed``: the L step runs under ``torch.distributed`` (DDP, FSDP): the C step runs on rank 0 and its Θ is
      broadcast, the ranks agree on stopping, rank 0 alone writes checkpoints and logs (``docs/distributed.md``).
      Default (None): whenever a process group of more than one rank is initialised.
    - ``direct_mu``: the μ of the direct compression Θ = Π(w̄) (step 0). Default (None): μ₁, the first of the
      schedule. ``0``: the limit μ → 0⁺, the LC papers' start, Θ = argmin α C(Θ): penalty forms start from
      nothing kept (all pruned, rank 0) and grow what the loss needs as μ increases; constraint forms do not
      depend on μ, so this changes nothing for them.

    After ``run()`` the model holds Δ(Θ); ``uncompressed`` holds w (by parameter name). If ``run()`` raises (an
    exception in the L step, Ctrl-C), calling it again resumes from the checkpoint when there is one, starts
    afresh when no L step had begun, and otherwise refuses: the model then holds half-trained weights.
    """

    def __init__(self, model: torch.nn.Module, compression_tasks: Mapping, mu_schedule: Sequence[float],
                 l_step_optimization: Callable, evaluation_func: Callable | None = None, *,
                 multipliers: bool = True, tolerance: float = 1e-8, callbacks: Iterable[Callable] = (),
                 checkpoint_dir: str | Path | None = None, example_input: Any = None,
                 direct_mu: float | None = None, distributed: bool | None = None):
        self.mu_schedule = _check_schedule(mu_schedule)
        if direct_mu is not None and (isinstance(direct_mu, bool) or not isinstance(direct_mu, numbers.Real)
                                      or not 0 <= direct_mu <= self.mu_schedule[0]):
            raise CompressionError(f"direct_mu={direct_mu!r} must be a number from 0 (the limit μ → 0⁺, the LC "
                                   f"papers' start) to μ₁ = {self.mu_schedule[0]:g}, or None (μ₁)")
        self.direct_mu = self.mu_schedule[0] if direct_mu is None else float(direct_mu)
        _check_callable(l_step_optimization, "l_step_optimization", "f(model, lc_penalty, step)", (None, None, 0))
        if evaluation_func is not None:
            _check_callable(evaluation_func, "evaluation_func", "f(model) (or None)", (None,))
        self._ranks = ranks_for(distributed)
        self.checkpoint = Checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
        self.model = model
        self.tasks: list[Task] = build_tasks(model, compression_tasks, example_input)
        self.l_step_optimization = l_step_optimization
        self.evaluation_func = evaluation_func
        self.multipliers = bool(multipliers)
        self.tolerance = float(tolerance)
        self.callbacks = list(callbacks)
        self.loop = self._fresh()
        self.uncompressed: dict[str, torch.Tensor] | None = None
        # one tensor per parameter: Δ(Θ) after a C step (_target_mu None), Δ(Θ) + λ/μ while the L step at μ runs
        self._targets: dict[str, torch.Tensor] = {}
        self._target_mu: float | None = None
        self._trained = self._failed = self._done = False

    states = property(lambda self: self.loop.states, doc="Θ: the state of each task after the last C step")
    history = property(lambda self: self.loop.history, doc="one StepRecord per finished step")
    checkpoint_path = property(lambda self: None if self.checkpoint is None else self.checkpoint.path)

    # ----------------------------------------------------------------------------------------- the loop
    def run(self) -> list[StepRecord]:
        """Direct compression, then an L step and a C step per μ; returns the history."""
        if self._done:
            raise CompressionError("this Algorithm has already run; build a new one to run again")
        try:
            self._begin()                                                   # resumed, or Θ = Π(w̄) as step 0
            for j in range(self.loop.next_step, len(self.mu_schedule)):
                if self.loop.finished:
                    break
                mu = self.mu_schedule[j]
                self._trained, t = True, time.perf_counter()
                self.l_step_optimization(self.model, self._penalty(mu), j)   # w ← argmin L(w) + μ/2‖w − Δ(Θ) − λ/μ‖²
                l_time = time.perf_counter() - t
                c_time = self._c_step(mu)                                    # Θ ← Π(w − λ/μ)
                if self.multipliers:
                    self._update_multipliers(mu)                             # λ ← λ − μ(w − Δ(Θ))
                self._record(step=j + 1, mu=mu, l_time=l_time, c_time=c_time)
            if self.checkpoint is not None:
                self.checkpoint.wait()                                       # the last checkpoint is in place
        except BaseException:
            self._failed = True
            if self.checkpoint is not None:
                self.checkpoint.wait(raise_error=False)     # the last step's checkpoint reaches the disk
            raise
        self._done = True
        deltas = self._deltas()
        self._swap(deltas)                                                   # the model holds Δ(Θ) …
        self.uncompressed, self._targets = dict(deltas), {}                  # … and these tensors w
        return self.history

    def _begin(self) -> None:
        """Continue from the checkpoint if there is one; otherwise the direct compression, recorded as step 0."""
        if self._failed:
            self._failed = False
            if self._trained and not (self.checkpoint is not None and self.checkpoint.exists()):
                raise CompressionError(
                    f"run() stopped during LC step {len(self.history)} and the model now holds partly trained "
                    "weights, with no checkpoint to go back to: build a new lc.Algorithm from the reference model "
                    "(give checkpoint_dir=... to resume after a failure)")
            self.loop = self._fresh()
        present = self.checkpoint is not None and self.checkpoint.exists()
        if self._ranks is not None:
            present = self._ranks.broadcast(present)            # every rank resumes, or none (rank 0 writes soon)
        loop = self.checkpoint.load(self, StepRecord, self._ranks) if present else None
        if loop is not None:
            self.loop = loop
            self._set_deltas()
            return
        self._record(step=0, mu=0.0, l_time=0.0, c_time=self._c_step(self.direct_mu))         # Θ = Π(w̄)

    def _fresh(self) -> LoopState:
        return LoopState([None] * len(self.tasks), {n: torch.zeros_like(p) for n, p in self._named_params()})

    def _c_step(self, mu: float) -> float:
        t = time.perf_counter()
        self._targets.clear()                                                   # the L step's targets are spent
        ws = _Shifted(self, mu)                                                 # w − λ/μ, one task at a time
        previous, self.loop.states = self.loop.states, [None] * len(self.tasks)
        steps = [t.step for t in self.tasks]
        if self._ranks is None:
            self.loop.states = solve(steps, ws, mu, _Once(previous))              # Θ ← Π(w − λ/μ)
        else:                                                                     # on rank 0, Θ broadcast
            self.loop.states = self._ranks.states(lambda: solve(steps, ws, mu, _Once(previous)),
                                                  [t.params[0].device for t in self.tasks])
        self._set_deltas()
        release_freed_memory()
        return time.perf_counter() - t

    def _set_deltas(self) -> None:
        """Δ(Θ) of every task as the targets, each a tensor of its own (not a state's, which the loop may not touch)."""
        self._targets.clear()
        for task, state in zip(self.tasks, self.loop.states):
            self._targets.update(_owned(task.deltas(state), state))
        self._target_mu = None

    def _deltas(self) -> dict[str, torch.Tensor]:
        """Δ(Θ) per parameter: the targets after a C step; during an L step (they hold Δ(Θ) + λ/μ), from Θ again."""
        if self._target_mu is None:
            return self._targets
        return {n: d for task, state in zip(self.tasks, self.loop.states) for n, d in task.deltas(state).items()}

    @torch.no_grad()
    def _update_multipliers(self, mu: float) -> None:
        lam = self.loop.lam
        for n, p in self._named_params():
            lam[n].sub_((p.detach() - self._targets[n]).mul_(mu))               # λ ← λ − μ(w − Δ(Θ))

    def _shifted(self, task: Task, mu: float) -> list[torch.Tensor]:
        ws = task.weights() if mu == 0 else [w - self.loop.lam[n] / mu                              # w − λ/μ
                                              for n, w in zip(task.param_names, task.weights())]
        if not all(bool(torch.isfinite(w).all()) for w in ws):
            raise CompressionError(f"task {task.name!r}: the weights hold NaN or inf at the C step with "
                                   f"μ={mu:g}: the L step diverged (lower its learning rate or the μ schedule)."
                                   + (f" The last good checkpoint in {self.checkpoint.path.parent} is intact."
                                      if self.checkpoint else ""))
        return ws

    @torch.no_grad()
    def _penalty(self, mu: float) -> Penalty:
        for n, _ in self._named_params():                      # Δ(Θ) → Δ(Θ) + λ/μ in place (a tensor of its own)
            self._targets[n].add_(self.loop.lam[n] / mu)
        self._target_mu = mu
        release_freed_memory()
        return Penalty(mu, [(p, self._targets[n]) for n, p in self._named_params()])

    # ----------------------------------------------------------------------------------------- records
    def _record(self, step: int, mu: float, l_time: float, c_time: float) -> None:
        distance = {t.name: float(sum(((p.detach() - self._targets[n]) ** 2).sum()
                                      for n, p in zip(t.param_names, t.params))) for t in self.tasks}
        with self.compressed():
            evaluation = self.evaluation_func(self.model) if self.evaluation_func else None
        bits = sum(s.bits for s in self.states)
        record = StepRecord(step, mu, distance, evaluation, bits, self._ratio(bits), l_time, c_time,
                            {t.name: _info(s) for t, s in zip(self.tasks, self.states)})
        self.history.append(record)
        if self._ranks is None or self._ranks.writer:
            log.info("LC step %d  mu=%.3g  |w-Delta|^2=%.4g  bits=%d  ratio=%.2f  eval=%s  (L %.2fs, C %.2fs)",
                     step, mu, sum(distance.values()), bits, record.ratio, evaluation, l_time, c_time)
        stop = [cb(self, record) is True for cb in self.callbacks]             # every callback sees every step
        self.loop.finished = (any(stop) or (step > 0 and sum(distance.values()) < self.tolerance)
                              or step == len(self.mu_schedule))
        if self._ranks is not None:
            self.loop.finished = self._ranks.agree(self.loop.finished)         # any rank's stop stops all
        if self.checkpoint is not None:
            rngs = self._ranks.gather(rng_state()) if self._ranks is not None else None
            if self._ranks is None or self._ranks.writer:
                self.checkpoint.save(self, rngs)

    def _ratio(self, bits: int) -> float:
        return model_ratio(self.model, self.tasks, bits)

    # ----------------------------------------------------------------------------------------- weights
    def _named_params(self):
        for t in self.tasks:
            yield from zip(t.param_names, t.params)

    @torch.no_grad()
    def _swap(self, deltas: Mapping[str, torch.Tensor]) -> None:
        """Exchange the values of the parameters and of ``deltas``, in place: no copy of the model."""
        for n, p in self._named_params():
            _swap_(p.detach(), deltas[n])

    @contextlib.contextmanager
    def compressed(self):
        """Within this context the model holds Δ(Θ) (after at least one C step); w is restored on exit. The values
        are swapped in place, block by block; called during an L step, it decompresses Θ again (a copy of the
        compressed weights for the while)."""
        if any(s is None for s in self.loop.states):
            raise CompressionError("no complete Θ (no C step has run yet, or the last one failed): call run() "
                                   "first")
        if self._done:
            yield self.model                                   # after run() the model already holds Δ(Θ)
            return
        deltas = self._deltas()
        self._swap(deltas)
        try:
            yield self.model
        finally:
            self._swap(deltas)

    def compression_ratio(self) -> float:
        """Nominal compression ratio of the whole model after the last C step."""
        return self._ratio(sum(s.bits for s in self.states))


class _Shifted(abc.Sequence):
    """w − λ/μ of each task, computed when the C step reads it: one task's at a time, not the whole model's."""

    def __init__(self, algorithm: Algorithm, mu: float):
        self.algorithm, self.mu = algorithm, mu

    def __len__(self):
        return len(self.algorithm.tasks)

    def __getitem__(self, i):
        release_freed_memory()                                 # the previous task's work space
        return self.algorithm._shifted(self.algorithm.tasks[i], self.mu)


class _Once(abc.Sequence):
    """The previous states, each handed to its task's C step once and then dropped (freed as the new ones come)."""

    def __init__(self, states: list):
        self.states = states

    def __len__(self):
        return len(self.states)

    def __getitem__(self, i):
        state, self.states[i] = self.states[i], None
        return state


def _state_tensors(state: State):
    yield from state.tensors.values()
    for part in state.parts:
        yield from _state_tensors(part)


def _owned(deltas: Mapping[str, torch.Tensor], state: State) -> dict[str, torch.Tensor]:
    """``deltas`` as contiguous tensors that share no memory with the state's (a decompression may return a state's
    tensor itself, such as a dense low-rank matrix; the loop swaps and replaces its targets in place)."""
    shared = {t.untyped_storage().data_ptr() for t in _state_tensors(state)}
    return {n: d.clone() if d.untyped_storage().data_ptr() in shared else d.contiguous() for n, d in deltas.items()}


def _swap_(a: torch.Tensor, b: torch.Tensor, block: int = 1 << 20) -> None:
    """Exchange the values of two tensors of one shape, in place, ``block`` values at a time."""
    if not (a.is_contiguous() and b.is_contiguous()):
        t = a.clone()
        a.copy_(b)
        b.copy_(t)
        return
    a, b = a.view(-1), b.view(-1)
    for i in range(0, a.numel(), block):
        t = a[i:i + block].clone()
        a[i:i + block].copy_(b[i:i + block])
        b[i:i + block].copy_(t)


def _info(state: State) -> dict:
    """What a C step chose (its meta), with the parts' of an additive combination under ``"parts"``."""
    return {**state.meta, "parts": [_info(p) for p in state.parts]} if state.parts else dict(state.meta)
