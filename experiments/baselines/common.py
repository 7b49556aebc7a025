"""What every baseline shares: the job it is given, the outcome it returns, the training budget (the task's own L
step, called as often as the LC run calls it, at μ = 0), and the final projection onto an lc state."""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

import lc
from lc.compression import Options, State
from lc.penalty import Penalty
from tasks.adapter import Adapter

__all__ = ["Job", "Outcome", "Budget", "Diverged", "ZERO", "FloatCast", "project", "dense_bits", "nominal_ratio",
           "train_size", "counting"]

ZERO = Penalty(0.0, [])
"""The LC penalty at μ = 0 (no term): the task's L step called with it is the task's plain training."""


@dataclass
class Job:
    """What a baseline run is given: the task (its L step, evaluation and data), the reference w̄ (never modified:
    copy it), and ``steps``, the L-step calls of its training budget — those of the LC run it is compared with
    (the sweep's ``steps``), times the sweep's ``budget`` fraction."""

    task: Adapter
    reference: nn.Module
    steps: int
    family: Any = None              # the experiments.schemes.Family being run (its make/joint/names)

    def copy(self) -> nn.Module:
        return copy.deepcopy(self.reference)


@dataclass
class Outcome:
    """What a baseline run returns. ``model`` is the compressed model as it is evaluated and saved (float32, Δ(Θ) in
    it); ``compressed`` its Θ, written by ``lc.save`` (``lc.Compressed.none()`` for a dense model of its own
    architecture: a narrower network). ``steps``: L-step calls made; ``examples``: training examples forwarded
    with gradients (the epochs, over the training set's size); ``l_time``, ``c_time``: seconds of training and of
    compression; ``chosen``: what the method chose, beyond the states (masks' schedule, widths, …)."""

    model: nn.Module
    compressed: lc.Compressed
    steps: int = 0
    examples: int = 0
    l_time: float = 0.0
    c_time: float = 0.0
    chosen: dict = field(default_factory=dict)


@contextlib.contextmanager
def counting(model: nn.Module):
    """Counts the training examples ``model`` sees within the context: the batch sizes of its forward passes in
    training mode with gradients (evaluations, in eval mode or without gradients, are not counted). Yields a
    one-element list holding the count."""
    count = [0]

    def hook(module, args):
        if module.training and torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
            count[0] += args[0].shape[0]

    handle = model.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


class Diverged(lc.CompressionError):
    """A baseline's training left non-finite weights (the method diverged at this budget): raised by
    :class:`Budget` with the model as it is, so that the sweep records the run as diverged instead of stopping."""

    def __init__(self, model: nn.Module, step: int, budget: "Budget"):
        super().__init__(f"the weights are not finite after L step {step}: the training diverged")
        self.model, self.step, self.budget = model, step, budget


class Budget:
    """The training budget of a baseline: the task's own L step (``task.l_step(reference)``: the same optimizer,
    learning-rate schedule, batches and epochs per call as in the LC run) called with the zero penalty. Call it as
    ``budget(model, j)`` for the j-th L step (j sets the learning rate, lr · decay^j, as in LC step j). Counts the
    calls, the training examples (forward passes in training mode with gradients) and the time."""

    def __init__(self, job: Job, l_step=None):
        self.l_step = l_step if l_step is not None else job.task.l_step(job.reference)
        self.calls, self.examples, self.time = 0, 0, 0.0

    def __call__(self, model: nn.Module, j: int) -> None:
        t = time.perf_counter()
        with counting(model) as examples:
            self.l_step(model, ZERO, j)
        self.time += time.perf_counter() - t
        self.calls += 1
        self.examples += examples[0]
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise Diverged(model, j, self)

    def outcome(self, model: nn.Module, compressed: lc.Compressed, c_time: float, **chosen) -> Outcome:
        return Outcome(model, compressed, self.calls, self.examples, self.time, c_time, chosen)


def project(model: nn.Module, compression_tasks: Mapping) -> tuple[lc.Compressed, float, float]:
    """Θ = Π(w) of ``model``'s weights, Δ(Θ) written into it (lc's direct compression): returns Θ, the largest
    change of a weight it made (0 for weights already of that structure: a fixed mask, shared values, a grid) and
    the seconds it took."""
    t = time.perf_counter()
    compressed = lc.Compressed.direct(model, compression_tasks)
    named = dict(model.named_parameters())
    deltas = compressed.deltas()
    change = max((float((named[n].detach() - d).abs().max()) for n, d in deltas.items()), default=0.0)
    compressed.apply(model)
    return compressed, change, time.perf_counter() - t


def dense_bits(model: nn.Module) -> int:
    """Bits of every parameter of ``model`` in its own dtype (32 a float32 value)."""
    return sum(p.numel() * p.element_size() * 8 for p in model.parameters())


def nominal_ratio(reference: nn.Module, model: nn.Module, compressed: lc.Compressed) -> tuple[float, int]:
    """(ratio, bits): the float32 bits of every parameter of the reference over the compressed model's — its states'
    bits plus its parameters outside them at their dtype's width. For a model of the reference's architecture this
    is ``compressed.ratio(model)``; for a narrower network it is the parameter counts' ratio."""
    inside = {n for t in compressed.tasks for n in t.param_names}
    bits = compressed.bits + sum(p.numel() * p.element_size() * 8 for n, p in model.named_parameters()
                                 if n not in inside)
    return dense_bits(reference) / max(bits, 1), bits


def train_size(task: Adapter) -> int | None:
    """The training set's size of a task that has one (a classifier's ``data``), to turn examples into epochs."""
    data = getattr(task, "data", None)
    return len(data.y_train) if data is not None and hasattr(data, "y_train") else None


@dataclass(frozen=True)
class FloatCast(lc.Compression):
    """Solves min_θ ‖w − θ‖² over θ representable in a 16-bit float format (IEEE float16, or bfloat16): rounding to
    the nearest (what ``Tensor.to`` does), stored at 16 bits a value. The post-training "float16 weights" of
    TensorFlow Lite (Micikevicius et al., "Mixed precision training", ICLR 2018, for the format). O(N).

    A C step of experiments', not of lc (its class registers with lc when this module is imported, so
    ``lc.load`` reads the artifacts it writes once ``experiments.baselines`` is imported)."""

    dtype: str = "float16"
    constraints = {"dtype": (Options(("float16", "bfloat16")), "is the 16-bit float format")}

    def compress(self, w, mu, previous=None):
        values = w.detach().to(getattr(torch, self.dtype))
        return State(tensors={"values": values},
                     meta={"shape": list(w.shape), "dtype": str(w.dtype).removeprefix("torch."),
                           "encoding": {"values": "float"}}, bits=16 * w.numel())

    def decompress(self, state):
        return state.tensors["values"].to(getattr(torch, state.meta["dtype"])).reshape(state.meta["shape"])
