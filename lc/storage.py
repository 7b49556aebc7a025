"""Compact artifacts: ``lc.save(path, model, compressed)`` writes one file holding the compressed model,
``lc.load(path, model)`` restores Δ(Θ) bit-exactly into a model of the same architecture.

The file (no pickle: loading parses JSON and raw little-endian numbers, and can run no code)::

    8 bytes    magic  b"LCART\\x00\\x01\\x00"
    8 bytes    n, the length of the header, little-endian unsigned
    n bytes    the JSON header (UTF-8), zlib-compressed (level 9): the architecture fingerprint (every state_dict
               entry: name, shape, dtype), the tasks (parameter names, their step as a spec of :mod:`lc._codec`:
               views, compressions and shared budgets by registered class name and dataclass fields), each
               state's meta, bits and tensors (encoding, dtype, shape, offset and length in the payload), the
               uncompressed tensors (name, dtype, shape, offset, length), and the aliases (names tied to a
               compressed parameter, e.g. shared weights: stored once, restored as Δ(Θ))
    payload    each state tensor packed per its ``meta["encoding"]`` (:mod:`lc._packing`), each part of an
               additive combination in its own form, then every other parameter and buffer in its own dtype
    32 bytes   SHA-256 of everything before it

Header version 2 (this one) stores each task's step; version 1 (lc before the step interface) is still read.

Size: realised bytes = Σ ⌈bits of each stream / 8⌉ + n + 48, where the streams' bits sum to the nominal bits of
:func:`lc.nominal_bits`. So realised ≤ nominal/8 + (number of streams) + n + 48. The compressed header n is a few
hundred bytes plus some 20–60 bytes per stored tensor (``docs/artifacts.md`` has measured values); the stated
bound, checked by the tests for every compression, is ``realised ≤ nominal/8 · 1.02 + 512 + 128 · tensors``
(:func:`lc.compressed.size_bound`), where ``tensors`` counts every stored stream.

Reading trusts nothing in the file: every size the header claims is bounded by the model and the payload before
anything is allocated, and every value is decoded and checked against the model before the model is touched.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from pathlib import Path

import torch

from . import _packing
from ._codec import decode_all, encode_all
from ._errors import CompressionError
from ._io import write_atomic
from ._tasks import Task
from .compressed import (Compressed, aliases, artifact_bytes, model_ratio, nominal_bits, realised_ratio,  # noqa: F401
                         size_bound, uncompressed)
from .compression._base import State

__all__ = ["save", "load", "MAGIC"]

MAGIC = b"LCART\x00\x01\x00"
VERSION = 2
_FIXED = len(MAGIC) + 8 + 32                      # magic, header length, checksum
_MAX_HEADER = 1 << 28                             # a header never inflates past 256 MiB (no zip bombs)
_MAX_DIMS = 8


# --------------------------------------------------------------------------------------------- writing
class _Payload:
    def __init__(self):
        self.chunks, self.size = [], 0

    def add(self, data: bytes) -> dict:
        entry = {"offset": self.size, "nbytes": len(data)}
        self.chunks.append(data)
        self.size += len(data)
        return entry


def _state_spec(state: State, payload: _Payload, where: str) -> dict:
    encoding = dict(state.meta.get("encoding", {}))
    missing = [k for k in state.tensors if k not in encoding]
    if missing:
        raise CompressionError(f"{where}: the state has tensors {missing} with no meta['encoding'] entry; every "
                               "state tensor must declare how it is stored (see lc.State)")
    tensors = []
    for name, t in state.tensors.items():
        data, info = _packing.encode(t, encoding[name], state.meta)
        tensors.append({"name": name, "encoding": encoding[name], "dtype": str(t.dtype), "shape": list(t.shape),
                        "info": info, **payload.add(data)})
    try:
        meta = json.loads(json.dumps(state.meta, allow_nan=True))
    except (TypeError, ValueError) as e:
        raise CompressionError(f"{where}: the state's meta is not JSON-able ({e})") from None
    return {"meta": meta, "bits": int(state.bits), "tensors": tensors,
            "parts": [_state_spec(p, payload, f"{where} part {k}") for k, p in enumerate(state.parts)]}


def fingerprint(model: torch.nn.Module) -> list:
    """Every state_dict entry of the model: ``[name, shape, dtype]``."""
    return [[n, list(t.shape), str(t.dtype)] for n, t in model.state_dict().items()]


def save(path, model: torch.nn.Module, compressed, *, overwrite: bool = False) -> int:
    """Write the compressed model to ``path`` (one file; see the module docstring for the format): Θ of every task
    (``compressed``: an :class:`lc.Algorithm` after ``run()``, or an :class:`lc.Compressed`) and every other
    parameter and buffer of ``model``. Refuses to replace an existing file unless ``overwrite=True``; the file
    appears atomically (written aside, then renamed). Returns the number of bytes written."""
    compressed = Compressed.of(compressed)
    path = Path(path)
    if path.is_dir():
        raise CompressionError(f"{path} is a directory: give lc.save a file name (e.g. {path / 'model.lc'})")
    if path.exists() and not overwrite:
        raise CompressionError(f"{path} exists; pass overwrite=True to replace it, or choose another path")
    params = dict(model.named_parameters())
    for t in compressed.tasks:
        for n, p in zip(t.param_names, t.params):
            if n not in params or params[n].shape != p.shape:
                raise CompressionError(f"task {t.name!r} compresses {n!r} of shape {list(p.shape)}, which is not a "
                                       "parameter of the model given to lc.save; pass the model that was compressed")
    payload = _Payload()
    steps = encode_all([t.step for t in compressed.tasks], [f"task {t.name!r}" for t in compressed.tasks])
    tasks = [{"name": t.name, "params": list(t.param_names), "step": step,
              "state": _state_spec(s, payload, f"task {t.name!r}")}
             for t, s, step in zip(compressed.tasks, compressed.states, steps)]
    dense = [{"name": n, "dtype": str(t.dtype), "shape": list(t.shape), **payload.add(_packing.tensor_bytes(t))}
             for n, t in uncompressed(model, compressed).items()]
    header = json.dumps({"format": "lc-artifact", "version": VERSION, "fingerprint": fingerprint(model),
                         "tasks": tasks, "dense": dense, "aliases": aliases(model, compressed),
                         "payload": payload.size}, separators=(",", ":")).encode()
    header = zlib.compress(header, 9)
    head = MAGIC + struct.pack("<Q", len(header)) + header
    digest = hashlib.sha256(head)
    for c in payload.chunks:
        digest.update(c)

    def write(f):
        f.write(head)
        for c in payload.chunks:
            f.write(c)
        f.write(digest.digest())

    write_atomic(path, write, what="the artifact")
    return len(head) + payload.size + 32


# --------------------------------------------------------------------------------------------- reading
def _read(path: Path) -> tuple[dict, memoryview]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CompressionError(f"cannot read the artifact {path}: {e}") from None
    if len(data) < _FIXED or data[:len(MAGIC)] != MAGIC:
        raise CompressionError(f"{path} is not an lc artifact (written by lc.save) or is truncated")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise CompressionError(f"{path} is damaged or truncated: its SHA-256 checksum does not match; write it "
                               "again with lc.save")
    (n,) = struct.unpack("<Q", data[len(MAGIC):len(MAGIC) + 8])
    start = len(MAGIC) + 8
    try:
        if start + n > len(data) - 32:
            raise ValueError("the header runs past the end of the file")
        inflate = zlib.decompressobj()
        text = inflate.decompress(data[start:start + n], _MAX_HEADER)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError(f"the header inflates past {_MAX_HEADER} bytes or is cut short")
        header = json.loads(text.decode())
    except (ValueError, UnicodeDecodeError, zlib.error, RecursionError) as e:
        raise CompressionError(f"{path}: unreadable header ({e}); it was written by another version of lc") from None
    _check_header(header, path)
    payload = memoryview(data)[start + n:-32]
    if len(payload) != header["payload"]:
        raise CompressionError(f"{path}: the payload holds {len(payload)} bytes, the header says "
                               f"{header['payload']}: the artifact is damaged")
    return header, payload


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise CompressionError(f"the header's {what}: the artifact is damaged or was not written by lc.save")


def _check_header(header, path) -> None:
    """The header's shape: what every later step may rely on without checking again."""
    _need(isinstance(header, dict), "top level is not an object")
    _need(header.get("format") == "lc-artifact" and header.get("version") in (1, VERSION),
          f"format/version is {header.get('format')!r}/{header.get('version')!r}, not lc-artifact 1 or {VERSION}")
    _need(isinstance(header.get("payload"), int) and not isinstance(header.get("payload"), bool), "'payload' size")
    for key in ("fingerprint", "tasks", "dense"):
        _need(isinstance(header.get(key), list), f"'{key}' is not a list")
    _need(isinstance(header.get("aliases"), dict), "'aliases' is not an object")
    _need(all(isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and _is_shape(e[1])
              and isinstance(e[2], str) for e in header["fingerprint"]), "'fingerprint' entries")
    for t in header["tasks"]:
        _need(isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("params"), list)
              and all(isinstance(p, str) for p in t["params"]) and t["params"]
              and isinstance(t.get("state"), dict) and ("step" in t or "c" in t), "task entries")
    for d in header["dense"]:
        _need(isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("dtype"), str)
              and _is_shape(d.get("shape")) and _is_span(d), "dense entries")
    _need(all(isinstance(k, str) and isinstance(v, str) for k, v in header["aliases"].items()), "aliases")


