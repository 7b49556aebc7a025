"""Specs: views, compressions, task-level steps and couplings as plain JSON data, and back.

Every subclass of :class:`Registered` (``lc.View``, ``lc.Compression``, the task-level steps, ``lc.RankBudget``, and
a user's own subclasses of them) is registered by name when its class is created. :func:`encode` turns such a
dataclass into ``{"class": name, "fields": {...}}``; :func:`decode` rebuilds it, and constructs nothing but
registered classes from JSON values, so a spec read from a file can run no other code.

Objects compared by identity (dataclasses with ``eq=False``, such as one ``lc.RankBudget`` shared by several
layers) are written once with an ``"id"`` and referred to by ``{"ref": id}`` afterwards, within one call of
:func:`encode_all`/:func:`decode_all`: sharing survives a save and load, and two runs that differ only in whether
layers share a budget have different specs (the checkpoint fingerprint is a hash of the specs).
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Mapping, Sequence

from ._errors import CompressionError

__all__ = ["Registered", "registry_name", "encode_all", "decode_all", "CONTEXT"]

_REGISTRY: dict[str, type] = {}
CONTEXT = "lc_context"        # field metadata key: a field given by the loader (e.g. shapes), not stored


def registry_name(cls: type) -> str:
    """``lc.Name`` for lc's own classes (stable when a class moves between lc's modules), else
    ``module.QualName``."""
    if cls.__module__ == "lc" or cls.__module__.startswith("lc."):
        return f"lc.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


class Registered:
    """Base of every class whose instances a spec may name: its subclasses register themselves by name."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[registry_name(cls)] = cls


def _lookup(name: str) -> type:
    cls = _REGISTRY.get(name)
    if cls is None and name.startswith("lc."):
        cls = _REGISTRY.get("lc." + name.rsplit(".", 1)[-1])        # written by an lc whose modules differed
    if cls is None:
        raise CompressionError(f"the spec uses {name}, which is not an lc view or compression (or step, budget) "
                               "known to this process: import the module that defines it first")
    return cls


def _by_identity(obj) -> bool:
    return type(obj).__eq__ is object.__eq__


class _Encoder:
    def __init__(self):
        self.ids: dict[int, int] = {}
        self.keep: list = []                        # keeps encoded objects alive, so their ids stay unique

    def __call__(self, value, where: str):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if isinstance(value, tuple):
            return {"tuple": [self(v, where) for v in value]}
        if isinstance(value, list):
            return [self(v, where) for v in value]
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and isinstance(value, Registered):
            return self._object(value)
        raise CompressionError(f"{where} = {value!r} cannot be stored in an artifact or checkpoint: fields of views, compressions and "
                               "steps must be numbers, strings, booleans, None, lists/tuples of them, or lc views, "
                               "compressions and budgets (subclasses of lc.View, lc.Compression, ...)")

    def _object(self, obj) -> dict:
        if _by_identity(obj) and id(obj) in self.ids:
            return {"ref": self.ids[id(obj)]}
        cls = type(obj)
        spec = {"class": registry_name(cls),
                "fields": {f.name: self(getattr(obj, f.name), f"{cls.__name__}.{f.name}")
                           for f in dataclasses.fields(obj) if f.init and not f.metadata.get(CONTEXT)}}
        if _by_identity(obj):
            spec["id"] = self.ids[id(obj)] = len(self.ids)
            self.keep.append(obj)
        return spec


class _Decoder:
    def __init__(self, context: Mapping[str, Any]):
        self.context, self.objects = context, {}

    def __call__(self, value):
        if isinstance(value, dict):
            if "ref" in value:
                if value["ref"] not in self.objects:
                    raise CompressionError(f"the spec refers to object {value['ref']!r} before defining it")
                return self.objects[value["ref"]]
            if "class" in value:
                return self._object(value)
            if set(value) == {"tuple"} and isinstance(value["tuple"], list):
                return tuple(self(v) for v in value["tuple"])
            raise CompressionError(f"the spec holds an object of unknown form {sorted(value)}")
        if isinstance(value, list):
            return [self(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value                                        # ranges are the class's check to decide
        raise CompressionError(f"the spec holds a value of type {type(value).__name__}")

    def _object(self, spec: dict):
        cls = _lookup(str(spec["class"]))
        if not dataclasses.is_dataclass(cls):
            raise CompressionError(f"the spec names {spec['class']}, which is not a dataclass")
        fields = spec.get("fields", {})
        if not isinstance(fields, dict):
            raise CompressionError(f"the fields of {spec['class']} in the spec are not a mapping")
        given = {f.name: self.context[f.name] for f in dataclasses.fields(cls)
                 if f.metadata.get(CONTEXT) and f.name in self.context}
        try:
            obj = cls(**{k: self(v) for k, v in fields.items()}, **given)
        except (TypeError, ValueError) as e:
            raise CompressionError(f"cannot rebuild {spec['class']} from the spec's fields {fields}: {e}") from None
        if "id" in spec:
            self.objects[spec["id"]] = obj
        return obj


def encode_all(objects: Sequence, where: Sequence[str] | None = None) -> list:
    """The specs of ``objects`` (registered dataclasses), sharing identity-compared objects across all of them."""
    encoder = _Encoder()
    where = where or [type(o).__name__ for o in objects]
    return [encoder(o, w) for o, w in zip(objects, where)]


def decode_all(specs: Sequence, contexts: Sequence[Mapping[str, Any]]) -> list:
    """The objects of :func:`encode_all`'s specs; ``contexts[i]`` gives the fields of the classes of spec i that
    are not stored (marked ``metadata={CONTEXT: True}``, e.g. the shapes of a task's tensors)."""
    objects = {}
    out = []
    for spec, context in zip(specs, contexts):
        decoder = _Decoder(context)
        decoder.objects = objects
        out.append(decoder(spec))
    return out
