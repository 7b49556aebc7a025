"""Bytes for each tensor encoding of ``State.meta["encoding"]`` (see :class:`lc.State`): the artifact writer
(:mod:`lc.storage`) calls ``encode`` and ``decode`` by encoding name and knows nothing of compressions.

- ``"f32"``: the values, little-endian, in the tensor's own float dtype (float32 for float32 models, so 32 bits
  a value; another float dtype is kept as is, so that the round trip stays bit-exact);
- ``"float"``: the values, little-endian, in the tensor's own float dtype (16, 32 or 64 bits a value, as
  ``State.bits`` counts them);
- ``"uint:b"``: unsigned integer codes, b bits each, packed LSB-first (``n·b`` bits, padded to a byte);
- ``"positions"``: sorted positions in a flat tensor of ``prod(meta["shape"])`` entries, written exactly as
  :mod:`lc.compression._coding` counts them: a bitmap (one bit an entry) or fixed-width gap codes with escapes.

Each encoder returns ``(payload bytes, info)``; ``info`` (JSON-able) is what the decoder needs beyond the state's
``meta``: the number of codes, the tensor's shape and dtype. The realised size of an encoded tensor is its nominal
bits rounded up to a whole byte.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._errors import CompressionError
from .compression._coding import gaps, position_bits

__all__ = ["encode", "decode", "pack_uint", "unpack_uint", "gap_codes", "positions_from_gap_codes"]

_DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                               torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}


def dtype_from_name(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise CompressionError(f"unsupported dtype {name!r} in the artifact; it was not written by this version "
                               "of lc")
    return _DTYPES[name]


# --------------------------------------------------------------------------------------------- bit packing
def pack_uint(codes: torch.Tensor, width: int) -> bytes:
    """Codes 0 ≤ c < 2^width, ``width`` bits each, least significant bit first; ``⌈n·width/8⌉`` bytes."""
    c = codes.detach().reshape(-1).to("cpu", torch.int64)
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= 1 << width):
        raise CompressionError(f"codes range over [{int(c.min())}, {int(c.max())}], which does not fit "
                               f"uint:{width}; the state's meta['encoding'] declares the wrong width")
    shifts = torch.arange(width, dtype=torch.int64)
    bits = ((c[:, None] >> shifts) & 1).to(torch.uint8).numpy().reshape(-1)
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_uint(data: bytes, width: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_uint`: ``count`` codes as int64."""
    if len(data) != math.ceil(count * width / 8):
        raise CompressionError(f"a packed uint:{width} stream of {count} codes needs "
                               f"{math.ceil(count * width / 8)} bytes, the artifact holds {len(data)}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little", count=count * width)
    bits = torch.from_numpy(bits.astype(np.int64)).reshape(count, width)
    return (bits << torch.arange(width, dtype=torch.int64)).sum(dim=1)


# --------------------------------------------------------------------------------------------- gap codes
def gap_codes(indices: torch.Tensor, width: int) -> torch.Tensor:
    """The gap code of :mod:`lc.compression._coding`: gap g is ⌊g/M⌋ escapes M = 2^width − 1, then g mod M."""
    g = gaps(indices.reshape(-1).cpu())
    m = (1 << width) - 1
    counts = g // m + 1
    codes = torch.full((int(counts.sum()),), m, dtype=torch.int64)
    codes[torch.cumsum(counts, 0) - 1] = g % m
    return codes


def positions_from_gap_codes(codes: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of :func:`gap_codes`: an escape advances M positions, a code c advances c + 1 and marks one."""
    m = (1 << width) - 1
    final = codes != m
    advance = torch.where(final, codes + 1, codes)
    return (torch.cumsum(advance, 0) - 1)[final]


# --------------------------------------------------------------------------------------------- encodings
def _encode_float(t: torch.Tensor, meta) -> tuple[bytes, dict]:
    if not t.dtype.is_floating_point:
        raise CompressionError(f"an 'f32' or 'float' tensor must hold floats, this one has dtype {t.dtype}")
    return tensor_bytes(t), {}


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw little-endian bytes of a tensor in its own dtype."""
    t = t.detach().to("cpu").contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def tensor_from_bytes(data: bytes, dtype: torch.dtype, shape) -> torch.Tensor:
    n = math.prod(shape)
    size = torch.empty((), dtype=dtype).element_size()
    if len(data) != n * size:
        raise CompressionError(f"a {dtype} tensor of shape {list(shape)} needs {n * size} bytes, the artifact "
                               f"holds {len(data)}")
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.frombuffer(data, dtype="<i2").copy()).view(torch.bfloat16).reshape(shape)
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype.newbyteorder("<")
    return torch.from_numpy(np.frombuffer(data, dtype=np_dtype).astype(np_dtype.newbyteorder("="))).reshape(shape)


