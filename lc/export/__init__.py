"""Deployable models: ``lc.export(model, compressed)`` returns a plain ``nn.Module`` (a deep copy; the original is
untouched) that computes the compressed model Δ(Θ) and runs it efficiently on CPU.

Export is a list of passes (:data:`PASSES`), each ``pass_(model, context) -> model``; the rules they apply (each
measured on this project's CPU, see ``docs/artifacts.md``):

1. :func:`apply_deltas`: the copy holds Δ(Θ).
2. :func:`replace_layers`: a task that is one compression on the ``weight`` of a layer is handed to the export
   handler registered for that compression's type (:func:`register`): **low rank** (:mod:`lc.export.lowrank`) →
   two layers where that lowers the multiply-adds. Layers without a handler stay dense, holding Δ(Θ).
3. :func:`remove_dead_channels` (``channels=True``, with an ``example`` input): every channel whose producing
   rows are all zero in Δ(Θ) (``lc.ChannelPruning`` and its penalty forms zero whole channels; any compression
   may) is removed from every layer that produces, normalises or consumes it (:func:`lc.structure.remove_channels`:
   residual connections, channel padding and concatenation included); the result is a ``torch.fx.GraphModule``.
   Before the sparse layers, which are chosen on what remains (a CSR layer produces no removable channel).
3b. :func:`sparse_linears`: **pruned** ``nn.Linear`` layers (any weight with density ≤ ``max_sparse_density``):
   dense with zeros, or a CSR sparse kernel where a measurement shows it faster: ``sparse="measure"`` times both
   on the layer itself at ``batch_size`` (CPU time, threads as set) and keeps CSR only if it is at least 10 %
   faster; ``"never"``/``"always"``. Only float32 and float64 layers (torch's CSR kernel runs no half types on the
   CPU). Pruned convolutions stay dense with zeros (torch has no sparse conv kernel on CPU).
4. :func:`fold_batch_norms`: batch norms (eval mode) folded into the conv or linear layer before them
   (``torch.fx``; a model that cannot be traced keeps them).
5. :func:`channels_last`: convolutions run channels-last (NHWC weights), measured faster for dense and
   factorised convs alike.
6. :func:`micro_batches` (only when asked): large batches run in slices (:class:`MicroBatched`), which helps where
   a whole batch's activations do not fit in cache (ResNet20 at batch 256) and hurts where the GEMMs prefer the
   whole batch (LeNet300); ``micro_batch="measure"`` decides by timing on an ``example`` input: slices of 32, 64
   or 128 examples are kept only if at least 10 % faster than the whole batch. The type of the result depends on
   the arguments only: the model's own class with ``micro_batch=None`` (the default), a :class:`MicroBatched`
   otherwise (whose ``size`` is None when the measurement kept whole batches).

Everything else (quantized layers included) stays dense with Δ(Θ) in the weights' dtype. Int8 kernels are not
used: they need int8 activations, which changes the outputs beyond float tolerance (the measurement is in the
docs). Timings go through :func:`lc.measure.time_on`.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .. import measure
from .._errors import CompressionError
from ..compressed import Compressed
from . import lowrank, quantized  # noqa: F401 - register the low-rank and quantized-layer handlers
from ._batchnorm import fold_batch_norms as _fold
from ._layers import CSR_DTYPES, MicroBatched, SparseLinear
from .quantized import CodebookWeight, Int8Linear, Int8Weight, Reweighted, resident_bytes
from ._registry import handler_for, register

__all__ = ["export", "register", "PASSES", "Context", "SparseLinear", "MicroBatched", "Int8Linear", "Int8Weight",
           "CodebookWeight", "Reweighted", "resident_bytes", "apply_deltas",
           "replace_layers", "sparse_linears", "remove_dead_channels", "fold_batch_norms", "channels_last",
           "micro_batches"]

log = logging.getLogger(__name__)

_SLICES = (32, 64, 128)          # micro-batch sizes that micro_batch="measure" tries


@dataclass
class Context:
    """What the passes share: the compressed model's Θ, the options of :func:`export`, and the names of the layers
    a pass has replaced (later passes leave those alone)."""

    compressed: Compressed
    sparse: str = "measure"
    batch_size: int = 256
    max_sparse_density: float = 0.25
    channels_last: bool | None = None
    micro_batch: int | str | None = None
    example: torch.Tensor | None = None
    integer: str = "never"
    codebooks: str = "dense"
    channels: bool = False
    onnx: bool = False                   # building a module for ONNX: quantized weights in their ONNX forms
    replaced: set[str] = field(default_factory=set)


def apply_deltas(model: nn.Module, ctx: Context) -> nn.Module:
    """The model holding Δ(Θ) in every compressed parameter."""
    return ctx.compressed.apply(model)


def replace_layers(model: nn.Module, ctx: Context) -> nn.Module:
    """Each layer whose ``weight`` is one task of one compression, rebuilt by the handler of its compression type."""
    modules = dict(model.named_modules())
    for task, state in zip(ctx.compressed.tasks, ctx.compressed.states):
        single = task.step.single()
        owner, _, attr = task.param_names[0].rpartition(".")
        handler = handler_for(single[1]) if single is not None else None
        if handler is None or len(task.param_names) != 1 or attr != "weight" or owner not in modules:
            continue
        new = handler(modules[owner], single[0], single[1], state, ctx)
        if new is not None:
            _replace(model, owner, new)
            ctx.replaced.add(owner)
    return model


def sparse_linears(model: nn.Module, ctx: Context) -> nn.Module:
    """Sparse ``nn.Linear`` layers as :class:`SparseLinear` (CSR) where that is measured faster (or always/never)."""
    if ctx.sparse == "never":
        return model
    for name, layer in list(model.named_modules()):
        if _within(name, ctx.replaced) or not isinstance(layer, nn.Linear) or layer.weight.dtype not in CSR_DTYPES:
            continue
        if float((layer.weight != 0).float().mean()) > ctx.max_sparse_density:
            continue
        candidate = SparseLinear(layer.weight, layer.bias)
        if ctx.sparse == "always" or _sparse_is_faster(layer, candidate, ctx.batch_size):
            _replace(model, name, candidate)
            ctx.replaced.add(name)
    return model


def remove_dead_channels(model: nn.Module, ctx: Context) -> nn.Module:
    """With ``channels=True``: the channels that are zero in Δ(Θ) removed physically (see the module docstring)."""
    if not ctx.channels:
        return model
    from ..structure import remove_channels
    model, removed = remove_channels(model, ctx.example)
    log.info("export: %d channels removed", removed)
    return model


def fold_batch_norms(model: nn.Module, ctx: Context) -> nn.Module:
    """Eval-mode batch norms folded into the layer before them (see :mod:`lc.export._batchnorm`)."""
    return _fold(model.eval())


def channels_last(model: nn.Module, ctx: Context) -> nn.Module:
    """4-D weights channels-last when ``channels_last`` is True (default: whenever the model has a Conv2d)."""
    on = ctx.channels_last if ctx.channels_last is not None else any(isinstance(m, nn.Conv2d) for m in model.modules())
    return (model.to(memory_format=torch.channels_last) if on else model).eval()


def micro_batches(model: nn.Module, ctx: Context) -> nn.Module:
    """The model as it is (``micro_batch=None``), or wrapped in :class:`MicroBatched`: slices of a given number of
    examples, or of the size measured fastest on ``example`` (None: whole batches were fastest)."""
    if ctx.micro_batch is None:
        return model
    size = _fastest_slices(model, ctx.example) if ctx.micro_batch == "measure" else ctx.micro_batch
    return MicroBatched(model, size).eval()


PASSES: tuple[Callable[[nn.Module, Context], nn.Module], ...] = (
    apply_deltas, replace_layers, remove_dead_channels, sparse_linears, fold_batch_norms, channels_last, micro_batches)


def export(model: nn.Module, compressed, *, sparse: str = "measure", batch_size: int = 256,
           max_sparse_density: float = 0.25, channels_last: bool | None = None,
           micro_batch: int | str | None = None, example: torch.Tensor | None = None, integer: str = "never",
           codebooks: str = "dense", channels: bool = False,
           passes: Sequence[Callable[[nn.Module, Context], nn.Module]] = PASSES) -> nn.Module:
    """A plain ``nn.Module`` computing Δ(Θ) of ``compressed`` (an :class:`lc.Algorithm` after ``run()``, an
    :class:`lc.Compressed`, or what :func:`lc.load` returned; ``lc.Compressed.none()`` exports the dense model the
    same way) through ``passes`` (default :data:`PASSES`, the rules of this module's docstring). ``model`` is
    deep-copied, never modified. The result is in eval mode.

    ``channels_last`` (default: whenever the model has a ``Conv2d``) stores 4-D weights channels-last, so that
    convolutions run in oneDNN's NHWC kernels and return NHWC outputs for NCHW inputs; measured 1.5× faster for
    the dense ResNet20 at batch 256 and needed for small-rank convolutions to run at speed.

    ``micro_batch``: None (default): the result is the model's own class, batches run whole; a number n: a
    :class:`MicroBatched` that runs larger batches in slices of n examples (for a single tensor input);
    ``"measure"``: a :class:`MicroBatched` whose slice size is the fastest of 32, 64, 128 and whole batches
    (``size=None``), timed on ``example`` (an input batch like those it will serve, e.g.
    ``torch.randn(256, 3, 32, 32)``; required), slices kept only if ≥ 10 % faster. Costs about 20 forward passes
    of the example at export time. The result's type depends on these arguments only, never on a timing."""
    if sparse not in ("measure", "never", "always"):
        raise CompressionError(f"export(sparse={sparse!r}): choose 'measure', 'never' or 'always'")
    if micro_batch not in (None, "measure") and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int)
                                                 or micro_batch < 1):
        raise CompressionError(f"export(micro_batch={micro_batch!r}): give a number of examples ≥ 1, "
                               "'measure' or None")
    if example is not None and not (isinstance(example, torch.Tensor) and example.dim() >= 1):
        raise CompressionError(f"export(example=…): give an input batch tensor (batch first), not "
                               f"{type(example).__name__}")
    if integer not in ("never", "measure", "always") or codebooks not in ("dense", "packed"):
        raise CompressionError(f"export(integer={integer!r}, codebooks={codebooks!r}): integer is 'never', "
                               "'measure' or 'always'; codebooks is 'dense' or 'packed'")
    if channels and example is None:
        raise CompressionError("export(channels=True) finds channels on the model's graph: give example=x (an input "
                               "batch the model accepts)")
    if micro_batch == "measure" and example is None:
        raise CompressionError("export(micro_batch='measure') times slices on an input batch: give example=x (a "
                               "batch like those the model will serve), or micro_batch=None or a number")
    ctx = Context(Compressed.of(compressed), sparse, batch_size, max_sparse_density, channels_last, micro_batch,
                  example, integer, codebooks, channels)
    out = copy.deepcopy(model)
    for pass_ in passes:
        out = pass_(out, ctx)
    return out.eval()


