"""From a user's ``compression_tasks`` dict to validated tasks: each task compresses a list of tensors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ._errors import CompressionError
from .compression._base import Compression, State
from .params import Param, View

__all__ = ["Task", "Viewed", "build_tasks"]


@dataclass(frozen=True)
class Viewed:
    """A ``(View, Compression)`` pair bound to the shapes of its tensors: a C step over a list of tensors."""

    view: View
    compression: Compression
    shapes: tuple[torch.Size, ...]

    def check(self):
        self.view.check(self.shapes)
        self.compression.check(self.view.shape(self.shapes))

    def compress(self, ws: Sequence[torch.Tensor], mu: float, previous: State | None = None) -> State:
        return self.compression.compress(self.view.flatten(ws), mu, previous)

    def decompress(self, state: State) -> list[torch.Tensor]:
        return self.view.unflatten(self.compression.decompress(state), self.shapes)


@dataclass(eq=False)
class Task:
    """One entry of ``compression_tasks``: its parameters and the C step that compresses them together."""

    name: str                          # "fc1.weight", or "fc2.weight+fc3.weight" for a joint task
    param_names: tuple[str, ...]
    params: tuple[torch.nn.Parameter, ...]
    c: Viewed                          # or an additive combination with the same three methods

    def spec(self) -> str:
        """A stable description of what this task does (used to recognise a checkpoint of the same run)."""
        return f"{self.name}: {self.c!r}"


def _as_pair(value, param: Param):
    if not (isinstance(value, tuple) and len(value) == 2):
        raise CompressionError(f"compression_tasks[{param!r}] must be a (View, Compression) pair or a list of "
                               f"such pairs, got {value!r}")
    view, compression = value
    if isinstance(view, type) and issubclass(view, View):
        view = view()                  # AsVector ≡ AsVector()
    if not isinstance(view, View):
        raise CompressionError(f"compression_tasks[{param!r}]: the first element must be a view (lc.AsVector, "
                               f"lc.AsIs), got {view!r}")
    if isinstance(compression, type):
        raise CompressionError(f"compression_tasks[{param!r}]: {compression.__name__} is a class; give an instance "
                               f"with its hyperparameters, e.g. {compression.__name__}(...)")
    if not isinstance(compression, Compression):
        raise CompressionError(f"compression_tasks[{param!r}]: the second element must be an lc compression "
                               f"(e.g. lc.ConstraintL0Pruning(kappa=...)), got {compression!r}")
    return view, compression


def _task_compression(value, param: Param, shapes):
    if isinstance(value, list):
        if not value:
            raise CompressionError(f"compression_tasks[{param!r}] is an empty list: give at least one "
                                   "(View, Compression) pair")
        parts = [Viewed(*_as_pair(v, param), shapes) for v in value]
        if len(parts) == 1:
            return parts[0]
        from .compression.additive import Additive
        return Additive(tuple(parts))
    return Viewed(*_as_pair(value, param), shapes)


def build_tasks(model: torch.nn.Module, compression_tasks: Mapping) -> list[Task]:
    """Validate ``compression_tasks`` against ``model``; every error is a :class:`CompressionError`."""
    if not isinstance(compression_tasks, Mapping) or not compression_tasks:
        raise CompressionError("compression_tasks must be a non-empty dict {lc.Param(...): (View, Compression)}")
    tasks, owner = [], {}
    for param, value in compression_tasks.items():
        if not isinstance(param, Param):
            raise CompressionError(f"compression_tasks keys must be lc.Param(...), got {param!r}")
        named = param.resolve(model)
        names = tuple(n for n, _ in named)
        for n in names:
            if n in owner:
                raise CompressionError(f"parameter {n!r} appears in two tasks ({owner[n]!r} and {param!r}); a tensor "
                                       "may be compressed by one task only — to combine compressions on it, give "
                                       "one Param a list of (View, Compression) pairs")
            owner[n] = param
        c = _task_compression(value, param, tuple(p.shape for _, p in named))
        name = "+".join(names)
        try:
            c.check()
        except CompressionError as e:
            raise CompressionError(f"task {name!r}: {e}") from None
        tasks.append(Task(name, names, tuple(p for _, p in named), c))
    return tasks
