"""Quantized layers that run as what they are, instead of as float32 Δ(Θ):

- :class:`Int8Linear`: a ``Linear`` whose weight is an affine grid Δ = S(q − Z) (``lc.AffineQuantization``, at most
  8 bits) runs in integers: the input is quantized at run time per row (symmetric int8, scale max|x|/127), then
  int8 × int8 → int32 (``torch._int_mm``), then rescaled. The weight is held as int8 (1 byte a weight). The only
  difference from the Δ(Θ) layer is the input's rounding: every output is within max|x_b|/254 · ‖Δ_j‖₁ of it (b the
  row, j the output), the bound this module's tests check.
- :class:`CodebookLinear`: a ``Linear`` whose weight is a learned codebook (``lc.AdaptiveQuantization``, one
  codebook or one per row) keeps its codes packed (8/b codes a byte for b = 1, 2, 4 bits) with the look-up table:
  resident weight bytes shrink by 32/b; each forward unpacks and looks up the weight, then multiplies: the same
  outputs as the Δ(Θ) layer (to float rounding), slower (measured in the docs).

Both export to ONNX as what they are: the int8 weight through ``DequantizeLinear`` (QDQ), the codebook as
``BitShift``/``BitwiseAnd`` unpacking, ``Gather`` from the table, ``MatMul``. The export handlers below choose them
per layer (:func:`lc.export`'s ``integer`` and ``codebooks`` options).
"""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from .. import measure
from ..compression.affine import AffineQuantization, grid
from ..compression.quantization import AdaptiveQuantization, codebook
from ..params import AsIs, AsVector
from ._registry import register

__all__ = ["Int8Linear", "CodebookLinear", "int8_linear", "codebook_linear"]

log = logging.getLogger(__name__)


class _Dequantize(torch.autograd.Function):
    """S(q − Z) per row; exported to ONNX as one DequantizeLinear (int8 weight, float scale, int8 zero point)."""

    @staticmethod
    def forward(ctx, q, scale, zero):
        return (q.to(scale.dtype) - zero.to(scale.dtype)[:, None]) * scale[:, None]

    @staticmethod
    def symbolic(g, q, scale, zero):
        return g.op("DequantizeLinear", q, scale, zero, axis_i=0)


class Int8Linear(nn.Module):
    """y = x Δᵀ + b with Δ = S(q − Z) held as int8 and run as int8 × int8 → int32 (see the module docstring).

    ``weight`` (out, in) int8 holds q − 128 and ``zero`` (out,) int8 holds Z − 128, so that q − Z = weight − zero
    exactly (for the symmetric grid Z = 2^(bits−1) … of 8 bits, zero is 0); ``scale`` (out,) float32 is S. This is
    also ONNX's DequantizeLinear(weight, scale, zero)."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.register_buffer("weight", (codes - 128).to(torch.int8))
        self.register_buffer("zero", (zero - 128).to(torch.int8))
        self.register_buffer("scale", scale.detach().to(torch.float32).clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.symmetric = not bool(self.zero.any())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return F.linear(x, _Dequantize.apply(self.weight, self.scale, self.zero).to(x.dtype), self.bias)
        flat = x.reshape(-1, self.in_features)
        amax = flat.abs().amax(1, keepdim=True).to(torch.float32)
        sx = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
        qx = torch.round(flat.to(torch.float32) / sx).to(torch.int8)          # |qx| ≤ 127
        acc = torch._int_mm(qx, self.weight.t())                              # int32: Σ qx (q − 128)
        if not self.symmetric:
            acc = acc - qx.sum(1, keepdim=True, dtype=torch.int32) * self.zero.to(torch.int32)   # − Σ qx (Z − 128)
        y = (acc.to(torch.float32) * (sx * self.scale)).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes < 2^bits (bits 1, 2 or 4), 8/bits to a byte, the first code in the lowest bits."""
    per = 8 // bits
    c = codes.reshape(-1).to(torch.uint8)
    c = torch.cat([c, c.new_zeros((-c.numel()) % per)]).reshape(-1, per)
    shifts = torch.arange(per, dtype=torch.uint8, device=c.device) * bits
    return (c << shifts).sum(1, dtype=torch.uint8) if per > 1 else c[:, 0]


