"""The interface every C step implements, and the value it returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch

from .._codec import Registered
from ._constraints import Constraint, validate

__all__ = ["Compression", "Coupling", "State"]


@dataclass(frozen=True, eq=False)
class State:
    """Θ, the result of one C step, as a value: a few tensors, a few JSON-able numbers, and its storage cost.

    ``bits`` is the nominal storage of Θ (what a compact file needs, before any fixed header).
    ``meta["encoding"]`` says how each tensor is stored, so that the artifact writer needs no knowledge of the
    compression: ``"f32"`` (values stored as float32, 32 bits each; only for values exactly representable in
    float32, such as codebooks and scales, which the C steps round to float32), ``"float"`` (values stored in the
    tensor's own float dtype and counted at its width, 16, 32 or 64 bits: values copied from w, such as the kept
    weights of pruning or low-rank factors), ``"uint:b"`` (unsigned integer codes packed at b bits each, 0 ≤ b ≤ 32;
    ``"uint:0"`` stores nothing: every code is 0, as for a one-entry codebook),
    ``"positions"`` (sorted positions in a flat tensor of ``prod(meta["shape"])`` entries, coded as
    ``meta["coding"]`` = ``"bitmap"`` or ``"gap"`` with ``meta["width"]`` bits, see ``_coding``). ``parts`` holds
    the states of the parts of an additive combination (empty otherwise). States are never mutated: a C step
    returns a new one, and the previous one may be passed back as a warm start.
    """

    tensors: Mapping[str, torch.Tensor]
    meta: Mapping[str, Any]
    bits: int
    parts: tuple["State", ...] = field(default=())

    def to_dict(self) -> dict:
        """Plain dicts, lists, numbers and tensors only: safe for ``torch.load(weights_only=True)``."""
        return {"tensors": dict(self.tensors), "meta": dict(self.meta), "bits": int(self.bits),
                "parts": [p.to_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "State":
        return cls(tensors=dict(d["tensors"]), meta=dict(d["meta"]), bits=int(d["bits"]),
                   parts=tuple(cls.from_dict(p) for p in d["parts"]))

    def to(self, device) -> "State":
        return State({k: v.to(device) for k, v in self.tensors.items()}, self.meta, self.bits,
                     tuple(p.to(device) for p in self.parts))


class Compression(Registered):
    """A C step. Subclasses are frozen dataclasses whose fields are the hyperparameters, and nothing else.

    - ``check(shape)`` raises :class:`lc.CompressionError` when the hyperparameters are impossible for an input of
      that shape (called once, before any training);
    - ``compress(w, mu, previous)`` solves the C step ``argmin_Θ αC(Θ) + μ/2 ‖w − Δ(Θ)‖²`` for the tensor ``w``
      the view produced (the loop passes ``w − λ/μ``), warm-started from ``previous`` where that helps;
    - ``decompress(state)`` returns Δ(Θ), with ``w``'s shape, dtype and device.

    Constraint forms do not depend on μ; penalty forms do, through the threshold.

    **Hyperparameters are validated by declaration.** ``constraints`` maps each field to a constraint
    (``Integer``, ``Real``, ``Boolean``, ``Options``, ``InstanceOf``, ``OrNone``, importable from
    ``lc.compression``; a range's end may be a ``Bound`` computed from the input's shape, such as ``WEIGHTS``) and
    a phrase that completes "<field> …" to say what it means. ``check(shape)`` tests every field in that order and
    raises :class:`lc.CompressionError` naming the class, the field, its value, what is allowed and what it
    means. A check that is not a field's range (the input must be a matrix, two fields exclude each other) goes in
    an override of ``check`` that calls ``super().check(shape)``. A compression of your own does the same::

        from lc.compression import WEIGHTS, Integer, Real

        @dataclass(frozen=True)
        class KeepLargest(lc.Compression):
            count: int
            scale: float = 1.0
            constraints = {"count": (Integer(0, WEIGHTS), "is the number of weights to keep"),
                           "scale": (Real(0, closed="neither"), "multiplies the weights kept")}

    ``KeepLargest(count=11).check(torch.Size([10]))`` then raises "KeepLargest(count=11) on a tensor of shape
    (10,): count must be an integer between 0 and 10, the number of weights; count is the number of weights to
    keep". An integer field accepts any ``numbers.Integral`` (a numpy integer too, never a bool): cast it with
    ``int()`` where the C step uses it.

    Two optional hooks, for the few compressions that need more than one tensor:

    - ``bind(context)`` is called once per task when ``lc.Algorithm`` is built; a compression whose C step needs
      facts about its layer beyond the tensor returns a copy that holds them (``RankSelection(criterion="flops")``
      asks ``context.output_positions(...)``, see ``lc._tasks.Context``); the default returns ``self``;
    - ``coupling``: a :class:`Coupling` shared with other tasks' compressions whose C steps must be solved
      together (an ``lc.RankBudget``); the loop then calls ``coupling.compress(compressions, ws, mu, previous)``
      once for the whole group, which returns one state per task. ``None`` (the default): solved alone.

    Subclasses register themselves by name (``lc._codec``), so that ``lc.load`` and checkpoints can rebuild them
    from their fields.
    """

    coupling = None
    constraints: ClassVar[Mapping[str, tuple[Constraint, str]]] = {}

    def bind(self, context) -> "Compression":
        """A copy of this compression that knows what it needs of its task's ``context`` (default: ``self``)."""
        return self

    def check(self, shape: torch.Size) -> None:
        """Raise :class:`lc.CompressionError` if this compression cannot apply to a tensor of ``shape``: a field
        that its declared constraint refuses (see the class docstring)."""
        validate(self, self.constraints, shape)

    def compress(self, w: torch.Tensor, mu: float, previous: State | None = None) -> State:
        raise NotImplementedError

    def decompress(self, state: State) -> torch.Tensor:
        raise NotImplementedError


class Coupling(Registered):
    """An object shared by the compressions of several tasks whose C steps are one problem (one budget over several
    layers, as ``lc.RankBudget``). Compressions name it as their ``coupling``; layers share it by sharing the object
    (couplings compare by identity: make them ``@dataclass(frozen=True, eq=False)``).

    - ``check(compressions)`` raises :class:`lc.CompressionError` if those compressions cannot share it;
    - ``compress(compressions, ws, mu, previous)`` solves their C steps together: ``ws[i]`` is what compression i
      sees (its view of its task's tensors), ``previous[i]`` its last state; returns one state per compression.
    """

    def check(self, compressions) -> None:  # noqa: B027 - optional hook
        """Raise :class:`lc.CompressionError` if these compressions cannot share this coupling."""

    def compress(self, compressions, ws, mu: float, previous=None) -> list[State]:
        raise NotImplementedError
