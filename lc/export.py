"""Deployable models: ``lc.export(model, compressed)`` returns a plain ``nn.Module`` (a deep copy; the original is
untouched) that computes the compressed model Δ(Θ) and runs it efficiently on CPU.

Rules (each measured on this project's CPU, see ``docs/artifacts.md``):

- **low rank** (a task ``(AsIs, compression)`` on the weight of one ``nn.Linear`` or ``nn.Conv2d`` whose state
  holds factors ``"U"`` (m×r) and ``"V"`` (r×n), Δ = U V): two layers where that lowers the multiply-adds,
  r(m + n) < mn; dense otherwise. Linear → ``Linear(n, r)`` then ``Linear(r, m)``. A conv kernel viewed by scheme 1
  → a kh×kw conv to r channels then a 1×1 conv; by scheme 2 → a 1×kw conv to r channels then a kh×1 conv
  (stride, padding and dilation split between the two). Grouped convs and non-zero padding modes stay dense.
- **pruned** ``nn.Linear`` layers (any weight with density ≤ ``max_sparse_density``): dense with zeros, or a
  CSR sparse kernel where a measurement shows it faster: ``sparse="measure"`` times both on the layer itself at
  ``batch_size`` (CPU time, threads as set) and keeps CSR only if it is at least 10 % faster;
  ``"never"``/``"always"``. Pruned convolutions stay dense with zeros (torch has no sparse conv kernel on CPU).
- batch norms (eval mode) are folded into the conv or linear layer before them (``torch.fx``; a model that cannot
  be traced keeps them);
- convolutions run channels-last (NHWC weights), measured faster for dense and factorised convs alike;
- micro-batches: large batches run in slices (:class:`MicroBatched`), which helps where a whole batch's
  activations do not fit in cache (ResNet20 at batch 256) and hurts where the GEMMs prefer the whole batch
  (LeNet300), so ``micro_batch="measure"`` (the default) decides by timing on an ``example`` input: slices of
  32, 64 or 128 examples are kept only if at least 10 % faster than the whole batch; without an example,
  no slicing;
- everything else (quantized layers included): dense float32 with Δ(Θ). Int8 kernels are not used: they need
  int8 activations, which changes the outputs beyond float tolerance (the measurement is in the docs).
"""
from __future__ import annotations

import copy
import logging
import time
import warnings

import torch
from torch import nn

from ._errors import CompressionError
from ._tasks import Viewed
from .params import AsIs
from .storage import Compressed

__all__ = ["export", "SparseLinear", "MicroBatched"]

log = logging.getLogger(__name__)


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W stored as a CSR sparse matrix (``torch.sparse.mm``)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        with warnings.catch_warnings():             # "sparse CSR support is in beta": we use mm only
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("weight", weight.detach().to_sparse_csr())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight.values().numel()}"


class MicroBatched(nn.Module):
    """Runs ``module`` on slices of at most ``size`` examples (dimension 0 of a single tensor input) and concatenates
    the outputs. The same outputs (in eval mode no layer mixes examples); faster for convolutional nets at large
    batches because a slice's activations stay in cache (measured in ``docs/artifacts.md``)."""

    def __init__(self, module: nn.Module, size: int):
        super().__init__()
        self.module, self.size = module, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= self.size:
            return self.module(x)
        return torch.cat([self.module(part) for part in x.split(self.size)])


def _low_rank_linear(layer: nn.Linear, u: torch.Tensor, v: torch.Tensor) -> nn.Module:
    r = u.shape[1]
    kw = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.Linear(layer.in_features, r, bias=False, **kw)
    second = nn.Linear(r, layer.out_features, bias=layer.bias is not None, **kw)
    return _pair(first, second, v, u, layer.bias)


def _pair(first: nn.Module, second: nn.Module, w1: torch.Tensor, w2: torch.Tensor, bias) -> nn.Sequential:
    """first → second, with their weights set to the factors and the original layer's bias on the second."""
    with torch.no_grad():
        first.weight.copy_(w1)
        second.weight.copy_(w2)
        if bias is not None:
            second.bias.copy_(bias)
    return nn.Sequential(first, second)


