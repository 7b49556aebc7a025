"""Quantized layers that run as what they are, instead of as float32 Δ(Θ):

- :class:`Int8Linear`: a ``Linear`` whose weight is an affine grid Δ = S(q − Z) (``lc.AffineQuantization``, at most
  8 bits) runs in integers: the input is quantized at run time per row (symmetric int8, scale max|x|/127), then
  int8 × int8 → int32 (``torch._int_mm``), then rescaled. The weight is held as int8 (1 byte a weight). The only
  difference from the Δ(Θ) layer is the input's rounding: every output is within max|x_b|/254 · ‖Δ_j‖₁ of it (b the
  row, j the output), the bound the tests check.
- :class:`Reweighted` with a :class:`CodebookWeight`: a ``Linear`` or ``Conv2d`` whose weight is a learned codebook
  (``lc.AdaptiveQuantization`` of ≤ 16 entries, one codebook or one per output channel) keeps its codes packed
  (8/b codes a byte, b = 1, 2 or 4 bits) with the look-up table: resident weight bytes shrink by about 32/b; each
  forward unpacks and looks up the weight, then runs the layer: the same outputs as the Δ(Θ) layer, slower
  (measured in the docs).

For ONNX (:func:`lc.export_onnx`) the same forms export as what they are: an affine grid as an int8 initializer
through ``DequantizeLinear`` (QDQ) — for ``Linear`` and ``Conv2d`` layers —, a codebook as packed ``uint8`` codes
unpacked by ``BitShift``/``BitwiseAnd`` and looked up by ``Gather``.
"""
from __future__ import annotations

import logging
import math

import torch
from torch import nn
from torch.nn import functional as F

from .. import measure
from ..compression.affine import AffineQuantization, grid
from ..compression.quantization import AdaptiveQuantization, codebook
from ..params import AsIs, AsVector
from ._registry import register

__all__ = ["Int8Linear", "Int8Weight", "CodebookWeight", "Reweighted", "int8_layer", "codebook_layer",
           "resident_bytes"]

log = logging.getLogger(__name__)


class _Dequantize(torch.autograd.Function):
    """S(q − Z) per row; exported to ONNX as one DequantizeLinear (int8 weight, float scale, int8 zero point)."""

    @staticmethod
    def forward(ctx, q, scale, zero):
        return (q.to(scale.dtype) - zero.to(scale.dtype)[:, None]) * scale[:, None]

    @staticmethod
    def symbolic(g, q, scale, zero):
        return g.op("DequantizeLinear", q, scale, zero, axis_i=0)


class Int8Weight(nn.Module):
    """A weight Δ = S(q − Z) on an integer grid of ≤ 8 bits, held as int8: ``weight`` (rows, columns) holds q − 128
    and ``zero`` (rows,) Z − 128, so that q − Z = weight − zero exactly (rows: output channels, or one row for a
    grid per tensor); ``scale`` (rows,) float32 is S. ``forward()`` gives Δ in the layer's shape."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, shape):
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("weight", (codes - 128).to(torch.int8))
        self.register_buffer("zero", (zero - 128).to(torch.int8))
        self.register_buffer("scale", scale.detach().to(torch.float32).clone())

    def forward(self) -> torch.Tensor:
        return _Dequantize.apply(self.weight, self.scale, self.zero).reshape(self.shape)


def _pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes < 2^bits (bits 1, 2 or 4), 8/bits to a byte, the first code in the lowest bits."""
    per = 8 // bits
    c = codes.reshape(-1).to(torch.uint8)
    c = torch.cat([c, c.new_zeros((-c.numel()) % per)]).reshape(-1, per)
    shifts = torch.arange(per, dtype=torch.uint8, device=c.device) * bits
    return (c << shifts).sum(1, dtype=torch.uint8) if per > 1 else c[:, 0]


