"""Integer-only inference, for devices without floating point: ``lc.export.integer.convert(model, compressed,
calibration)`` turns an MLP or a small CNN into an :class:`IntegerNet` that computes with int8 values, int32
accumulators and fixed-point requantization only, as TensorFlow Lite's integer kernels do (Jacob et al., CVPR 2018):

    a_{l+1} = clamp( round( M_j · (Σ_k W_jk a_l,k + b_j) ) )        all integers; M_j = s_in s_w,j / s_out

- weights: int8, one scale per output channel. A layer compressed by ``lc.AffineQuantization(bits ≤ 8,
  symmetric=True)`` keeps exactly its grid (q − Z, S): the integer net then computes Δ(Θ)'s layer. Any other layer's
  weights are rounded to int8 per output channel at max|W_j|/127 (post-training; said in ``layers``);
- activations: int8, zero point 0, one scale per tensor, max|a|/127 of the layer's output on the calibration batch
  (the input's too); the last layer's output has 16-bit resolution (int16 range in int32) so that an argmax over it
  (an action, a class) rarely ties;
- biases: int32 at scale s_in·s_w,j; ReLU is a clamp at 0, fused into the requantization;
- M_j = M0_j · 2^−31 · 2^−n_j with M0_j in [2^30, 2^31): the product is gemmlowp's saturating rounding doubling
  high multiply, the shift a rounding right shift, both written identically in :func:`requantize` (Python, exact
  integers) and in the C source of :meth:`IntegerNet.c_source`, which the tests compile and run bit for bit.

Supported layers (``nn.Sequential`` or anything ``torch.fx`` traces to a chain of them): ``Linear``, ``Conv2d``
(groups 1, zero padding, dilation 1), ``ReLU``, ``MaxPool2d``, ``Flatten``; batch norms are folded first.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._errors import CompressionError
from ..compressed import Compressed
from ..compression.affine import AffineQuantization, grid

__all__ = ["convert", "IntegerNet", "Layer", "requantize", "fixed_point"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def fixed_point(m: float) -> tuple[int, int]:
    """A real multiplier m > 0 as (M0, n) with m ≈ M0 · 2^−31 · 2^−n, M0 in [2^30, 2^31) (n < 0 for m ≥ 1)."""
    if not 0 < m < 1 << 16:
        raise CompressionError(f"a requantization multiplier {m:g} is not in (0, 2^16): a layer's output scale is "
                               "far off its input's (calibrate on a batch that exercises every layer)")
    mantissa, exponent = math.frexp(m)                       # m = mantissa · 2^exponent, mantissa in [0.5, 1)
    m0 = round(mantissa * (1 << 31))
    if m0 == 1 << 31:
        m0, exponent = m0 // 2, exponent + 1
    return m0, -exponent


def _div_pow2_trunc(x: np.ndarray, n: int) -> np.ndarray:
    """x / 2^n rounded toward zero (C's integer division)."""
    q = np.abs(x) >> n
    return np.where(x < 0, -q, q)


def requantize(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """round(acc · M0 · 2^−31 · 2^−shift) as TensorFlow Lite computes it (int64 arithmetic, exact): acc shifted left
    by −shift where shift < 0 (saturated to int32), SaturatingRoundingDoublingHighMul(·, M0), then
    RoundingDivideByPOT(·, shift) where shift > 0."""
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), np.broadcast_shapes(np.shape(acc), np.shape(shift)))
    left, shift = np.maximum(-shift, 0), np.maximum(shift, 0)
    acc = np.clip(acc.astype(np.int64) << left, INT32_MIN, INT32_MAX)
    m0 = m0.astype(np.int64)
    ab = acc * m0
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = _div_pow2_trunc(ab + nudge, 31)
    high = np.where((acc == INT32_MIN) & (m0 == INT32_MIN), INT32_MAX, high)
    mask = (1 << shift.astype(np.int64)) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> shift) + (remainder > threshold)


@dataclass
class Layer:
    """One integer layer: ``kind`` "linear" | "conv" | "maxpool" | "flatten"; for linear/conv the int8 weight,
    the int32 bias, the per-channel (M0, shift), the output's clamp range and scale, and where its weights came
    from (``source``: "lc grid" — Δ(Θ)'s own — or "rounded")."""

    kind: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    m0: np.ndarray | None = None
    shift: np.ndarray | None = None
    lo: int = -128
    hi: int = 127
    scale: float = 1.0
    source: str = ""
    params: dict = field(default_factory=dict)


