"""Post-training compression of a language model's linear layers, the baselines of the LC study (:mod:`experiments.lm`):
round to nearest (per channel or per group), GPTQ, AWQ-style scaling, SparseGPT, Wanda, magnitude pruning, SVD and
whitened SVD (SVD-LLM). All layer-wise, on one calibration batch, layer by layer in the order the model calls them,
each group of layers (those that read the same input: q, k, v) seeing the inputs that the layers compressed before it
produce (GPTQ's sequential mode, which Wanda and SparseGPT also use).

Every layer-wise method minimises ‖(W − Ŵ)X‖² = tr((W − Ŵ) H (W − Ŵ)ᵀ) (up to n) under its own constraint, with
H = X Xᵀ/n from the layer's calibration inputs. Grids are asymmetric min–max with zero included (GPTQ's
quantizer), one per row or per group of ``group`` consecutive inputs; a grid costs a float32 scale and a ``bits``-bit
zero point (:func:`grid_bits`), as every scale is counted in the study.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import lc
from lc._hooks import forward_with_hooks
from lc._statistics import input_axis, layer_of

__all__ = ["Grid", "rtn", "gptq", "sparsegpt", "wanda", "magnitude", "awq", "svd", "whitened_svd", "grid_bits",
           "layer_groups", "sequential"]


# ---------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Grid:
    """Asymmetric integer grids S·(q − Z), q ∈ {0 … 2^bits − 1}, one per row (``scale``, ``zero``: (rows, 1))."""

    scale: torch.Tensor
    zero: torch.Tensor
    bits: int

    @classmethod
    def minmax(cls, w: torch.Tensor, bits: int) -> "Grid":
        """The grid of each row spanning [min(row, 0), max(row, 0)] (GPTQ's and RTN's quantizer)."""
        lo, hi = w.min(1, keepdim=True).values.clamp(max=0), w.max(1, keepdim=True).values.clamp(min=0)
        q = 2 ** bits - 1
        scale = ((hi - lo) / q).float().double()                                       # stored as float32
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return cls(scale, torch.round(-lo / scale).clamp(0, q), bits)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """The nearest grid point of every weight (rows as the grid's)."""
        q = torch.clamp(torch.round(w / self.scale) + self.zero, 0, 2 ** self.bits - 1)
        return self.scale * (q - self.zero)


def grid_bits(shape, bits: int, group: int | None) -> int:
    """Storage of a (rows, in) matrix on grids per row (``group=None``) or per group of inputs: codes, a float32
    scale and a ``bits``-bit zero point per grid."""
    rows, cols = shape
    grids = rows * (1 if group is None else cols // group)
    return rows * cols * bits + grids * (32 + bits)


def _grouped(w: torch.Tensor, group: int | None, f: Callable) -> torch.Tensor:
    """``f`` applied to the rows of w cut into groups of ``group`` columns (or to the whole rows)."""
    if group is None:
        return f(w)
    rows, cols = w.shape
    return f(w.reshape(rows * cols // group, group)).reshape(rows, cols)


def rtn(w: torch.Tensor, bits: int, group: int | None = None) -> torch.Tensor:
    """Round to nearest on min–max grids per row or per group."""
    return _grouped(w.double(), group, lambda v: Grid.minmax(v, bits)(v)).to(w.dtype)


# ---------------------------------------------------------------------------------------------- OBS-style updates
def _inverse_factor(h: torch.Tensor, damp: float) -> torch.Tensor:
    """The upper Cholesky factor U of (H + damp·mean(diag H)·I)⁻¹, H⁻¹ = Uᵀ U (an input never active, H_jj = 0,
    gets H_jj = 1: its weight does not matter)."""
    h = h.double().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    h += damp * float(h.diagonal().mean()) * torch.eye(h.shape[0], dtype=h.dtype)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


def _columns(w: torch.Tensor, h: torch.Tensor, damp: float, order: torch.Tensor | None, choose: Callable) -> torch.Tensor:
    """The OBS column loop of GPTQ and SparseGPT: in ``order`` (default: natural), column i of the current weights
    is replaced by ``choose(i, W, U)`` (rounded or pruned), and its error is fed back into the columns not yet
    chosen: W[:, i:] −= (w_i − ŵ_i)/U_ii · U[i, i:], the least-squares re-fit of those columns given the ones
    chosen (U: the upper Cholesky factor of H⁻¹ in that order)."""
    perm = torch.arange(w.shape[1]) if order is None else order
    w = torch.where(h.diagonal() == 0, 0.0, w.double())[:, perm]              # never-active inputs: zero
    u = _inverse_factor(h[perm][:, perm], damp)
    for i in range(w.shape[1]):
        chosen = choose(i, w, u)
        err = (w[:, i] - chosen) / u[i, i]
        w[:, i:] -= err[:, None] * u[i, i:][None, :]                  # error feedback (column i becomes `chosen`)
        w[:, i] = chosen
    out = torch.empty_like(w)
    out[:, perm] = w
    return out


def gptq(w: torch.Tensor, h: torch.Tensor, bits: int, group: int | None = None, act_order: bool = True,
         damp: float = 0.01) -> torch.Tensor:
    """GPTQ (Frantar et al., ICLR 2023): columns rounded one at a time, each error fed back through H⁻¹'s Cholesky
    factor. ``act_order``: columns in decreasing H_jj (then the groups' grids are fixed from the original weights,
    "static groups"); else in their order, each group's grid computed from the updated weights at its first column."""
    order = torch.argsort(h.diagonal(), descending=True) if act_order else None
    wd = w.double()
    static = None if not act_order else (
        Grid.minmax(wd, bits) if group is None else
        Grid.minmax(wd.reshape(-1, group), bits))
    current: dict = {}

    def choose(i, cur, u):
        col = int(order[i]) if order is not None else i
        if static is not None:
            if group is None:
                g = Grid(static.scale, static.zero, bits)
            else:
                j = col // group                                           # the rows of column col's group
                idx = torch.arange(w.shape[0]) * (w.shape[1] // group) + j
                g = Grid(static.scale[idx], static.zero[idx], bits)
        else:
            if group is None and "g" not in current:
                current["g"] = Grid.minmax(cur, bits)
            elif group is not None and i % group == 0:
                current["g"] = Grid.minmax(cur[:, i:i + group], bits)
            g = current["g"]
        return g(cur[:, i:i + 1])[:, 0]

    return _columns(w, h, damp, order, choose).to(w.dtype)


def sparsegpt(w: torch.Tensor, h: torch.Tensor, sparsity: float = 0.5, nm: tuple[int, int] | None = None,
              block: int = 128, damp: float = 0.01) -> torch.Tensor:
    """SparseGPT (Frantar & Alistarh, ICML 2023): at the first column of every ``block`` columns, prune the
    ``sparsity`` fraction of that block's weights of least w²/U_jj² (for N:M: the m − n least of every m columns
    of each row, chosen at the group's first column), then feed each pruned weight's error back as GPTQ does."""
    mask: dict = {}

    def choose(i, cur, u):
        d2 = u.diagonal() ** 2
        if nm is None and i % block == 0:
            score = cur[:, i:i + block] ** 2 / d2[i:i + block]
            k = int(score.numel() * sparsity)
            drop = torch.zeros(score.numel(), dtype=torch.bool)
            drop[torch.topk(score.reshape(-1), k, largest=False).indices] = True
            mask["m"], mask["at"] = drop.reshape(score.shape), i
        elif nm is not None and i % nm[1] == 0:
            score = cur[:, i:i + nm[1]] ** 2 / d2[i:i + nm[1]]
            drop = torch.zeros_like(score, dtype=torch.bool)
            drop.scatter_(1, torch.topk(score, nm[1] - nm[0], dim=1, largest=False).indices, True)
            mask["m"], mask["at"] = drop, i
        return torch.where(mask["m"][:, i - mask["at"]], 0.0, cur[:, i])

    return _columns(w, h, damp, None, choose).to(w.dtype)


# ---------------------------------------------------------------------------------------------- one-shot rules
def _prune(w: torch.Tensor, score: torch.Tensor, sparsity: float, nm: tuple[int, int] | None, per_row: bool):
    """w with the lowest scores zeroed: ``sparsity`` of each row (``per_row``) or of the matrix, or m − n of every m
    consecutive inputs."""
    if nm is not None:
        n, m = nm
        s = score.reshape(-1, m)
        keep = torch.zeros_like(s, dtype=torch.bool).scatter_(1, torch.topk(s, n, dim=1).indices, True)
        return torch.where(keep.reshape(w.shape), w, 0)
    s = score if per_row else score.reshape(1, -1)
    k = int(s.shape[1] * sparsity)
    drop = torch.zeros_like(s, dtype=torch.bool).scatter_(1, torch.topk(s, k, dim=1, largest=False).indices, True)
    return torch.where(drop.reshape(w.shape), 0, w)


def wanda(w: torch.Tensor, h: torch.Tensor, sparsity: float = 0.5, nm: tuple[int, int] | None = None) -> torch.Tensor:
    """Wanda (Sun et al., ICLR 2024): prune the lowest |W_ij|·‖X_j‖ of each output row (or m − n of every m)."""
    return _prune(w, w.abs() * h.diagonal().sqrt().to(w.dtype)[None, :], sparsity, nm, per_row=True)


def magnitude(w: torch.Tensor, sparsity: float = 0.5, nm: tuple[int, int] | None = None) -> torch.Tensor:
    """Prune the lowest |W_ij| of the matrix (or m − n of every m consecutive inputs)."""
    return _prune(w, w.abs(), sparsity, nm, per_row=False)


def _layer_error(w: torch.Tensor, approx: torch.Tensor, h: torch.Tensor) -> float:
    d = (w - approx).double()
    return float(torch.einsum("ij,jk,ik->", d, h.double(), d))


def awq(ws: list[torch.Tensor], hs: list[torch.Tensor], mean_abs: torch.Tensor, bits: int, group: int | None,
        grid: int = 20) -> tuple[list[torch.Tensor], float]:
    """AWQ-style scaling (Lin et al., MLSys 2024) for layers that read one input: Ŵ = Q(W·diag(s))·diag(s)⁻¹ with
    s = mean|x|^α (normalised by √(max·min)), α ∈ {0, 1/grid, …} chosen to minimise Σ_layers ‖(W − Ŵ)X‖² on the
    calibration inputs; Q is round to nearest. Returns the Ŵ and the α chosen (no clipping search)."""
    best = (math.inf, None, None)
    for a in torch.arange(grid).double() / grid:
        s = mean_abs.double().clamp(min=1e-8) ** a
        s = s / (s.max() * s.min()).sqrt()
        approx = [rtn(w.double() * s, bits, group) / s for w in ws]
        err = sum(_layer_error(w, q, h) for w, q, h in zip(ws, approx, hs))
        if err < best[0]:
            best = (err, [q.to(w.dtype) for q, w in zip(approx, ws)], float(a))
    return best[1], best[2]


def svd(w: torch.Tensor, rank: int) -> torch.Tensor:
    """The truncated SVD of rank ``rank``."""
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(w.dtype)


def whitened_svd(w: torch.Tensor, h: torch.Tensor, rank: int, damp: float = 0.01) -> torch.Tensor:
    """SVD-LLM's whitened truncation (Wang et al. 2024): [W S]_r S⁻¹ with S S ᵀ = H (damped), the rank-r
    minimiser of ‖(W − Ŵ) S‖² (through the C step :class:`lc.WhitenedLowRank`)."""
    c = lc.WhitenedLowRank(rank, damp=damp).whitened_by(h)
    return c.decompress(c.compress(w.double(), 1.0)).to(w.dtype)


# ---------------------------------------------------------------------------------------------- the model, layer by layer
def layer_groups(model: nn.Module, example, names: list[str]) -> list[list[str]]:
    """The parameters ``names`` (linear weights) grouped by the input their layers read, in the order the model
    calls them on ``example``: layers called in a row on the same input tensor form one group (q, k, v)."""
    layer = {layer_of(model, n)[0]: n for n in names}
    calls: list[tuple[str, int]] = []

    def hook(name, module, args, out):
        if name in layer and all(name != c for c, _ in calls):
            calls.append((name, id(args[0])))
    forward_with_hooks(model, example, hook, only=lambda m: input_axis(m) is not None)
    groups: list[list[str]] = []
    for i, (name, src) in enumerate(calls):
        if i and src == calls[i - 1][1]:
            groups[-1].append(layer[name])
        else:
            groups.append([layer[name]])
    return groups


class _Stop(Exception):
    pass


def _inputs(model: nn.Module, example, modules: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (H = mean x xᵀ, mean |x|)} of the modules' inputs, from a forward pass stopped once they have run."""
    stats, left = {}, set(modules)

    def hook(name, module, args, out):
        if name in left:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            stats[name] = ((x.T @ x).double() / x.shape[0], x.abs().mean(0).double())
            left.discard(name)
            if not left:
                raise _Stop
    try:
        forward_with_hooks(model, example, hook, only=lambda m: input_axis(m) is not None)
    except _Stop:
        pass
    return stats


@torch.no_grad()
def sequential(model: nn.Module, example, names: list[str], method: Callable) -> dict:
    """Compress the weights ``names`` of ``model`` in place, group by group (:func:`layer_groups`): for each group,
    the inputs of its layers on ``example`` through the model as compressed so far, then
    ``method(group, weights, H's, mean |x|'s)`` → the new weights (for the group's weights, stored (out, in)).
    Returns ``{name: what method returned besides}`` (e.g. AWQ's α)."""
    info = {}
    for group in layer_groups(model, example, names):
        layers = [layer_of(model, n) for n in group]
        stats = _inputs(model, example, [m for m, _ in layers])
        ws = [model.get_parameter(n).detach() for n in group]
        ws = [w if axis == 1 else w.T for w, (_, axis) in zip(ws, layers)]
        new, extra = method(group, ws, [stats[m][0] for m, _ in layers], [stats[m][1] for m, _ in layers])
        for n, w, (_, axis) in zip(group, new, layers):
            model.get_parameter(n).copy_(w if axis == 1 else w.T)
            info[n] = extra
    return info