def _is_shape(s) -> bool:
    return isinstance(s, list) and len(s) <= _MAX_DIMS and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)


def _is_span(entry: dict) -> bool:
    return all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool) and entry[k] >= 0
               for k in ("offset", "nbytes"))


def _check_architecture(header: dict, model: torch.nn.Module, path) -> None:
    stored = {n: (s, d) for n, s, d in header["fingerprint"]}
    ours = {n: (s, d) for n, s, d in fingerprint(model)}
    problems = [f"missing in the model: {n}" for n in stored if n not in ours]
    problems += [f"not in the artifact: {n}" for n in ours if n not in stored]
    problems += [f"{n}: artifact {stored[n][1]}{stored[n][0]}, model {ours[n][1]}{ours[n][0]}"
                 for n in stored if n in ours and stored[n] != ours[n]]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise CompressionError(f"{path} was saved from a different architecture: {shown}. Load it into a model "
                               "built like the one that was saved")


def _slice(entry: dict, payload: memoryview, what: str) -> bytes:
    end = entry["offset"] + entry["nbytes"]
    if end > len(payload):
        raise CompressionError(f"{what} lies outside the payload: the artifact is damaged")
    return bytes(payload[entry["offset"]:end])


def _load_state(spec, payload: memoryview, limit: int, where: str) -> State:
    """A state from its header entry. ``limit`` bounds the elements of any of its tensors (and of the flat tensor
    that positions index): no lc compression stores more values than the task's weights, so a larger claim is a
    crafted or damaged file, refused before anything is allocated."""
    _need(isinstance(spec, dict) and isinstance(spec.get("meta"), dict) and isinstance(spec.get("tensors"), list)
          and isinstance(spec.get("parts"), list) and isinstance(spec.get("bits"), int), f"state of {where}")
    tensors = {}
    for t in spec["tensors"]:
        _need(isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("encoding"), str)
              and isinstance(t.get("dtype"), str) and _is_shape(t.get("shape")) and _is_span(t)
              and isinstance(t.get("info"), dict), f"tensor entries of {where}")
        claimed = [math.prod(t["shape"])] + [v for k, v in t["info"].items() if k in ("n", "count", "codes")]
        if any(not isinstance(c, int) or c < 0 or c > limit for c in claimed):
            raise CompressionError(f"{where}: tensor {t['name']!r} claims {max(map(int, claimed))} values, more "
                                   f"than the {limit} its task can hold: the artifact is damaged or crafted")
        tensors[t["name"]] = _packing.decode(_slice(t, payload, f"tensor {t['name']!r}"), t["encoding"], t["info"],
                                             spec["meta"], _packing.dtype_from_name(t["dtype"]), t["shape"])
    return State(tensors, spec["meta"], int(spec["bits"]),
                 tuple(_load_state(p, payload, limit, f"{where} part {k}") for k, p in enumerate(spec["parts"])))