def _chain(model: nn.Module) -> list[nn.Module]:
    """The model as a chain of supported modules, in call order."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001 - any tracing failure: the model is not a chain we can convert
        raise CompressionError(f"integer-only conversion needs a model torch.fx can trace ({e})") from None
    modules, chain, previous = dict(model.named_modules()), [], None
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op != "call_module" or (previous is not None and node.args[0] is not previous):
            raise CompressionError(f"integer-only conversion handles a chain of Linear, Conv2d, ReLU, MaxPool2d, "
                                   f"Flatten; {node.op} {node.target!r} is not one (or not chained)")
        m = modules[node.target]
        ok = isinstance(m, (nn.Linear, nn.ReLU, nn.Flatten, nn.Identity, nn.MaxPool2d)) or (
            isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros" and m.dilation == (1, 1)
            and not isinstance(m.padding, str))
        if not ok:
            raise CompressionError(f"integer-only conversion cannot convert layer {node.target!r} ({m}): supported "
                                   "are Linear, Conv2d (groups 1, zero padding, dilation 1), ReLU, MaxPool2d, Flatten")
        if not isinstance(m, nn.Identity):
            chain.append(m)
        previous = node
    return chain


def _weights(layer: nn.Module, step_grid) -> tuple[np.ndarray, np.ndarray, str]:
    """int8 weight (out, …) and per-output scale: Δ(Θ)'s own symmetric grid where there is one, else rounded."""
    w = layer.weight.detach().to(torch.float64)
    out = w.shape[0]
    if step_grid is not None:                                # a symmetric grid of ≤ 8 bits: q − Z fits int8
        codes, scale, zero = step_grid
        if scale.numel() in (1, out):
            q = (codes - zero[:, None]).reshape(w.shape).numpy()
            if q.min() >= -128 and q.max() <= 127:
                return q.astype(np.int8), scale.double().expand(out).numpy().copy(), "lc grid"
    s = w.reshape(out, -1).abs().amax(1).clamp(min=1e-12) / 127
    q = torch.round(w / s.reshape(-1, *[1] * (w.dim() - 1))).clamp(-127, 127)
    return q.numpy().astype(np.int8), s.numpy(), "rounded"


