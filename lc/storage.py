"""Compact artifacts: ``lc.save(path, model, compressed)`` writes one file holding the compressed model,
``lc.load(path, model)`` restores Δ(Θ) bit-exactly into a model of the same architecture.

The file (no pickle: loading parses JSON and raw little-endian numbers, and can run no code)::

    8 bytes    magic  b"LCART\\x00\\x01\\x00"  (format version 1)
    8 bytes    n, the length of the header, little-endian unsigned
    n bytes    the JSON header (UTF-8), zlib-compressed (level 9): the architecture fingerprint (every state_dict entry: name, shape, dtype),
               the tasks (parameter names, views and compressions by class name and dataclass fields), each
               state's meta, bits and tensors (encoding, dtype, shape, offset and length in the payload), the
               uncompressed tensors (name, dtype, shape, offset, length), and the aliases (names tied to a
               compressed parameter, e.g. shared weights: stored once, restored as Δ(Θ))
    payload    each state tensor packed per its ``meta["encoding"]`` (:mod:`lc._packing`), each part of an
               additive combination in its own form, then every other parameter and buffer in its own dtype
    32 bytes   SHA-256 of everything before it

Size: realised bytes = Σ ⌈bits of each stream / 8⌉ + n + 48, where the streams' bits sum to the nominal bits of
:func:`nominal_bits`. So realised ≤ nominal/8 + (number of streams) + n + 48. The compressed header n is a few
hundred bytes plus some 20–60 bytes per stored tensor (``docs/artifacts.md`` has measured values); the stated
bound, checked by the tests for every compression, is ``realised ≤ nominal/8 · 1.02 + 512 + 128 · tensors``
(:func:`size_bound`), where ``tensors`` counts every stored stream (state tensors and uncompressed entries).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from . import _packing
from ._errors import CompressionError
from ._io import write_atomic
from ._tasks import Task, Viewed, build_tasks, c_step, model_ratio
from .compression._base import Compression, State
from .compression import additive
from .params import View

__all__ = ["Compressed", "save", "load", "nominal_bits"]

MAGIC = b"LCART\x00\x01\x00"
_FIXED = len(MAGIC) + 8 + 32                      # magic, header length, checksum
_MAX_HEADER = 1 << 28                             # a header never inflates past 256 MiB (no zip bombs)


@dataclass(frozen=True, eq=False)
class Compressed:
    """Θ of a model: its tasks (which parameters, compressed how) and one state per task.

    ``Compressed.of(algorithm)`` takes them from an :class:`lc.Algorithm` after ``run()``;
    ``Compressed.direct(model, compression_tasks)`` is the direct compression Θ = Π(w) without training;
    :func:`lc.load` returns one."""

    tasks: tuple[Task, ...]
    states: tuple[State, ...]

    @classmethod
    def of(cls, source) -> "Compressed":
        if isinstance(source, Compressed):
            return source
        tasks, states = getattr(source, "tasks", None), getattr(source, "states", None)
        if tasks is None or states is None:
            raise CompressionError(f"expected an lc.Algorithm or an lc.Compressed, got {type(source).__name__}")
        if any(s is None for s in states):
            raise CompressionError("the algorithm has not run a C step yet: call algorithm.run() first")
        return cls(tuple(tasks), tuple(states))

    @classmethod
    def direct(cls, model: torch.nn.Module, compression_tasks: Mapping, mu: float = 1.0,
               example_input=None) -> "Compressed":
        """Θ = Π(w): the C steps on the model's current weights (λ = 0), tasks sharing a budget solved together,
        as the first step of :class:`lc.Algorithm`. ``mu`` matters to penalty forms only (their threshold depends
        on it); ``example_input`` as in :class:`lc.Algorithm` (for FLOPs-based rank selection)."""
        tasks = build_tasks(model, compression_tasks, example_input)
        states = c_step(tasks, [[p.detach() for p in t.params] for t in tasks], mu, [None] * len(tasks))
        return cls(tuple(tasks), tuple(states))

    def deltas(self) -> dict[str, torch.Tensor]:
        """Δ(Θ) by parameter name."""
        return {n: d for t, s in zip(self.tasks, self.states) for n, d in zip(t.param_names, t.c.decompress(s))}

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        """Copy Δ(Θ) into the parameters of ``model`` of the same names; returns ``model``."""
        named = dict(model.named_parameters())
        deltas = self.deltas()
        missing = [n for n in deltas if n not in named or named[n].shape != deltas[n].shape]
        if missing:
            raise CompressionError(f"the model has no parameter of the compressed shape for {missing[:5]}")
        with torch.no_grad():
            for n, d in deltas.items():
                named[n].copy_(d)
        return model

    @property
    def bits(self) -> int:
        return sum(s.bits for s in self.states)

    def ratio(self, model: torch.nn.Module) -> float:
        """Nominal compression ratio of the whole ``model``, as in the LC history (every parameter counted)."""
        return model_ratio(model, self.tasks, self.bits)


def nominal_bits(model: torch.nn.Module, compressed) -> int:
    """Nominal storage of the whole model: the states' bits, plus every other state_dict entry (parameters and
    buffers) at its dtype's width (32 bits a float32 value). The artifact's payload is exactly this, rounded up to
    whole bytes per stream."""
    compressed = Compressed.of(compressed)
    return compressed.bits + sum(t.numel() * t.element_size() * 8 for t in _uncompressed(model, compressed).values())


def _aliases(model: torch.nn.Module, compressed: Compressed) -> dict[str, str]:
    """state_dict names that are the same tensor as a compressed parameter (tied weights): {name: that name}."""
    done = {n for t in compressed.tasks for n in t.param_names}
    owner = {(p.data_ptr(), tuple(p.shape), p.stride()): n for t in compressed.tasks
             for n, p in zip(t.param_names, t.params)}
    return {n: owner[(t.data_ptr(), tuple(t.shape), t.stride())] for n, t in model.state_dict().items()
            if n not in done and (t.data_ptr(), tuple(t.shape), t.stride()) in owner}


def _uncompressed(model: torch.nn.Module, compressed: Compressed) -> dict[str, torch.Tensor]:
    """The state_dict entries stored as they are: neither compressed nor tied to a compressed parameter."""
    skip = {n for t in compressed.tasks for n in t.param_names} | set(_aliases(model, compressed))
    return {n: t for n, t in model.state_dict().items() if n not in skip}


# --------------------------------------------------------------------------------------------- classes by name
def _class_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _known_classes() -> dict[str, type]:
    """The classes a header may name, by module-qualified name: every imported subclass of Compression and View,
    and the dataclasses that ``lc`` exports (e.g. a budget shared by compressions). Loading constructs only these,
    with JSON values as dataclass fields, never an arbitrary class."""
    import lc
    out, todo = {}, [Compression, View]
    while todo:
        c = todo.pop()
        out[_class_name(c)] = c
        todo.extend(c.__subclasses__())
    for name in lc.__all__:
        obj = getattr(lc, name, None)
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            out[_class_name(obj)] = obj
    return out


def _plain(value, where: str):
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [_plain(v, where) for v in value]}
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"object": _object_spec(value)}
    raise CompressionError(f"{where} = {value!r} cannot be stored in an artifact: dataclass fields of views and "
                           "compressions must be numbers, strings, booleans, None, lists/tuples of them, or "
                           "dataclasses exported by lc")


def _unplain(value, known):
    if isinstance(value, dict):
        if "object" in value:
            return _object(value["object"], known)
        return tuple(_unplain(v, known) for v in value["tuple"])
    if isinstance(value, list):
        return [_unplain(v, known) for v in value]
    return value


def _object_spec(obj) -> dict:
    if not dataclasses.is_dataclass(obj):
        raise CompressionError(f"{obj!r} is not a dataclass; views and compressions must be frozen dataclasses to "
                               "be stored in an artifact")
    if _class_name(type(obj)) not in _known_classes():
        raise CompressionError(f"{obj!r} cannot be stored in an artifact: lc.load rebuilds only views, "
                               "compressions and the dataclasses that lc exports")
    return {"class": _class_name(type(obj)),
            "fields": {f.name: _plain(getattr(obj, f.name), f"{type(obj).__name__}.{f.name}")
                       for f in dataclasses.fields(obj) if f.init}}     # what the constructor takes


def _object(spec, known) -> object:
    cls = known.get(spec["class"])
    if cls is None:
        raise CompressionError(f"the artifact uses {spec['class']}, which is not an lc view or compression known "
                               "to this process (import the module that defines it before lc.load)")
    if not dataclasses.is_dataclass(cls):
        raise CompressionError(f"the artifact names {spec['class']}, which is not a dataclass")
    try:
        return cls(**{k: _unplain(v, known) for k, v in spec["fields"].items()})
    except (TypeError, ValueError) as e:
        raise CompressionError(f"cannot rebuild {spec['class']} from the artifact's fields {spec['fields']}: {e}")


def _combinations() -> dict[str, type]:
    """The C steps that combine the pairs of one task (additive combinations), by name."""
    return {_class_name(c): c for c in (getattr(additive, n) for n in additive.__all__)
            if isinstance(c, type) and dataclasses.is_dataclass(c) and "parts" in {f.name for f in
                                                                                 dataclasses.fields(c)}}


def _c_spec(c) -> dict:
    """A task's C step: a (view, compression) pair, or a combination (its class, fields, and parts)."""
    if isinstance(c, Viewed):
        return {"view": _object_spec(c.view), "compression": _object_spec(c.compression)}
    if _class_name(type(c)) not in _combinations():
        raise CompressionError(f"a task's C step of type {type(c).__name__} cannot be stored in an artifact")
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.init and f.name != "parts"}
    return {"combination": _class_name(type(c)),
            "fields": {k: _plain(v, f"{type(c).__name__}.{k}") for k, v in fields.items()},
            "parts": [_c_spec(p) for p in c.parts]}