class CodebookLinear(nn.Module):
    """y = x Δᵀ + b with Δ = table[codes]: codes packed ``bits`` to a weight in ``packed``, ``table`` (d,) or one per
    output row (out, d). Each forward unpacks and looks up Δ, then multiplies."""

    def __init__(self, table: torch.Tensor, codes: torch.Tensor, shape, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = shape
        d = table.shape[-1]
        self.bits = next(b for b in (1, 2, 4, 8) if d <= 1 << b)
        self.register_buffer("table", table.detach().clone().reshape(-1))           # per row: row j at j·d
        self.d = d if table.dim() == 2 else 0
        self.register_buffer("packed", _pack(codes, self.bits))
        self.register_buffer("shifts", torch.arange(8 // self.bits, dtype=torch.uint8) * self.bits)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def weight(self) -> torch.Tensor:
        n = self.out_features * self.in_features
        codes = ((self.packed[:, None] >> self.shifts) & ((1 << self.bits) - 1)).reshape(-1)[:n].to(torch.int64)
        if self.d:                                                         # one table per output row
            codes = codes + torch.arange(self.out_features, device=codes.device).repeat_interleave(
                self.in_features) * self.d
        return self.table[codes].reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, codes at {self.bits} bits"


def _matrix_task(layer, view) -> bool:
    """A Linear whose weight the task views whole: as the matrix (AsIs) or as one vector (AsVector)."""
    return isinstance(layer, nn.Linear) and isinstance(view, (AsIs, AsVector))


@register(AffineQuantization)
def int8_linear(layer, view, compression, state, ctx):
    """A Linear on an affine grid of ≤ 8 bits, one grid per tensor or per output row: :class:`Int8Linear` when
    ``ctx.integer`` is "always", or "measure" and it is measured ≥ 10 % faster at ``ctx.batch_size``."""
    if ctx.integer == "never" or not _matrix_task(layer, view) or compression.bits > 8 \
            or layer.weight.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return None
    codes, scale, zero = grid(state)
    rows = scale.numel()
    if rows not in (1, layer.out_features) or (rows > 1 and isinstance(view, AsVector)):
        return None                                                   # rows that are not output channels
    shape = (layer.out_features, layer.in_features)
    new = Int8Linear(codes.reshape(shape), scale.expand(shape[0]), zero.expand(shape[0]), layer.bias)
    if ctx.integer == "always":
        return new
    x = torch.randn(ctx.batch_size, layer.in_features, dtype=layer.weight.dtype, device=layer.weight.device)
    t = measure.time_on({"dense": layer, "int8": new}, x, repeats=15, warmup=2)
    log.info("%s: dense %.1f us, int8 %.1f us at batch %d (CPU time)", layer, 1e6 * t["dense"].cpu,
             1e6 * t["int8"].cpu, ctx.batch_size)
    return new if t["int8"].cpu < 0.9 * t["dense"].cpu else None


@register(AdaptiveQuantization)
def codebook_linear(layer, view, compression, state, ctx):
    """A Linear on a learned codebook of ≤ 16 entries (≤ 4 bits a code) as :class:`CodebookLinear` when
    ``ctx.codebooks`` is "packed"."""
    if ctx.codebooks != "packed" or not _matrix_task(layer, view):
        return None
    table, codes = codebook(state)
    if table.shape[-1] > 16 or (table.dim() == 2 and table.shape[0] != layer.out_features):
        return None
    return CodebookLinear(table, codes, (layer.out_features, layer.in_features), layer.bias)


def resident_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer the model holds in memory (the weights it keeps resident)."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]
               if t.layout == torch.strided) + sum(
        b.values().numel() * b.values().element_size() + b.col_indices().numel() * b.col_indices().element_size()
        + b.crow_indices().numel() * b.crow_indices().element_size()
        for b in model.buffers() if b.layout == torch.sparse_csr)

