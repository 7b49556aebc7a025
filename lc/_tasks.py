"""From a user's ``compression_tasks`` dict to validated tasks: each task compresses a list of tensors."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ._errors import CompressionError
from ._hooks import forward_with_hooks
from .compression._base import Compression, State
from .compression.additive import Additive, AdditiveStep
from .params import Param, View

__all__ = ["Task", "Viewed", "Context", "build_tasks", "c_step", "model_ratio"]


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

    @property
    def coupling(self):
        return self.compression.coupling


class _Probe:
    """What one forward pass on ``example_input`` tells about the model's layers, run once on first request."""

    def __init__(self, model: torch.nn.Module, example_input):
        self.model, self.example_input = model, example_input
        self._outputs: dict[str, list] | None = None

    def _forward(self, who: str) -> dict[str, list]:
        """{module name: [output shape of each call]}, from one forward pass with hooks on every module."""
        outputs = {name: [] for name, _ in self.model.named_modules()}
        def hook(name, module, args, out):
            outputs[name].append(out.shape if torch.is_tensor(out) else None)
        try:
            forward_with_hooks(self.model, self.example_input, hook)
        except Exception as e:
            raise CompressionError(f"{who}: running the model on example_input failed ({type(e).__name__}: {e}); "
                                   "give an input batch the model accepts") from e
        return outputs

    def output_positions(self, param_name: str, rows: int, who: str) -> int:
        if self.example_input is None:
            raise CompressionError(f"{who} on {param_name!r} needs the output size of its layer: pass "
                                   "lc.Algorithm(..., example_input=x), with x an input batch the model accepts "
                                   "(one example is enough; a tuple is passed as several arguments)")
        if self._outputs is None:
            self._outputs = self._forward(who)
        module = param_name.rpartition(".")[0]
        shapes = self._outputs.get(module, [])
        if not shapes or any(s is None or len(s) < 2 for s in shapes):
            raise CompressionError(f"{who} on {param_name!r}: the forward pass on example_input "
                                   + ("never called" if not shapes else "got no batched tensor output from")
                                   + f" the layer {module!r}, so its output size is unknown; the FLOPs criterion "
                                   "needs a layer (Linear, Conv) that the model calls on example_input")
        per_example = sum(math.prod(s[1:]) for s in shapes)    # Σ over calls of the output size per example
        if per_example % rows:
            raise CompressionError(f"{who} on {param_name!r}: the output of layer {module!r} ({list(shapes[0])}) "
                                   f"does not hold {rows} channels per position; the FLOPs criterion applies to "
                                   "Linear and Conv layers whose weight's first dimension is their output channels")
        return per_example // rows


@dataclass(frozen=True)
class Context:
    """What a compression may learn about its task when the task is built (see ``Compression.bind``)."""

    param_names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    probe: _Probe

    def output_positions(self, who: str) -> int:
        """Output positions per example of the layer that owns the task's first tensor: 1 for a Linear layer on
        (batch, features), H_out·W_out for a Conv2d, summed over the calls of the forward pass."""
        return self.probe.output_positions(self.param_names[0], self.shapes[0][0], who)


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
        raise CompressionError(f"compression_tasks[{param!r}] must be a (View, Compression) pair, or a list of "
                               f"such pairs (or lc.Additive(pairs, ...)), got {value!r}")
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


def _task_compression(value, param: Param, context: Context):
    def viewed(pair):
        view, compression = _as_pair(pair, param)
        return Viewed(view, compression.bind(context), context.shapes)
    if isinstance(value, list):
        value = Additive(value)                    # a list of pairs ≡ Additive(pairs) with the defaults
    if not isinstance(value, Additive):
        return viewed(value)
    if not value.parts:
        raise CompressionError(f"compression_tasks[{param!r}] is an empty list of (View, Compression) pairs: give "
                               "at least one")
    value.check()
    parts = tuple(viewed(v) for v in value.parts)
    return parts[0] if len(parts) == 1 else AdditiveStep(parts, value.c_step_reps, value.tol)


def model_ratio(model: torch.nn.Module, tasks: Sequence[Task], bits: int) -> float:
    """Nominal compression ratio of the whole model: 32 × (all parameters) / (``bits`` of the compressed tasks +
    32 × the parameters in no task)."""
    compressed = {n for t in tasks for n in t.param_names}
    total = sum(p.numel() for p in model.parameters())
    rest = sum(p.numel() for n, p in model.named_parameters() if n not in compressed)
    return 32 * total / max(bits + 32 * rest, 1)


def build_tasks(model: torch.nn.Module, compression_tasks: Mapping, example_input=None) -> list[Task]:
    """Validate ``compression_tasks`` against ``model``; every error is a :class:`CompressionError`.
    ``example_input`` is run through the model once if a compression asks for a layer's output size."""
    if not isinstance(compression_tasks, Mapping) or not compression_tasks:
        raise CompressionError("compression_tasks must be a non-empty dict {lc.Param(...): (View, Compression)}")
    tasks, owner, probe = [], {}, _Probe(model, example_input)
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
        name = "+".join(names)
        try:
            c = _task_compression(value, param, Context(names, tuple(p.shape for _, p in named), probe))
            c.check()
        except CompressionError as e:
            raise CompressionError(f"task {name!r}: {e}") from None
        tasks.append(Task(name, names, tuple(p for _, p in named), c))
    for coupling, group in _coupled(tasks).values():
        coupling.check([tasks[i].c.compression for i in group])
    return tasks


def _coupled(tasks) -> dict[int, tuple]:
    """{id(coupling): (coupling, [indices of the tasks that share it])}."""
    groups: dict[int, tuple] = {}
    for i, task in enumerate(tasks):
        if task.c.coupling is not None:
            groups.setdefault(id(task.c.coupling), (task.c.coupling, []))[1].append(i)
    return groups


def c_step(tasks: Sequence[Task], ws: Sequence[list[torch.Tensor]], mu: float,
           previous: Sequence[State | None]) -> list[State]:
    """Θ ← Π(w − λ/μ) for every task, given ``ws[i]`` = w − λ/μ of task i: each task alone, except the tasks whose
    compressions share a coupling (an ``lc.RankBudget``), which it solves together."""
    states = [task.c.compress(w, mu, prev) if task.c.coupling is None else None
              for task, w, prev in zip(tasks, ws, previous)]
    for coupling, group in _coupled(tasks).values():
        joint = coupling.compress([tasks[i].c.compression for i in group],
                                  [tasks[i].c.view.flatten(ws[i]) for i in group], mu, [previous[i] for i in group])
        for i, state in zip(group, joint):
            states[i] = state
    return states