def convert(model: nn.Module, compressed, calibration: torch.Tensor, *, output_bits: int = 16) -> "IntegerNet":
    """The integer-only network of ``model`` holding Δ(Θ) of ``compressed`` (``lc.Compressed.none()`` for a float
    model), with activation scales calibrated on the batch ``calibration``."""
    from . import Context, apply_deltas, fold_batch_norms
    compressed = Compressed.of(compressed)
    net = fold_batch_norms(apply_deltas(copy.deepcopy(model), Context(compressed)), None).eval()
    grids = {}
    for task, state in zip(compressed.tasks, compressed.states):
        single = task.step.single()
        if single is not None and isinstance(single[1], AffineQuantization) and len(task.param_names) == 1 \
                and single[1].symmetric and single[1].bits <= 8:
            grids[task.param_names[0].rpartition(".")[0]] = grid(state)
    names = {m: n for n, m in net.named_modules()}
    chain = _chain(net)
    layers, x = [], calibration.detach().to(torch.float32)
    s_in = float(x.abs().max()) / 127 or 1.0
    input_scale, s = s_in, s_in
    with torch.no_grad():
        for i, m in enumerate(chain):
            y = m(x)
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                relu = i + 1 < len(chain) and isinstance(chain[i + 1], nn.ReLU)
                last = all(not isinstance(n, (nn.Linear, nn.Conv2d)) for n in chain[i + 1:])
                out = torch.relu(y) if relu else y
                top = (1 << (output_bits - 1)) - 1 if last else 127
                s_out = float(out.abs().max()) / top or 1.0
                q, sw, source = _weights(m, grids.get(names[m]))
                b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(q.shape[0])
                pairs = [fixed_point(s * float(w) / s_out) for w in sw]
                layer = Layer("linear" if isinstance(m, nn.Linear) else "conv", q,
                              np.round(b / (s * sw)).astype(np.int64), np.array([p[0] for p in pairs]),
                              np.array([p[1] for p in pairs]), 0 if relu else -top - 1, top, s_out, source)
                if isinstance(m, nn.Conv2d):
                    layer.params = {"stride": m.stride, "padding": m.padding}
                layers.append(layer)
                s = s_out
            elif isinstance(m, nn.MaxPool2d):
                k, st = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
                if _pair(m.padding) != (0, 0) or _pair(m.dilation) != (1, 1) or m.ceil_mode:
                    raise CompressionError(f"integer-only MaxPool2d needs padding 0, dilation 1, floor mode: {m}")
                layers.append(Layer("maxpool", params={"kernel": k, "stride": st}))
            elif isinstance(m, nn.Flatten):
                layers.append(Layer("flatten"))
            x = y                                            # ReLU: folded into the layer before (its clamp)
    return IntegerNet(layers, input_scale, tuple(calibration.shape[1:]))


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class IntegerNet:
    """The integer-only network: ``quantize_input(x)`` (the only float operation: a device's sensors would give
    integers), ``run(q)`` (int8 input → the last layer's integer output, exact), ``dequantize(out)``, and
    ``c_source()`` / ``compile(directory)`` (:mod:`lc.export.cgen`)."""

    def __init__(self, layers: list[Layer], input_scale: float, input_shape: tuple):
        self.layers, self.input_scale, self.input_shape = layers, input_scale, input_shape

    @property
    def output_scale(self) -> float:
        return [layer for layer in self.layers if layer.weight is not None][-1].scale

    def quantize_input(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.clip(np.round(x / self.input_scale), -127, 127).astype(np.int8)

    def dequantize(self, out: np.ndarray) -> np.ndarray:
        return out.astype(np.float64) * self.output_scale

    def run(self, q: np.ndarray) -> np.ndarray:
        """The integer forward pass of int8 inputs (batch first): int32 outputs of the last layer, exactly as the C
        code computes them."""
        a = np.asarray(q).astype(np.int64)
        for layer in self.layers:
            if layer.kind == "flatten":
                a = a.reshape(a.shape[0], -1)
            elif layer.kind == "maxpool":
                a = _maxpool(a, layer.params["kernel"], layer.params["stride"])
            else:
                acc = _conv(a, layer) if layer.kind == "conv" else a @ layer.weight.astype(np.int64).T
                shape = (1, -1) + (1, 1) * (layer.kind == "conv")
                acc = acc + layer.bias.reshape(shape)
                if np.abs(acc).max(initial=0) > INT32_MAX:
                    raise CompressionError("an int32 accumulator overflows: the layer is too wide for int8 × int8 "
                                           "sums in int32")
                y = requantize(acc, layer.m0.reshape(shape), layer.shift.reshape(shape))
                a = np.clip(y, layer.lo, layer.hi)
        return a.astype(np.int32)

    def code_bytes(self) -> int:
        """Bytes of the constants the C code holds (weights int8, biases and multipliers int32, shifts int8)."""
        return sum(layer.weight.size + 4 * layer.bias.size + 4 * layer.m0.size + layer.shift.size
                   for layer in self.layers if layer.weight is not None)

    def c_source(self, name: str = "lc_net") -> str:
        from .cgen import c_source
        return c_source(self, name)


def _conv(a: np.ndarray, layer: Layer) -> np.ndarray:
    """Integer convolution (batch, C, H, W) * (O, C, kh, kw), stride and zero padding; int64 sums."""
    (sh, sw), (ph, pw) = layer.params["stride"], layer.params["padding"]
    w = layer.weight.astype(np.int64)
    o, c, kh, kw = w.shape
    a = np.pad(a, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    h_out, w_out = (a.shape[2] - kh) // sh + 1, (a.shape[3] - kw) // sw + 1
    cols = np.empty((a.shape[0], c, kh, kw, h_out, w_out), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = a[:, :, i:i + sh * h_out:sh, j:j + sw * w_out:sw]
    return np.einsum("bcijhw,ocij->bohw", cols, w)


def _maxpool(a: np.ndarray, k, s) -> np.ndarray:
    h_out, w_out = (a.shape[2] - k[0]) // s[0] + 1, (a.shape[3] - k[1]) // s[1] + 1
    out = np.full(a.shape[:2] + (h_out, w_out), np.iinfo(np.int64).min, dtype=np.int64)
    for i in range(k[0]):
        for j in range(k[1]):
            out = np.maximum(out, a[:, :, i:i + s[0] * h_out:s[0], j:j + s[1] * w_out:s[1]])
    return out