def _legacy_step(c: dict) -> dict:
    """A version-1 task spec (``"c"``: a view and a compression, or a combination of such parts) as a step spec."""
    if "combination" in c:
        return {"class": c["combination"], "fields": {**c.get("fields", {}),
                                                      "parts": {"tuple": [_legacy_step(p) for p in c["parts"]]}}}
    return {"class": "lc.Viewed", "fields": {"view": c["view"], "compression": c["compression"]}}


def _decode(header: dict, payload: memoryview, model: torch.nn.Module, path) -> tuple[dict, list, list]:
    """Every value the artifact holds for ``model``, checked against it: ({state_dict name: tensor}, tasks,
    states). Touches nothing."""
    _check_architecture(header, model, path)
    named, target = dict(model.named_parameters()), model.state_dict()
    specs = [t["step"] if "step" in t else _legacy_step(t["c"]) for t in header["tasks"]]
    for t in header["tasks"]:
        if not all(n in named for n in t["params"]):
            raise CompressionError(f"task {t['name']!r} compresses {t['params']}, which are not all parameters of "
                                   "the model")
    shapes = [tuple(named[n].shape for n in t["params"]) for t in header["tasks"]]
    steps = decode_all(specs, [{"shapes": s} for s in shapes])
    values, tasks, states = {}, [], []
    for t, step in zip(header["tasks"], steps):
        names = tuple(t["params"])
        limit = 2 * sum(named[n].numel() for n in names) + 1024
        step.check()
        state = _load_state(t["state"], payload, limit, f"task {t['name']!r}")
        task = Task(t["name"], names, tuple(named[n] for n in names), step)
        for n, d in task.deltas(state).items():
            if d.shape != named[n].shape or d.dtype != named[n].dtype:
                raise CompressionError(f"{n}: decompresses to {d.dtype}{list(d.shape)}, the model holds "
                                       f"{named[n].dtype}{list(named[n].shape)}")
            values[n] = d
        tasks.append(task)
        states.append(state)
    for d in header["dense"]:
        want = target.get(d["name"])
        if want is None or d["name"] in values or list(want.shape) != d["shape"] or str(want.dtype) != d["dtype"]:
            raise CompressionError(f"the dense entry {d['name']!r} ({d['dtype']}{d['shape']}) does not match the "
                                   "model's tensor of that name: the artifact is damaged")
        values[d["name"]] = _packing.tensor_from_bytes(_slice(d, payload, d["name"]),
                                                       _packing.dtype_from_name(d["dtype"]), d["shape"])
    for name, same in header["aliases"].items():                 # tied to a compressed parameter
        if name not in target or same not in values or name in values or target[name].shape != values[same].shape:
            raise CompressionError(f"the alias {name!r} → {same!r} does not match the model: the artifact is "
                                   "damaged")
        values[name] = values[same]
    missing = [n for n in target if n not in values]
    if missing:
        raise CompressionError(f"holds no value for {missing[:5]}: the artifact is incomplete")
    return values, tasks, states