def _decode_float(data: bytes, info, meta, dtype, shape) -> torch.Tensor:
    return tensor_from_bytes(data, dtype, shape)


def _encode_uint(width: int):
    def encode(t, meta):
        if t.dtype.is_floating_point and not bool((t == t.round()).all()):
            raise CompressionError(f"a 'uint:{width}' tensor must hold integers")
        return pack_uint(t, width), {"count": t.numel()}
    return encode


def _decode_uint(width: int):
    def decode(data, info, meta, dtype, shape):
        count = int(info["count"])
        if count != math.prod(shape):
            raise CompressionError(f"uint:{width} stream holds {count} codes for a tensor of shape {list(shape)}")
        return unpack_uint(data, width, count).to(dtype).reshape(shape)
    return decode


def _position_coding(t: torch.Tensor, meta) -> tuple[str, int, int]:
    n = math.prod(meta["shape"])
    if "coding" in meta and "width" in meta:
        return meta["coding"], int(meta["width"]), n
    _, coding, width = position_bits(t.reshape(-1), n)
    return coding, width, n


def _encode_positions(t: torch.Tensor, meta) -> tuple[bytes, dict]:
    idx = t.detach().reshape(-1).to("cpu", torch.int64)
    coding, width, n = _position_coding(idx, meta)
    if idx.numel() and (int(idx[0]) < 0 or int(idx[-1]) >= n or bool((idx[1:] <= idx[:-1]).any())):
        raise CompressionError(f"'positions' must be strictly increasing in [0, {n}); this tensor is not")
    if coding == "bitmap":
        bitmap = torch.zeros(n, dtype=torch.int64)
        bitmap[idx] = 1
        return pack_uint(bitmap, 1), {"count": idx.numel(), "coding": "bitmap", "width": 1, "n": n}
    codes = gap_codes(idx, width)
    return pack_uint(codes, width), {"count": idx.numel(), "codes": codes.numel(), "coding": "gap",
                                     "width": width, "n": n}


def _decode_positions(data, info, meta, dtype, shape) -> torch.Tensor:
    n, width, count = int(info["n"]), int(info["width"]), int(info["count"])
    if info["coding"] == "bitmap":
        idx = torch.nonzero(unpack_uint(data, 1, n), as_tuple=True)[0]
    elif info["coding"] == "gap":
        idx = positions_from_gap_codes(unpack_uint(data, width, int(info["codes"])), width)
    else:
        raise CompressionError(f"unknown position coding {info['coding']!r} in the artifact")
    if idx.numel() != count or count != math.prod(shape) or (count and int(idx[-1]) >= n):
        raise CompressionError(f"the position code decodes to {idx.numel()} positions in [0, {n}), the header "
                               f"says {count} of shape {list(shape)}: the artifact is damaged")
    return idx.to(dtype).reshape(shape)


def _codec(encoding: str):
    if encoding in ("f32", "float"):
        return _encode_float, _decode_float
    if encoding == "positions":
        return _encode_positions, _decode_positions
    if encoding.startswith("uint:"):
        width = encoding[5:]
        if width.isdigit() and 0 <= int(width) <= 32:      # uint:0: every code is 0 (a one-entry codebook)
            return _encode_uint(int(width)), _decode_uint(int(width))
    raise CompressionError(f"unknown tensor encoding {encoding!r}; known: 'f32', 'float', 'uint:b' (0 ≤ b ≤ 32), "
                           "'positions' (see lc.State)")


def encode(t: torch.Tensor, encoding: str, meta) -> tuple[bytes, dict]:
    """``(payload, info)`` for tensor ``t`` of a state with ``meta``, stored as ``encoding``."""
    return _codec(encoding)[0](t, meta)


def decode(data: bytes, encoding: str, info, meta, dtype: torch.dtype, shape) -> torch.Tensor:
    """The tensor that :func:`encode` wrote, with its dtype and shape."""
    return _codec(encoding)[1](data, info, meta, dtype, shape)
