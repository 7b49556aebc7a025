"""What to compress: ``Param`` names weight tensors of a model; a view says what shape the C step sees."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ._codec import Registered
from ._errors import CompressionError

__all__ = ["Param", "View", "AsVector", "AsIs", "AsGroups", "match"]


class Param:
    """One or more weight tensors of the model, given as tensors, as dotted names (``"fc1.weight"``), or as name
    patterns (``"blocks.*.attn.*.weight"``: ``*`` any characters, dots included, ``?`` one, ``[…]`` a set, as
    :mod:`fnmatch`), each pattern standing for every parameter whose name it matches, in the model's order (a tied
    tensor once, under the name the model lists it by). :func:`lc.match` gives the names, for one task each.

    ``Param`` objects are dictionary keys of ``compression_tasks``; they compare by identity. The tensors are
    looked up in the model when the :class:`lc.Algorithm` is built, and every error (a name that matches
    nothing, a tensor that is not a parameter of the model, a non-float tensor) is raised then.
    """

    def __init__(self, target: torch.Tensor | str | Sequence[torch.Tensor | str]):
        items = list(target) if isinstance(target, (list, tuple)) else [target]
        if not items:
            raise CompressionError("Param([]) names no tensor: give a parameter, a name, or a list of them")
        self.targets = tuple(items)

    def __repr__(self):
        shown = [t if isinstance(t, str) else f"<tensor {tuple(t.shape)}>" for t in self.targets]
        return f"Param({shown[0]!r})" if len(shown) == 1 else f"Param({shown!r})"

    def resolve(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        """``[(name, parameter), …]`` of the model, in the order given."""
        named = dict(model.named_parameters())
        by_id = {id(p): n for n, p in named.items()}
        out = []
        for t in self.targets:
            if isinstance(t, str) and _is_pattern(t):
                matches = match(model, t)
                out += [(n, named[n]) for n in matches]
                self._check_float(matches, named)
                continue
            if isinstance(t, str):
                if t not in named:
                    tied = _tied_to(model, t, by_id)
                    if tied is not None:
                        raise CompressionError(f"{self!r}: {t!r} is the same tensor as {tied!r} (tied weights, "
                                               f"listed once by the model under {tied!r}); name it {tied!r}: a "
                                               "tied tensor is compressed once, for every name it has")
                    raise CompressionError(f"{self!r}: the model has no parameter named {t!r}; "
                                           f"{_near_names(t, named)}")
                name = t
            elif isinstance(t, torch.Tensor):
                if id(t) not in by_id:
                    raise CompressionError(f"{self!r}: this tensor of shape {tuple(t.shape)} is not a parameter of "
                                           "the model given to lc.Algorithm; pass the model's own parameter "
                                           "(e.g. net.fc1.weight) or its name")
                name = by_id[id(t)]
            else:
                raise CompressionError(f"Param(...) takes tensors or dotted names, not {type(t).__name__}")
            self._check_float([name], named)
            out.append((name, named[name]))
        names = [n for n, _ in out]
        if len(set(names)) != len(names):
            raise CompressionError(f"{self!r} names the same tensor twice: {names}")
        return out

    def _check_float(self, names, named) -> None:
        for name in names:
            if not named[name].dtype.is_floating_point:
                raise CompressionError(f"{self!r}: parameter {name!r} has dtype {named[name].dtype}; only "
                                       "floating-point tensors can be compressed")


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def match(model: torch.nn.Module, *patterns: str) -> list[str]:
    """The names of the model's parameters that match any of ``patterns`` (names or :mod:`fnmatch` patterns), in the
    model's order, a tied tensor once: ``{lc.Param(n): … for n in lc.match(model, "blocks.*.mlp.*.weight")}`` makes
    one task per matrix. A pattern that matches nothing is a :class:`lc.CompressionError` listing near names."""
    import fnmatch
    named = dict(model.named_parameters())
    found = []
    for pattern in patterns:
        hits = [n for n in named if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            literal = pattern.replace("*", "").replace("?", "")
            raise CompressionError(f"the pattern {pattern!r} matches no parameter of the model; "
                                   f"{_near_names(literal, named)}")
        found += [n for n in hits if n not in found]
    return found


def _tied_to(model: torch.nn.Module, name: str, by_id: dict) -> str | None:
    """The name under which the model lists the parameter it also calls ``name`` (tied weights), or None."""
    p = dict(model.named_parameters(remove_duplicate=False)).get(name)
    return None if p is None else by_id.get(id(p))


def _near_names(name: str, named) -> str:
    import difflib
    near = difflib.get_close_matches(name, list(named), n=5, cutoff=0.5)
    if near:
        return "did you mean " + ", ".join(repr(n) for n in near) + "?"
    shown = list(named)[:12]
    return "its parameters are " + ", ".join(repr(n) for n in shown) + (", …" if len(named) > 12 else "")


class View(Registered):
    """How the C step sees the tensors of a ``Param``: ``flatten`` maps them to one tensor, ``unflatten`` back."""

    def check(self, shapes: Sequence[torch.Size]) -> None:  # noqa: B027 - optional hook
        """Raise :class:`lc.CompressionError` if this view cannot hold tensors of these shapes."""

    def shape(self, shapes: Sequence[torch.Size]) -> torch.Size:
        raise NotImplementedError

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def unflatten(self, x: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
        raise NotImplementedError


@dataclass(frozen=True)
class AsVector(View):
    """All tensors flattened and concatenated into one vector: one budget or codebook shared across them."""

    def shape(self, shapes):
        return torch.Size([sum(math.prod(s) for s in shapes)])

    def flatten(self, tensors):
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, x, shapes):
        sizes = [math.prod(s) for s in shapes]
        return [part.reshape(s) for part, s in zip(torch.split(x, sizes), shapes)]


@dataclass(frozen=True)
class AsIs(View):
    """One tensor, as a matrix. A linear weight (out, in) stays as it is; a vector stays a vector. A convolution
    kernel (o, i, k₁, …) is reshaped by ``scheme``:

    - ``scheme=1``: (o) × (i·k₁·k₂…), a plain ``reshape`` — a rank-r factorisation is a k×k convolution to r
      channels followed by a 1×1 convolution;
    - ``scheme=2`` (2-D kernels only): (o·kh) × (i·kw), rows ordered (o, kh) and columns (i, kw) — a rank-r
      factorisation U V is a 1×kw convolution to r channels (V) followed by a kh×1 convolution (U).

    Both are exact round trips. ``AsIs`` and ``AsIs()`` are the same (scheme 1).
    """

    scheme: int = 1

    def check(self, shapes):
        if len(shapes) != 1:
            raise CompressionError(f"AsIs views exactly one tensor, got {len(shapes)}; use one Param per tensor, "
                                   "or AsVector to treat several tensors as one vector")
        if self.scheme not in (1, 2):
            raise CompressionError(f"AsIs(scheme={self.scheme!r}): scheme must be 1 or 2")
        if self.scheme == 2 and len(shapes[0]) != 4:
            raise CompressionError(f"AsIs(scheme=2) applies to 2-D convolution kernels (o, i, kh, kw), not to "
                                   f"a tensor of shape {tuple(shapes[0])}; use AsIs (scheme 1)")

    def shape(self, shapes):
        (s,) = shapes
        if len(s) <= 2:
            return torch.Size(s)
        if self.scheme == 1:
            return torch.Size([s[0], math.prod(s[1:])])
        o, i, kh, kw = s
        return torch.Size([o * kh, i * kw])

    def flatten(self, tensors):
        (t,) = tensors
        if t.dim() <= 2:
            return t
        if self.scheme == 1:
            return t.reshape(t.shape[0], -1)
        o, i, kh, kw = t.shape
        return t.permute(0, 2, 1, 3).reshape(o * kh, i * kw)

    def unflatten(self, x, shapes):
        (s,) = shapes
        if len(s) <= 2 or self.scheme == 1:
            return [x.reshape(s)]
        o, i, kh, kw = s
        return [x.reshape(o, kh, i, kw).permute(0, 2, 1, 3).contiguous()]


@dataclass(frozen=True)
class AsGroups(View):
    """One weight matrix as groups of ``size`` consecutive weights along its input axis, one group a row: a matrix
    of (weights / size) rows × ``size``. A per-row compression then gives every group its own scale or codebook
    (``AffineQuantization(bits, per_channel=True)``: group-wise integer grids, as GPTQ's and AWQ's group size 128;
    ``AdaptiveQuantization(k, per_channel=True)``: a codebook per group), every one counted in the state's bits;
    ``NMPruning(2, 4)`` on ``AsGroups(4)`` is 2:4 sparsity along the input.

    ``axis``: the input axis of the weight, 1 for ``nn.Linear`` (out, in) (the default), 0 for ``transformers``'
    ``Conv1D`` (in, out). The input dimension must be a multiple of ``size``."""

    size: int
    axis: int = 1

    def check(self, shapes):
        if len(shapes) != 1 or len(shapes[0]) != 2:
            raise CompressionError(f"{self!r} views one weight matrix, got tensors of shapes "
                                   f"{[tuple(s) for s in shapes]}; use one Param per matrix")
        if self.axis not in (0, 1) or not (isinstance(self.size, int) and self.size >= 1):
            raise CompressionError(f"{self!r}: axis must be 0 or 1 (the weight's input axis) and size an integer ≥ 1")
        if shapes[0][self.axis] % self.size:
            raise CompressionError(f"{self!r} on a weight of shape {tuple(shapes[0])}: its input dimension "
                                   f"{shapes[0][self.axis]} is not a multiple of the group size {self.size}")

    def shape(self, shapes):
        (s,) = shapes
        return torch.Size([math.prod(s) // self.size, self.size])

    def flatten(self, tensors):
        (t,) = tensors
        return (t if self.axis == 1 else t.T).reshape(-1, self.size)

    def unflatten(self, x, shapes):
        (s,) = shapes
        return [x.reshape(s)] if self.axis == 1 else [x.reshape(s[1], s[0]).T.contiguous()]