def load(path, model: torch.nn.Module) -> Compressed:
    """Restore a file written by :func:`save` into ``model`` (same architecture): Δ(Θ) into the compressed
    parameters, bit-exactly as the loop computed it, and every other parameter and buffer as saved. Returns the
    :class:`Compressed` (tasks bound to ``model``'s parameters, and their states), e.g. for :func:`lc.export`.

    Everything is decoded and checked first (checksum, architecture, every claimed size, compressions'
    hyperparameters, decompression, shapes and dtypes); the model is touched only if all of it succeeds. Any
    problem is a :class:`CompressionError`."""
    path = Path(path)
    meta = [n for n, t in model.state_dict().items() if t.is_meta]
    if meta:
        raise CompressionError(f"the model's {meta[0]!r} (and {len(meta) - 1} more) are on the meta device and "
                               "hold no memory to load into: materialise the model first, e.g. "
                               "model.to_empty(device='cpu'), then lc.load")
    header, payload = _read(path)
    try:
        values, tasks, states = _decode(header, payload, model, path)
    except CompressionError as e:
        raise (e if str(e).startswith(str(path)) else CompressionError(f"{path}: {e}")) from None
    except (KeyError, TypeError, IndexError, RuntimeError, ValueError, AttributeError, OverflowError) as e:
        raise CompressionError(f"{path}: the artifact cannot be decoded ({type(e).__name__}: {e}); it is damaged "
                               "or was written by another version of lc") from None
    target = model.state_dict()
    with torch.no_grad():
        for n, v in values.items():
            target[n].copy_(v)
    return Compressed(tuple(tasks), tuple(states))