def _sparse_is_faster(dense: nn.Linear, sparse: SparseLinear, batch_size: int) -> bool:
    x = torch.randn(batch_size, dense.in_features, dtype=dense.weight.dtype, device=dense.weight.device)
    t = measure.time_on({"dense": dense, "csr": sparse}, x, repeats=15, warmup=2)
    log.info("%s: dense %.1f us, CSR %.1f us at batch %d (CPU time)", dense, 1e6 * t["dense"].cpu,
             1e6 * t["csr"].cpu, batch_size)
    return t["csr"].cpu < 0.9 * t["dense"].cpu


def _fastest_slices(model: nn.Module, example: torch.Tensor) -> int | None:
    """The slice size among :data:`_SLICES` (smaller than the example's batch) whose :class:`MicroBatched` runs the
    example at least 10 % faster than ``model`` on the whole batch (median CPU time, round-robin), else None."""
    candidates = {s: MicroBatched(model, s) for s in _SLICES if s < example.shape[0]}
    if not candidates:
        return None
    t = measure.time_on({0: model, **candidates}, example, repeats=5, warmup=2)
    best = min(candidates, key=lambda s: t[s].cpu)
    log.info("micro-batches at batch %d: whole %.1f ms, %s (CPU time)", example.shape[0], 1e3 * t[0].cpu,
             ", ".join(f"slices of {s} {1e3 * t[s].cpu:.1f} ms" for s in candidates))
    return best if t[best].cpu < 0.9 * t[0].cpu else None


def _within(name: str, replaced: set[str]) -> bool:
    """Whether module ``name`` is one of the replaced layers or inside one."""
    return any(name == r or name.startswith(r + ".") for r in replaced)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