def _c_from_spec(spec, shapes, known):
    if "combination" in spec:
        cls = _combinations().get(spec["combination"])
        if cls is None:
            raise CompressionError(f"the artifact combines parts with {spec['combination']}, which this version of "
                                   "lc does not have")
        return cls(tuple(_c_from_spec(p, shapes, known) for p in spec["parts"]),
                   **{k: _unplain(v, known) for k, v in spec["fields"].items()})
    view, compression = _object(spec["view"], known), _object(spec["compression"], known)
    if not isinstance(view, View) or not isinstance(compression, Compression):
        raise CompressionError(f"the artifact's task pairs {spec['view']['class']} with "
                               f"{spec['compression']['class']}: not a (View, Compression) pair")
    return Viewed(view, compression, shapes)


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
    if path.exists() and not overwrite:
        raise CompressionError(f"{path} exists; pass overwrite=True to replace it, or choose another path")
    params = dict(model.named_parameters())
    for t in compressed.tasks:
        for n, p in zip(t.param_names, t.params):
            if n not in params or params[n].shape != p.shape:
                raise CompressionError(f"task {t.name!r} compresses {n!r} of shape {list(p.shape)}, which is not a "
                                       "parameter of the model given to lc.save; pass the model that was compressed")
    payload = _Payload()
    tasks = [{"name": t.name, "params": list(t.param_names), "c": _c_spec(t.c),
              "state": _state_spec(s, payload, f"task {t.name!r}")}
             for t, s in zip(compressed.tasks, compressed.states)]
    dense = [{"name": n, "dtype": str(t.dtype), "shape": list(t.shape), **payload.add(_packing.tensor_bytes(t))}
             for n, t in _uncompressed(model, compressed).items()]
    header = json.dumps({"format": "lc-artifact", "version": 1, "fingerprint": fingerprint(model),
                         "tasks": tasks, "dense": dense, "aliases": _aliases(model, compressed),
                         "payload": payload.size},
                        separators=(",", ":")).encode()
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
        if header.get("format") != "lc-artifact" or header.get("version") != 1:
            raise ValueError("unknown format or version")
    except (ValueError, UnicodeDecodeError, zlib.error) as e:
        raise CompressionError(f"{path}: unreadable header ({e}); it was written by another version of lc") from None
    payload = memoryview(data)[start + n:-32]
    if len(payload) != header["payload"]:
        raise CompressionError(f"{path}: the payload holds {len(payload)} bytes, the header says "
                               f"{header['payload']}: the artifact is damaged")
    return header, payload


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