def _low_rank_conv(layer: nn.Conv2d, u: torch.Tensor, v: torch.Tensor, scheme: int) -> nn.Module:
    o, i, kh, kw = layer.weight.shape
    r = u.shape[1]
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    bias, kw_ = layer.bias is not None, {"device": layer.weight.device, "dtype": layer.weight.dtype}
    if scheme == 1:      # W (o) × (i·kh·kw) = U V: a kh×kw conv to r channels, then 1×1
        first = nn.Conv2d(i, r, (kh, kw), layer.stride, layer.padding, layer.dilation, bias=False, **kw_)
        second = nn.Conv2d(r, o, 1, bias=bias, **kw_)
        w1, w2 = v.reshape(r, i, kh, kw), u.reshape(o, r, 1, 1)
    else:                # W (o·kh) × (i·kw) = U V: a 1×kw conv to r channels, then kh×1
        (ph, pw) = layer.padding
        first = nn.Conv2d(i, r, (1, kw), (1, sw), (0, pw), (1, dw), bias=False, **kw_)
        second = nn.Conv2d(r, o, (kh, 1), (sh, 1), (ph, 0), (dh, 1), bias=bias, **kw_)
        w1 = v.reshape(r, i, 1, kw)
        w2 = u.reshape(o, kh, r).permute(0, 2, 1).reshape(o, r, kh, 1)
    return _pair(first, second, w1, w2, layer.bias)


def _factors(task, state):
    """(U, V, scheme) if the task is a low-rank factorisation of one Linear/Conv2d weight, else None."""
    c = task.c
    if not (isinstance(c, Viewed) and isinstance(c.view, AsIs) and {"U", "V"} <= set(state.tensors)):
        return None
    u, v = state.tensors["U"], state.tensors["V"]
    if u.dim() != 2 or v.dim() != 2 or u.shape[1] != v.shape[0]:
        return None
    return u, v, c.view.scheme


def _sparse_is_faster(dense: nn.Linear, sparse: SparseLinear, batch_size: int) -> bool:
    x = torch.randn(batch_size, dense.in_features, dtype=dense.weight.dtype, device=dense.weight.device)
    t = _time_round_robin({"dense": dense, "csr": sparse}, x, repeats=15)
    t_dense, t_sparse = t["dense"], t["csr"]
    log.info("%s: dense %.1f us, CSR %.1f us at batch %d", dense, 1e6 * t_dense, 1e6 * t_sparse, batch_size)
    return t_sparse < 0.9 * t_dense


_SLICES = (32, 64, 128)          # micro-batch sizes that micro_batch="measure" tries


def _fastest_slices(model: nn.Module, example: torch.Tensor) -> int | None:
    """The slice size among :data:`_SLICES` (smaller than the example's batch) whose :class:`MicroBatched` runs the
    example at least 10 % faster than ``model`` on the whole batch (median CPU time, round-robin), else None."""
    candidates = {s: MicroBatched(model, s) for s in _SLICES if s < example.shape[0]}
    if not candidates:
        return None
    models = {0: model, **candidates}
    t = _time_round_robin(models, example)
    best = min(candidates, key=lambda s: t[s])
    log.info("micro-batches at batch %d: whole %.1f ms, %s (CPU time)", example.shape[0], 1e3 * t[0],
             ", ".join(f"slices of {s} {1e3 * t[s]:.1f} ms" for s in candidates))
    return best if t[best] < 0.9 * t[0] else None


