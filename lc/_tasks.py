"""From a user's ``compression_tasks`` dict to validated tasks: each task compresses a list of tensors."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from ._errors import CompressionError
from ._hooks import forward_with_hooks
from ._steps import Additive, AdditiveStep, Step, Viewed, check_couplings
from .compression._base import Compression
from .params import Param, View

__all__ = ["Task", "Context", "build_tasks"]


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

    def channels(self, who: str):
        """The model's channel groups (:func:`lc.structure.channel_groups`), found once."""
        if self.example_input is None:
            raise CompressionError(f"{who} needs the model's channel groups: pass lc.Algorithm(..., example_input=x), "
                                   "with x an input batch the model accepts")
        if getattr(self, "_channels", None) is None:
            from .structure import channel_groups
            self._channels = channel_groups(self.model, self.example_input)
        return self._channels

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

    def moments(self, who: str, full: bool) -> dict:
        """{module name: :class:`lc._statistics.Moments` of its input} from one forward pass on ``example_input``,
        found once (again once more if the full matrices are asked for after the diagonals)."""
        if self.example_input is None:
            raise CompressionError(f"{who} weighs its C step by its layer's inputs: pass lc.Algorithm(..., "
                                   "example_input=x), with x a calibration batch the model accepts")
        cached = getattr(self, "_moments", None)
        if cached is None or (full and not cached[0]):
            from ._statistics import input_moments
            try:
                self._moments = (full, input_moments(self.model, self.example_input, full))
            except Exception as e:
                raise CompressionError(f"{who}: running the model on example_input failed ({type(e).__name__}: "
                                       f"{e}); give a calibration batch the model accepts") from e
        return self._moments[1]


@dataclass(frozen=True)
class Context:
    """What a compression may learn about its task when the task is built (see ``Compression.bind``)."""

    param_names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    probe: _Probe
    view: View | None = None

    def output_positions(self, who: str) -> int:
        """Output positions per example of the layer that owns the task's first tensor: 1 for a Linear layer on
        (batch, features), H_out·W_out for a Conv2d, summed over the calls of the forward pass."""
        return self.probe.output_positions(self.param_names[0], self.shapes[0][0], who)

    def input_moments(self, who: str, full: bool = False) -> list:
        """Per tensor of the task, ``(axis, moments)``: the axis of the tensor that its layer's input multiplies and
        the :class:`lc._statistics.Moments` of that input over ``example_input`` (the calibration batch), the full
        matrix x xᵀ too if ``full``. A tensor that is no linear layer's weight, or a layer the model does not call
        on ``example_input``, is a :class:`lc.CompressionError`."""
        from ._statistics import layer_of
        moments, out = self.probe.moments(who, full), []
        for name in self.param_names:
            module, axis = layer_of(self.probe.model, name)
            if module not in moments:
                raise CompressionError(f"{who} on {name!r}: the model never calls the layer {module!r} on "
                                       "example_input, so its inputs are unknown")
            out.append((axis, moments[module]))
        return out

    def channel_structure(self, who: str, cost: str):
        """The task's tensors as rows grouped by channel (for structured pruning): every group that has a row in
        the task must have all its rows in it."""
        from .compression.channels import _Structure
        graph = self.probe.channels(who)
        names = set(self.param_names)
        used = sorted({int(g) for n in self.param_names for g in graph.row_group.get(n, []) if g >= 0})
        missing = sorted({m for g in used for m, _ in graph.groups[g].members if m not in names})
        if missing:
            raise CompressionError(f"{who}: the task holds part of some channels only; add {missing[:6]}"
                                   + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
                                   + " to its Param (lc.channel_tasks(model, compression, example_input) builds "
                                   "the whole task)")
        if not used:
            raise CompressionError(f"{who}: none of {list(self.param_names)[:4]} produces a removable channel "
                                   "(a layer's output that is not the model's output)")
        index = {g: i for i, g in enumerate(used)}
        layout = tuple((math.prod(s), s[0] if len(s) else 1) for s in self.shapes)
        row_group = np.concatenate([[index.get(int(g), -1) for g in graph.row_group[n]] for n in self.param_names])
        costs = np.array([graph.groups[g].cost[cost] for g in used], dtype=np.int64)
        layers = [tuple(sorted(graph.groups[g].layers)) for g in used]
        ids = {key: i for i, key in enumerate(dict.fromkeys(layers))}
        classes = np.array([ids[key] for key in layers], dtype=np.int64)
        return _Structure(layout, row_group.astype(np.int64), costs, classes)


@dataclass(eq=False)
class Task:
    """One entry of ``compression_tasks``: its parameters and the :class:`lc._steps.Step` that compresses them."""

    name: str                          # "fc1.weight", or "fc2.weight+fc3.weight" for a joint task
    param_names: tuple[str, ...]
    params: tuple[torch.nn.Parameter, ...]
    step: Step

    def weights(self) -> list[torch.Tensor]:
        """w: the task's tensors as they are now (detached)."""
        return [p.detach() for p in self.params]

    def deltas(self, state) -> dict[str, torch.Tensor]:
        """Δ(Θ) of this task by parameter name."""
        return dict(zip(self.param_names, self.step.decompress(state)))


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


def _task_step(value, param: Param, context: Context):
    def viewed(pair):
        view, compression = _as_pair(pair, param)
        return Viewed(view, compression.bind(dataclasses.replace(context, view=view)), context.shapes)
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
            step = _task_step(value, param, Context(names, tuple(p.shape for _, p in named), probe))
            step.check()
        except CompressionError as e:
            raise CompressionError(f"task {name!r}: {e}") from None
        tasks.append(Task(name, names, tuple(p for _, p in named), step))
    check_couplings([t.step for t in tasks])
    return tasks
