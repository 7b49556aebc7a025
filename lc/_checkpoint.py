"""Checkpoints of an LC run: :class:`Checkpoint` saves the loop's state after every step and gives it back on
resume. A kill at any moment leaves either the previous checkpoint or the new one, never a broken file. Only
tensors, numbers, strings, lists and dicts are written, so loading runs no code.

Each checkpoint is serialised into a temporary file when the step ends (into the OS's page cache: the next L step
may change the model at once, and no copy of it is taken), and made durable in a background thread that fsyncs the
file and renames it over the previous one, overlapping the next L step. A kill before that rename leaves the
previous checkpoint, from which the resumed run computes the lost step again, the same way (the RNG streams are in
the checkpoint); an exception in the loop waits for the pending rename before it is raised, so that the checkpoint
of every step the run finished is in place."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._codec import encode_all
from ._errors import CompressionError
from ._io import PendingWrite, writable_dir, write_atomic_background
from .compression._base import State

__all__ = ["Checkpoint", "LoopState", "FILENAME", "fingerprint"]

log = logging.getLogger(__name__)

FILENAME = "lc_checkpoint.pt"
FORMAT = 2
_KEYS = ("format", "fingerprint", "finished", "model", "states", "lam", "history", "rng")


@dataclass
class LoopState:
    """Where an LC run stands, as a value: Θ per task, λ per parameter, the history, and whether it is over. What a
    checkpoint holds and what a resumed run continues from; the model's weights w are the rest."""

    states: list[State | None]
    lam: dict[str, torch.Tensor]
    history: list = field(default_factory=list)          # StepRecord, one per finished step (step 0: Θ = Π(w̄))
    finished: bool = False

    @property
    def next_step(self) -> int:
        """The index in the μ schedule of the next L step: after step k (which followed L step k − 1), k."""
        return self.history[-1].step if self.history else 0


def fingerprint(algorithm) -> str:
    """A hash of what makes a run the same run: the tasks' steps (as specs: a budget shared by several layers is
    one object), the μ schedule, multipliers, tolerance, and the model's parameter names and shapes."""
    steps = encode_all([t.step for t in algorithm.tasks], [f"task {t.name!r}" for t in algorithm.tasks])
    spec = {"tasks": [[t.name, list(t.param_names), s] for t, s in zip(algorithm.tasks, steps)],
            "mu": algorithm.mu_schedule, "multipliers": algorithm.multipliers, "tolerance": algorithm.tolerance,
            **({"direct_mu": algorithm.direct_mu} if algorithm.direct_mu != algorithm.mu_schedule[0] else {}),
            "params": [[n, list(p.shape)] for n, p in algorithm.model.named_parameters()]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class Checkpoint:
    """``lc.Algorithm(..., checkpoint_dir=d)``: after every LC step the run (model, Θ, λ, history, RNG streams,
    and the L step's ``state_dict`` if it has one) is written to ``d/lc_checkpoint.pt``; a run built with the
    same tasks, schedule and model resumes from it. A checkpoint of a different run is an error, never
    overwritten. The directory is checked (created, writable) when the algorithm is built."""

    def __init__(self, directory):
        self.path = writable_dir(Path(directory), "checkpoint_dir") / FILENAME
        self._pending: PendingWrite | None = None

    def exists(self) -> bool:
        self.wait(raise_error=False)
        return self.path.exists()

    def save(self, algorithm, rngs: list | None = None) -> None:
        """Write the run as it is now: serialised here, made durable (fsync, rename) in the background. ``rngs``:
        every rank's random-number streams, in rank order (a distributed run; rank 0 writes)."""
        self.wait()
        loop = algorithm.loop
        obj = {"format": FORMAT, "fingerprint": fingerprint(algorithm), "finished": loop.finished,
               "model": algorithm.model.state_dict(), "states": [s.to_dict() for s in loop.states],
               "lam": loop.lam, "history": [_plain(dataclasses.asdict(r)) for r in loop.history],
               "rng": rngs[0] if rngs else rng_state()}
        if rngs:
            obj["rng_ranks"] = rngs
        if hasattr(algorithm.l_step_optimization, "state_dict"):
            obj["l_step"] = algorithm.l_step_optimization.state_dict()
        self._pending = write_atomic_background(self.path, lambda f: torch.save(obj, f), what="the checkpoint")

    def wait(self, raise_error: bool = True) -> None:
        """Until the last checkpoint is in place; if that failed, its error is raised here (or only logged with
        ``raise_error=False``, when another exception is on its way)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.wait()
        except BaseException as e:
            if raise_error:
                raise
            log.error("the checkpoint %s could not be written: %s", self.path, e)

    def load(self, algorithm, record_type, ranks=None) -> LoopState | None:
        """The saved loop state, with the model, the RNG streams (this rank's, in a distributed run) and the L step's
        state restored; None if there is no checkpoint yet."""
        if not self.exists():
            return None
        ck = load(self.path)
        if ck["format"] != FORMAT:
            raise CompressionError(f"{self.path} was written by another version of lc (checkpoint format "
                                   f"{ck['format']!r}, this one reads {FORMAT}); finish that run with it, or move the "
                                   "file away to start afresh")
        if ck["fingerprint"] != fingerprint(algorithm):
            raise CompressionError(f"{self.path} holds a checkpoint of a different run (other tasks, compressions, "
                                   "μ schedule or model); give another checkpoint_dir, or move that file away to "
                                   "start afresh")
        try:
            algorithm.model.load_state_dict(ck["model"])
            device = {n: p.device for t in algorithm.tasks for n, p in zip(t.param_names, t.params)}
            states = [State.from_dict(s).to(t.params[0].device) for s, t in zip(ck["states"], algorithm.tasks)]
            lam = {n: v.to(device[n]) for n, v in ck["lam"].items()}
            history = [record_type(**r) for r in ck["history"]]
            rngs = ck.get("rng_ranks")
            set_rng_state(rngs[ranks.rank] if ranks is not None and rngs and len(rngs) == ranks.world
                          else ck["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CompressionError(f"checkpoint {self.path} does not fit this run ({type(e).__name__}: {e}); it was "
                                   "damaged — move it away to start the run afresh") from None
        if len(states) != len(algorithm.tasks) or set(lam) != set(device) or not history:
            raise CompressionError(f"checkpoint {self.path} is incomplete (states, multipliers or history missing); "
                                   "move it away to start the run afresh")
        if "l_step" in ck and hasattr(algorithm.l_step_optimization, "load_state_dict"):
            algorithm.l_step_optimization.load_state_dict(ck["l_step"])
        log.info("resumed from %s after LC step %d", self.path, history[-1].step)
        return LoopState(states, lam, history, bool(ck["finished"]))


def load(path: Path) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise CompressionError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it was not written by "
                               "this version of lc or was damaged — move it away to start the run afresh") from e
    if not isinstance(ck, dict) or any(k not in ck for k in _KEYS):
        raise CompressionError(f"checkpoint {path} cannot be read: it holds a {type(ck).__name__}"
                               + ("" if not isinstance(ck, dict) else f" without {[k for k in _KEYS if k not in ck]}")
                               + ", not an lc checkpoint — move it away to start the run afresh")
    return ck


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


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
             "python": _to_lists(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