class CodebookWeight(nn.Module):
    """A weight Δ = table[codes] whose codes stay packed, ``bits`` to a code in ``packed``; ``table`` holds d entries
    (or d per output channel, row j's at j·d). ``forward()`` unpacks and looks up Δ in the layer's shape."""

    def __init__(self, table: torch.Tensor, codes: torch.Tensor, shape):
        super().__init__()
        self.shape = tuple(shape)
        self.n, self.per_row = math.prod(self.shape), math.prod(self.shape[1:])
        d = table.shape[-1]
        self.bits = next(b for b in (1, 2, 4, 8) if d <= 1 << b)
        self.d = d if table.dim() == 2 else 0
        self.register_buffer("table", table.detach().clone().reshape(-1))
        self.register_buffer("packed", _pack(codes, self.bits))
        self.register_buffer("shifts", torch.arange(8 // self.bits, dtype=torch.uint8) * self.bits)

    def forward(self) -> torch.Tensor:
        codes = ((self.packed[:, None] >> self.shifts) & ((1 << self.bits) - 1)).reshape(-1)[:self.n]
        codes = codes.to(torch.int64)
        if self.d:                                                         # one table per output channel
            codes = codes + torch.arange(self.shape[0], device=codes.device).repeat_interleave(self.per_row) * self.d
        return self.table[codes].reshape(self.shape)


class Reweighted(nn.Module):
    """``layer`` (a Linear or Conv) computing with the weight ``source()`` gives, instead of a stored float weight."""

    def __init__(self, layer: nn.Module, source: nn.Module):
        super().__init__()
        self.layer = layer
        del layer.weight                          # the weight is the source's, and only there
        self.source = source

    def weight(self) -> torch.Tensor:
        return self.source()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.source().to(x.dtype)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        return self.layer._conv_forward(x, w, self.layer.bias)

    def extra_repr(self) -> str:
        kind = f"codes at {self.source.bits} bits" if isinstance(self.source, CodebookWeight) else "int8 grid"
        return f"{type(self.layer).__name__}, {kind}"


class Int8Linear(nn.Module):
    """y = x Δᵀ + b with Δ held as an :class:`Int8Weight`, run as int8 × int8 → int32 (see the module docstring);
    exported to ONNX as DequantizeLinear + MatMul."""

    def __init__(self, weight: Int8Weight, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.source = weight
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.symmetric = not bool(weight.zero.any())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return F.linear(x, self.source().to(x.dtype), self.bias)
        w = self.source
        flat = x.reshape(-1, self.in_features)
        amax = flat.abs().amax(1, keepdim=True).to(torch.float32)
        sx = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
        qx = torch.round(flat.to(torch.float32) / sx).to(torch.int8)          # |qx| ≤ 127
        acc = torch._int_mm(qx, w.weight.t())                                 # int32: Σ qx (q − 128)
        if not self.symmetric:
            acc = acc - qx.sum(1, keepdim=True, dtype=torch.int32) * w.zero.to(torch.int32)   # − Σ qx (Z − 128)
        y = (acc.to(torch.float32) * (sx * w.scale)).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _whole_weight(layer, view) -> bool:
    """A Linear or Conv2d whose weight the task views whole, with rows = output channels where it has rows."""
    return isinstance(layer, (nn.Linear, nn.Conv2d)) and (isinstance(view, AsVector) or (
        isinstance(view, AsIs) and view.scheme == 1))


@register(AffineQuantization)
def int8_layer(layer, view, compression, state, ctx):
    """A layer on an affine grid of ≤ 8 bits (one grid per tensor, or one per output channel): for ONNX, its weight
    as int8 through DequantizeLinear; otherwise a Linear as :class:`Int8Linear` when ``ctx.integer`` is "always",
    or "measure" and it is measured ≥ 10 % faster at ``ctx.batch_size``."""
    if compression.bits > 8 or not _whole_weight(layer, view) or not layer.weight.dtype.is_floating_point:
        return None
    codes, scale, zero = grid(state)
    out = layer.weight.shape[0]
    if scale.numel() not in (1, out) or (scale.numel() > 1 and isinstance(view, AsVector)):
        return None                                                   # rows that are not output channels
    rows = out if scale.numel() == out else 1
    weight = Int8Weight(codes.reshape(rows, -1), scale.reshape(rows), zero.reshape(rows), layer.weight.shape)
    if ctx.onnx:
        return Reweighted(layer, weight)
    if ctx.integer == "never" or not isinstance(layer, nn.Linear):
        return None
    if rows == 1:                                                     # the int8 kernel wants a scale per row
        weight = Int8Weight(codes.reshape(out, -1), scale.expand(out), zero.expand(out), layer.weight.shape)
    new = Int8Linear(weight, layer.bias)
    if ctx.integer == "always":
        return new
    x = torch.randn(ctx.batch_size, layer.in_features, dtype=layer.weight.dtype, device=layer.weight.device)
    t = measure.time_on({"dense": layer, "int8": new}, x, repeats=15, warmup=2)
    log.info("%s: dense %.1f us, int8 %.1f us at batch %d (CPU time)", layer, 1e6 * t["dense"].cpu,
             1e6 * t["int8"].cpu, ctx.batch_size)
    return new if t["int8"].cpu < 0.9 * t["dense"].cpu else None


@register(AdaptiveQuantization)
def codebook_layer(layer, view, compression, state, ctx):
    """A layer on a learned codebook of ≤ 16 entries (≤ 4 bits a code), one per tensor or per output channel, as
    :class:`Reweighted` with a :class:`CodebookWeight` when ``ctx.codebooks`` is "packed" (or for ONNX)."""
    if not (ctx.codebooks == "packed" or ctx.onnx) or not _whole_weight(layer, view):
        return None
    table, codes = codebook(state)
    if table.shape[-1] > 16 or (table.dim() == 2 and table.shape[0] != layer.weight.shape[0]):
        return None
    return Reweighted(layer, CodebookWeight(table, codes, layer.weight.shape))


def resident_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer the model holds in memory (the weights it keeps resident; a CSR matrix
    counts its values and indices)."""
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.layout == torch.sparse_csr:
            total += sum(x.numel() * x.element_size() for x in (t.values(), t.col_indices(), t.crow_indices()))
        else:
            total += t.numel() * t.element_size()
    return total