def _time_round_robin(models: dict, x: torch.Tensor, repeats: int = 5, warmup: int = 2) -> dict:
    """Median CPU seconds (steady on a shared machine) of ``m(x)`` per model, timed round-robin after ``warmup``
    passes each, so that load from other processes hits all alike."""
    times = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            for _ in range(warmup):
                m(x)
        for _ in range(repeats):
            for k, m in models.items():
                t = time.process_time()
                m(x)
                times[k].append(time.process_time() - t)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def export(model: nn.Module, compressed, *, sparse: str = "measure", batch_size: int = 256,
           max_sparse_density: float = 0.25, channels_last: bool | None = None,
           micro_batch: int | str | None = "measure", example: torch.Tensor | None = None) -> nn.Module:
    """A plain ``nn.Module`` computing Δ(Θ) of ``compressed`` (an :class:`lc.Algorithm` after ``run()``, an
    :class:`lc.Compressed`, or what :func:`lc.load` returned) with the layer rules of this module's docstring.
    ``model`` is deep-copied, never modified. The result is in eval mode.

    ``channels_last`` (default: whenever the model has a ``Conv2d``) stores 4-D weights channels-last, so that
    convolutions run in oneDNN's NHWC kernels and return NHWC outputs for NCHW inputs; measured 1.5× faster for
    the dense ResNet20 at batch 256 and needed for small-rank convolutions to run at speed.

    ``micro_batch``: a number n: the result is a :class:`MicroBatched` that runs larger batches in slices of n
    examples (for a single tensor input); None: never; ``"measure"`` (default): the exported model is timed on
    ``example`` (an input batch like those it will serve, e.g. ``torch.randn(256, 3, 32, 32)``) whole and in
    slices of 32, 64 and 128, and wrapped only if slicing is ≥ 10 % faster; with no ``example``, never.
    Costs about 20 forward passes of the example at export time."""
    if sparse not in ("measure", "never", "always"):
        raise CompressionError(f"export(sparse={sparse!r}): choose 'measure', 'never' or 'always'")
    if micro_batch not in (None, "measure") and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int)
                                                 or micro_batch < 1):
        raise CompressionError(f"export(micro_batch={micro_batch!r}): give a number of examples ≥ 1, "
                               "'measure' or None")
    if example is not None and not (isinstance(example, torch.Tensor) and example.dim() >= 1):
        raise CompressionError(f"export(example=…): give an input batch tensor (batch first), not "
                               f"{type(example).__name__}")
    compressed = Compressed.of(compressed)
    out = copy.deepcopy(model)
    compressed.apply(out)
    modules = dict(out.named_modules())
    factorised = set()
    for task, state in zip(compressed.tasks, compressed.states):
        f = _factors(task, state)
        name = task.param_names[0]
        owner, _, attr = name.rpartition(".")
        layer = modules.get(owner)
        if f is None or attr != "weight" or not isinstance(layer, (nn.Linear, nn.Conv2d)):
            continue
        u, v, scheme = f
        m, n = u.shape[0], v.shape[1]
        if not 0 < u.shape[1] * (m + n) < m * n:
            continue                                   # rank 0 (Δ = 0), or two layers would cost more
        if isinstance(layer, nn.Linear):
            new = _low_rank_linear(layer, u, v)
        elif layer.groups == 1 and layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
            new = _low_rank_conv(layer, u, v, scheme)
        else:
            continue
        _replace(out, owner, new)
        factorised.add(owner)
    if sparse != "never":
        for name, layer in list(out.named_modules()):
            if name in factorised or not isinstance(layer, nn.Linear):
                continue
            density = float((layer.weight != 0).float().mean())
            if density > max_sparse_density:
                continue
            candidate = SparseLinear(layer.weight, layer.bias)
            if sparse == "always" or _sparse_is_faster(layer, candidate, batch_size):
                _replace(out, name, candidate)
    out = _fold_batch_norms(out.eval())
    if channels_last is None:
        channels_last = any(isinstance(m, nn.Conv2d) for m in out.modules())
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    out = out.eval()
    if micro_batch == "measure":
        micro_batch = None if example is None else _fastest_slices(out, example)
    return out if micro_batch is None else MicroBatched(out, micro_batch).eval()


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, SparseLinear) or super().is_leaf_module(m, qualname)


def _fold_batch_norms(model: nn.Module) -> nn.Module:
    """Eval-mode batch norm folded into the conv or linear layer before it (when that layer feeds nothing else):
    W ← W·γ/√(σ² + ε) per output channel, b ← (b − m)·γ/√(σ² + ε) + β. Needs ``torch.fx`` tracing; a model that
    cannot be traced (data-dependent control flow) is returned unchanged."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure means: keep the model as it is
        log.info("batch norms not folded: the model cannot be traced by torch.fx (%s)", e)
        return model
    gm = torch.fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        prev = node.args[0] if bn is not None and node.args else None
        layer = modules.get(prev.target) if isinstance(prev, torch.fx.Node) and prev.op == "call_module" else None
        if not (isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.track_running_stats
                and isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and len(prev.users) == 1
                and sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == prev.target) == 1):
            continue
        with torch.no_grad():
            scale = (bn.weight if bn.affine else 1) / torch.sqrt(bn.running_var + bn.eps)
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            shift = (bias - bn.running_mean) * scale + (bn.bias if bn.affine else 0)
            layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)))
            layer.bias = nn.Parameter(shift.to(layer.weight.dtype))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        folded += 1
    if not folded:
        return model
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
