"""Callbacks for :class:`lc.Algorithm` (``callbacks=[...]``; each is called as ``cb(algorithm, record)``)."""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Callable

import torch

from ._errors import CompressionError
from .storage import Compressed

__all__ = ["KeepBest"]

log = logging.getLogger(__name__)


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
    compression of step 0). Ties keep the earlier step. Cost: one copy of the model's ``state_dict`` each time
    the best improves.

    After the run: ``step``, ``value`` (its score), ``record``, ``state_dict`` (the whole model with Δ(Θ) in
    the compressed parameters) and ``compressed`` (an :class:`lc.Compressed`, for :func:`lc.save`)."""

    def __init__(self, score: Callable[[Any], float] | None = None, *, higher: bool = True, start: int = 0):
        if score is not None and not callable(score):
            raise CompressionError("KeepBest: score must be callable as score(record) -> number, or None")
        if not (isinstance(start, int) and start >= 0):
            raise CompressionError(f"KeepBest: start={start!r} must be an integer ≥ 0")
        self.score, self.higher, self.start = score, bool(higher), start
        self.step: int | None = None
        self.value: float | None = None
        self.record = None
        self.state_dict: dict[str, torch.Tensor] | None = None
        self.compressed: Compressed | None = None

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
        if self.value is None or (value > self.value if self.higher else value < self.value):
            with algorithm.compressed():
                self.state_dict = copy.deepcopy(algorithm.model.state_dict())
            self.compressed = Compressed.of(algorithm)
            self.step, self.value, self.record = record.step, value, record
            log.info("KeepBest: step %d is the best so far (%g)", record.step, value)

    def restore(self, model: torch.nn.Module) -> torch.nn.Module:
        """Load the best step's model (Δ(Θ) in the compressed parameters, the rest as it was then) into
        ``model``; returns it."""
        if self.state_dict is None:
            raise CompressionError("KeepBest has recorded no step yet: pass it in Algorithm(callbacks=[...]) "
                                   "and run() first")
        model.load_state_dict(self.state_dict)
        return model
