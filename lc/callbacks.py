"""Callbacks for :class:`lc.Algorithm` (``callbacks=[...]``; each is called as ``cb(algorithm, record)``)."""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ._errors import CompressionError
from .compressed import Compressed

__all__ = ["KeepBest", "Candidate"]

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One LC step kept by :class:`KeepBest`: its ``step``, ``value`` (the score that kept it), ``record``,
    ``state_dict`` (the whole model with Δ(Θ) in the compressed parameters), ``compressed`` (its Θ, an
    :class:`lc.Compressed`) and, after :meth:`KeepBest.reselect`, ``rescore``."""

    step: int
    value: float
    record: Any
    state_dict: dict[str, torch.Tensor]
    compressed: Compressed
    rescore: float | None = None


class KeepBest:
    """Remembers the compressed model of the LC step that scored best, for when the last step need not be the
    best one (a noisy evaluation, such as the return of a reinforcement-learning agent over a few episodes).

        best = lc.KeepBest()                        # score = record.evaluation, higher is better
        lc.Algorithm(model, tasks, mus, l_step, validate, callbacks=[best]).run()
        best.restore(model)                         # model ← Δ(Θ) (and every other tensor) of the best step
        lc.save("best.lc", model, best.compressed)

    Every step's Δ(Θ) satisfies the constraints, so any of them is a valid result; picking one by its score is
    model selection, and ``evaluation_func`` must then score on **validation** data, never on the data the
    result is reported on. ``score(record)`` gives a number (default: ``record.evaluation``); ``higher`` says
    whether larger is better; ``start`` skips steps before it (e.g. ``start=1`` leaves out the direct
    compression of step 0). Ties keep the earlier step.

    Picking the maximum of many noisy scores favours the step whose noise was luckiest (its score overstates
    it). ``keep=m`` keeps the m best steps (``candidates``, best first) and :meth:`reselect` then scores just
    those m again on **more, disjoint** validation data and chooses by that: a cheap screen of every step, a
    careful look at a few. Cost: one copy of the model's ``state_dict`` each time a step enters the m best.

    After the run: ``step``, ``value`` (its score), ``record``, ``state_dict`` and ``compressed`` (an
    :class:`lc.Compressed`, for :func:`lc.save`) of the chosen step: the best by score, or by rescore after
    :meth:`reselect`."""

    def __init__(self, score: Callable[[Any], float] | None = None, *, higher: bool = True, start: int = 0,
                 keep: int = 1):
        if score is not None and not callable(score):
            raise CompressionError("KeepBest: score must be callable as score(record) -> number, or None")
        if not (isinstance(start, int) and start >= 0):
            raise CompressionError(f"KeepBest: start={start!r} must be an integer ≥ 0")
        if not (isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1):
            raise CompressionError(f"KeepBest: keep={keep!r} must be an integer ≥ 1 (how many steps to keep)")
        self.score, self.higher, self.start, self.keep = score, bool(higher), start, keep
        self.candidates: list[Candidate] = []
        self.chosen: Candidate | None = None

    def _better(self, a: float, b: float, higher: bool | None = None) -> bool:
        return a > b if (self.higher if higher is None else bool(higher)) else a < b

    def __call__(self, algorithm, record) -> None:
        if record.step < self.start:
            return
        raw = self.score(record) if self.score is not None else record.evaluation
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise CompressionError(f"KeepBest: the score of step {record.step} is {raw!r}, not a number; give "
                                   "Algorithm an evaluation_func that returns a number, or KeepBest(score=...)") from None
        if math.isnan(value):
            return
        # position among the kept steps, best first; a tie goes after the earlier steps
        at = next((i for i, c in enumerate(self.candidates) if self._better(value, c.value)), len(self.candidates))
        if at >= self.keep:
            return
        with algorithm.compressed():
            state = copy.deepcopy(algorithm.model.state_dict())
        self.candidates.insert(at, Candidate(record.step, value, record, state, Compressed.of(algorithm)))
        del self.candidates[self.keep:]
        self.chosen = self.candidates[0]
        if at == 0:
            log.info("KeepBest: step %d is the best so far (%g)", record.step, value)

    def _need(self) -> Candidate:
        if self.chosen is None:
            raise CompressionError("KeepBest has recorded no step yet: pass it in Algorithm(callbacks=[...]) "
                                   "and run() first")
        return self.chosen

    step = property(lambda self: None if self.chosen is None else self.chosen.step)
    value = property(lambda self: None if self.chosen is None else self.chosen.value)
    record = property(lambda self: None if self.chosen is None else self.chosen.record)
    state_dict = property(lambda self: None if self.chosen is None else self.chosen.state_dict)
    compressed = property(lambda self: None if self.chosen is None else self.chosen.compressed)

    def restore(self, model: torch.nn.Module) -> torch.nn.Module:
        """Load the chosen step's model (Δ(Θ) in the compressed parameters, the rest as it was then) into
        ``model``; returns it."""
        model.load_state_dict(self._need().state_dict)
        return model

    def reselect(self, model: torch.nn.Module, score_model: Callable[[torch.nn.Module], float], *,
                 higher: bool | None = None) -> Candidate:
        """Score every kept step again, ``score_model(model)`` with ``model`` holding that step, and choose the
        best by this second score (``higher`` defaults to the constructor's; ties keep the better first score).
        ``score_model`` must use validation data disjoint from the first score's and from the reported data.
        Leaves ``model`` holding the chosen step; returns its :class:`Candidate` (``candidates`` keep both
        scores)."""
        self._need()
        for c in self.candidates:
            model.load_state_dict(c.state_dict)
            raw = score_model(model)
            try:
                c.rescore = float(raw)
            except (TypeError, ValueError):
                raise CompressionError(f"KeepBest.reselect: score_model gave {raw!r} for step {c.step}, not a "
                                       "number") from None
        scored = [c for c in self.candidates if not math.isnan(c.rescore)]
        if not scored:
            raise CompressionError("KeepBest.reselect: score_model gave NaN for every kept step")
        chosen = scored[0]
        for c in scored[1:]:
            if self._better(c.rescore, chosen.rescore, higher):
                chosen = c
        self.chosen = chosen
        log.info("KeepBest.reselect: step %d chosen (%g; its first score %g)", chosen.step, chosen.rescore,
                 chosen.value)
        self.restore(model)
        return chosen
