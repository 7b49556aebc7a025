"""What the C steps share: the width of a stored value, float32 rounding, integer codes, the nearest codebook entry,
the finite check, and the sparse layout (values or codes at sorted positions of a flat tensor).

A real number is stored (``State.meta["encoding"]``) as ``"f32"`` when it is exactly representable in float32 (a
codebook entry or a scale, rounded with :func:`round_f32`): ``F32_BITS`` bits; or as ``"float"`` when it is a value
copied from w (kept weights, low-rank factors), in w's own float dtype: :func:`value_bits` of that dtype.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .._errors import CompressionError
from ._base import State
from ._coding import position_bits

__all__ = ["F32_BITS", "value_bits", "round_f32", "code_bits", "code_dtype", "nearest", "check_finite",
           "sparse_state", "scatter", "sorted_values"]

F32_BITS = 32            # one "f32" value


def value_bits(dtype: torch.dtype) -> int:
    """Bits of one value of the float ``dtype`` (16, 32 or 64): what a ``"float"`` value costs."""
    return torch.finfo(dtype).bits


def round_f32(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` rounded to float32 (how an ``"f32"`` value is stored), in ``dtype``."""
    return x.to(torch.float32).to(dtype)


def code_bits(levels: int) -> int:
    """⌈log₂ levels⌉: the bits of one code (0 when there is a single level: nothing to store)."""
    return max(levels - 1, 0).bit_length()


def code_dtype(levels: int) -> torch.dtype:
    """The smallest integer dtype that holds codes 0 … levels − 1 in memory (the artifact packs them)."""
    return torch.uint8 if levels <= 256 else torch.int32


def nearest(w: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of the sorted ``codebook`` for each weight (ties to the larger). O(N log k)."""
    return torch.bucketize(w.reshape(-1), (codebook[1:] + codebook[:-1]) / 2, right=True, out_int32=True)


def sorted_values(v: torch.Tensor) -> torch.Tensor:
    """The values of ``v`` sorted ascending along its last axis. On the CPU numpy's sort (values only) is about twice
    as fast as ``torch.sort`` (which also computes the permutation, 8 bytes a value); elsewhere ``torch.sort``."""
    if v.device.type == "cpu" and v.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(v.detach().numpy(), axis=-1))
    return torch.sort(v, dim=-1).values


def check_finite(w: torch.Tensor, who: str) -> None:
    if not bool(torch.isfinite(w).all()):
        raise CompressionError(f"{who}: the weights hold NaN or inf; quantize finite weights only")


def sparse_state(shape, indices: torch.Tensor, tensors: dict, encoding: dict, bits: int) -> State:
    """The state of a tensor of ``shape`` that is zero outside the sorted flat positions ``indices``: ``tensors``
    (what the nonzeros are, costing ``bits``) and the positions, stored as ``"positions"`` with the cheaper of a
    bitmap or a gap code (:mod:`._coding`)."""
    pos_bits, coding, width = position_bits(indices, math.prod(shape))
    return State(tensors={**tensors, "indices": indices},
                 meta={"shape": list(shape), "coding": coding, "width": width,
                       "encoding": {**encoding, "indices": "positions"}},
                 bits=bits + pos_bits)


def scatter(values: torch.Tensor, state: State) -> torch.Tensor:
    """The tensor of a :func:`sparse_state`: ``values`` at its positions, zero elsewhere."""
    shape = state.meta["shape"]
    out = values.new_zeros(math.prod(shape))
    out[state.tensors["indices"]] = values
    return out.reshape(shape)
