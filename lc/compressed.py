"""The compressed model as a value — its tasks and one Θ per task — and the accounting of its size.

Numbers, each labelled as the docs use them: **nominal bits** (what the states say they need, plus every other
state_dict entry at its dtype's width), the **nominal ratio** of the whole model (the dense bits of every
parameter — 32 a float32 value — over the compressed tasks' bits plus the dense bits of the parameters outside
them, as in the LC history), and the **realised ratio** of an artifact (the dense bytes of every parameter over
the bytes of the file)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ._errors import CompressionError
from ._steps import solve
from ._tasks import Task, build_tasks
from .compression._base import State

__all__ = ["Compressed", "model_ratio", "nominal_bits", "realised_ratio", "artifact_bytes", "size_bound",
           "aliases", "uncompressed"]


@dataclass(frozen=True, eq=False)
class Compressed:
    """Θ of a model: its tasks (which parameters, compressed how) and one state per task.

    ``Compressed.of(algorithm)`` takes them from an :class:`lc.Algorithm` after ``run()``;
    ``Compressed.direct(model, compression_tasks)`` is the direct compression Θ = Π(w) without training;
    ``Compressed.none()`` compresses nothing (export or save a dense model the same way as a compressed one);
    :func:`lc.load` returns one."""

    tasks: tuple[Task, ...]
    states: tuple[State, ...]

    @classmethod
    def of(cls, source) -> "Compressed":
        if isinstance(source, Compressed):
            return source
        tasks, states = getattr(source, "tasks", None), getattr(source, "states", None)
        if tasks is None or states is None:
            raise CompressionError(f"expected an lc.Algorithm or an lc.Compressed, got {type(source).__name__}")
        if any(s is None for s in states):
            raise CompressionError("the algorithm holds no complete Θ (no C step has run yet, or the last one "
                                   "failed): call algorithm.run() first, or resume it from its checkpoint")
        return cls(tuple(tasks), tuple(states))

    @classmethod
    def none(cls) -> "Compressed":
        """No task: every tensor stays as it is (the dense model, for a baseline exported the same way)."""
        return cls((), ())

    @classmethod
    def direct(cls, model: torch.nn.Module, compression_tasks: Mapping, mu: float = 1.0,
               example_input=None) -> "Compressed":
        """Θ = Π(w): the C steps on the model's current weights (λ = 0), tasks sharing a budget solved together,
        as the first step of :class:`lc.Algorithm`. ``mu`` matters to penalty forms only (their threshold depends
        on it); ``example_input`` as in :class:`lc.Algorithm` (for FLOPs-based rank selection)."""
        tasks = build_tasks(model, compression_tasks, example_input)
        states = solve([t.step for t in tasks], [t.weights() for t in tasks], mu, [None] * len(tasks))
        return cls(tuple(tasks), tuple(states))

    def deltas(self) -> dict[str, torch.Tensor]:
        """Δ(Θ) by parameter name."""
        return {n: d for t, s in zip(self.tasks, self.states) for n, d in t.deltas(s).items()}

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        """Copy Δ(Θ) into the parameters of ``model`` of the same names; returns ``model``."""
        named = dict(model.named_parameters())
        deltas = self.deltas()
        missing = [n for n in deltas if n not in named or named[n].shape != deltas[n].shape]
        if missing:
            raise CompressionError(f"the model has no parameter of the compressed shape for {missing[:5]}")
        with torch.no_grad():
            for n, d in deltas.items():
                named[n].copy_(d)
        return model

    @property
    def bits(self) -> int:
        return sum(s.bits for s in self.states)

    def ratio(self, model: torch.nn.Module) -> float:
        """Nominal compression ratio of the whole ``model``, as in the LC history (every parameter counted)."""
        return model_ratio(model, self.tasks, self.bits)


def _bits(p: torch.Tensor) -> int:
    return p.numel() * p.element_size() * 8


def model_ratio(model: torch.nn.Module, tasks: Sequence[Task], bits: int) -> float:
    """Nominal compression ratio of the whole model: the bits of all its parameters, dense in their own dtype (32
    a float32 value), over ``bits`` of the compressed tasks + the dense bits of the parameters in no task."""
    compressed = {n for t in tasks for n in t.param_names}
    total = sum(_bits(p) for p in model.parameters())
    rest = sum(_bits(p) for n, p in model.named_parameters() if n not in compressed)
    return total / max(bits + rest, 1)


def aliases(model: torch.nn.Module, compressed: Compressed) -> dict[str, str]:
    """state_dict names that are the same tensor as a compressed parameter (tied weights): {name: that name}."""
    done = {n for t in compressed.tasks for n in t.param_names}
    owner = {(p.data_ptr(), tuple(p.shape), p.stride()): n for t in compressed.tasks
             for n, p in zip(t.param_names, t.params)}
    return {n: owner[(t.data_ptr(), tuple(t.shape), t.stride())] for n, t in model.state_dict().items()
            if n not in done and (t.data_ptr(), tuple(t.shape), t.stride()) in owner}


def uncompressed(model: torch.nn.Module, compressed: Compressed) -> dict[str, torch.Tensor]:
    """The state_dict entries stored as they are: neither compressed nor tied to a compressed parameter."""
    skip = {n for t in compressed.tasks for n in t.param_names} | set(aliases(model, compressed))
    return {n: t for n, t in model.state_dict().items() if n not in skip}


def nominal_bits(model: torch.nn.Module, compressed) -> int:
    """Nominal storage of the whole model: the states' bits, plus every other state_dict entry (parameters and
    buffers) at its dtype's width (32 bits a float32 value). The artifact's payload is exactly this, rounded up to
    whole bytes per stream."""
    compressed = Compressed.of(compressed)
    return compressed.bits + sum(t.numel() * t.element_size() * 8 for t in uncompressed(model, compressed).values())


def artifact_bytes(path) -> int:
    """Realised size: the bytes of the file."""
    return os.path.getsize(path)


def realised_ratio(model: torch.nn.Module, file_bytes: int) -> float:
    """The compression ratio of an artifact as it lies on disk: every parameter of ``model`` dense in its own dtype
    (4 bytes a float32 value), over ``file_bytes`` (what :func:`lc.save` returned, or :func:`artifact_bytes`)."""
    return sum(_bits(p) for p in model.parameters()) / 8 / file_bytes


def _count_streams(compressed: Compressed, model: torch.nn.Module) -> int:
    def count(s: State) -> int:
        return len(s.tensors) + sum(count(p) for p in s.parts)
    return sum(count(s) for s in compressed.states) + len(uncompressed(model, compressed))


def size_bound(model: torch.nn.Module, compressed) -> int:
    """The stated bound on an artifact's bytes: nominal/8 · 1.02 + 512 + 128 per stored tensor."""
    compressed = Compressed.of(compressed)
    return math.floor(nominal_bits(model, compressed) / 8 * 1.02) + 512 + 128 * _count_streams(compressed, model)