def _load_state(spec: dict, payload: memoryview) -> State:
    tensors = {}
    for t in spec["tensors"]:
        end = t["offset"] + t["nbytes"]
        if t["offset"] < 0 or end > len(payload):
            raise CompressionError(f"tensor {t['name']!r} lies outside the payload: the artifact is damaged")
        tensors[t["name"]] = _packing.decode(bytes(payload[t["offset"]:end]), t["encoding"], t["info"],
                                             spec["meta"], _packing.dtype_from_name(t["dtype"]), t["shape"])
    return State(tensors, spec["meta"], int(spec["bits"]), tuple(_load_state(p, payload) for p in spec["parts"]))


def load(path, model: torch.nn.Module) -> Compressed:
    """Restore a file written by :func:`save` into ``model`` (same architecture): Δ(Θ) into the compressed
    parameters, bit-exactly as the loop computed it, and every other parameter and buffer as saved. Returns the
    :class:`Compressed` (tasks bound to ``model``'s parameters, and their states), e.g. for :func:`lc.export`.

    Everything is decoded and checked first (checksum, architecture, shapes, compressions' hyperparameters,
    decompression); the model is touched only if all of it succeeds. Any problem is a :class:`CompressionError`."""
    path = Path(path)
    header, payload = _read(path)
    named, known, values = dict(model.named_parameters()), _known_classes(), {}
    tasks, states = [], []
    try:
        _check_architecture(header, model, path)
        for spec in header["tasks"]:
            names = tuple(spec["params"])
            if not all(n in named for n in names):
                raise CompressionError(f"task {spec['name']!r} compresses {list(names)}, which are not all "
                                       "parameters of the model")
            c = _c_from_spec(spec["c"], tuple(named[n].shape for n in names), known)
            c.check()
            state = _load_state(spec["state"], payload)
            deltas = c.decompress(state)
            for n, d in zip(names, deltas):
                if d.shape != named[n].shape or d.dtype != named[n].dtype:
                    raise CompressionError(f"{n}: decompresses to {d.dtype}{list(d.shape)}, the model holds "
                                           f"{named[n].dtype}{list(named[n].shape)}")
                values[n] = d
            tasks.append(Task(spec["name"], names, tuple(named[n] for n in names), c))
            states.append(state)
        for d in header["dense"]:
            end = d["offset"] + d["nbytes"]
            if end > len(payload):
                raise CompressionError(f"{d['name']} lies outside the payload: the artifact is damaged")
            values[d["name"]] = _packing.tensor_from_bytes(bytes(payload[d["offset"]:end]),
                                                           _packing.dtype_from_name(d["dtype"]), d["shape"])
        for name, same in header["aliases"].items():                 # tied to a compressed parameter
            values[name] = values[same]
    except CompressionError as e:
        raise (e if str(e).startswith(str(path)) else CompressionError(f"{path}: {e}")) from None
    except (KeyError, TypeError, IndexError, RuntimeError, ValueError) as e:
        raise CompressionError(f"{path}: the artifact cannot be decoded ({type(e).__name__}: {e}); it is damaged "
                               "or was written by another version of lc") from None
    target = model.state_dict()
    missing = [n for n in target if n not in values]
    if missing:
        raise CompressionError(f"{path} holds no value for {missing[:5]}: the artifact is incomplete")
    with torch.no_grad():
        for n, v in values.items():
            target[n].copy_(v)
    return Compressed(tuple(tasks), tuple(states))


def artifact_bytes(path) -> int:
    """Realised size: the bytes of the file."""
    return os.path.getsize(path)


def realised_ratio(model: torch.nn.Module, file_bytes: int) -> float:
    """The compression ratio of an artifact as it lies on disk: every parameter of ``model`` as float32 (4 bytes),
    over ``file_bytes`` (what :func:`save` returned, or :func:`artifact_bytes`)."""
    return 4 * sum(p.numel() for p in model.parameters()) / file_bytes


def _count_streams(compressed: Compressed, model: torch.nn.Module) -> int:
    def count(s: State) -> int:
        return len(s.tensors) + sum(count(p) for p in s.parts)
    return sum(count(s) for s in compressed.states) + len(_uncompressed(model, compressed))


def size_bound(model: torch.nn.Module, compressed) -> int:
    """The stated bound on the artifact's bytes: nominal/8 · 1.02 + 512 + 128 per stored tensor."""
    compressed = Compressed.of(compressed)
    return math.floor(nominal_bits(model, compressed) / 8 * 1.02) + 512 + 128 * _count_streams(compressed, model)
