"""Data-aware C steps: the layer-wise objective ‖(W − Δ)X‖² of post-training methods (GPTQ, AWQ, Wanda, SparseGPT,
SVD-LLM) as the C step's metric, each solved exactly; and N:M sparsity.

With H = X Xᵀ/n the second moments of the layer's inputs, ‖(W − Δ)X‖²/n = tr((W − Δ) H (W − Δ)ᵀ). Keeping only
H's diagonal h_j = mean x_j² gives a weight per input j, and the C step

    min_Θ Σ_i d_i (w_i − Δ_i(Θ))²,     d_i = h_{j(i)} (normalised to mean 1 over the task, plus ``damp``),

which keeps every constraint's structure: weighted 1-D k-means is still cut into contiguous runs of the sorted values
(exact by the same dynamic programme, the weights as multiplicities), weighted ℓ0 pruning keeps the largest d_i w_i²
(Wanda's score |W_ij|·‖X_j‖, squared). With the whole of H, low rank is solved by whitening: with S Sᵀ = H,
‖(W − Δ)S‖² is minimised over rank ≤ r by Δ = [W S]_r S⁻¹ (SVD-LLM).

The statistics come from ``lc.Algorithm(..., example_input=calibration_batch)`` when the tasks are built
(:meth:`bind`; :mod:`lc._statistics`), or are given with :meth:`weighted_by`. They are not hyperparameters: no spec,
state or artifact holds them, and Δ(Θ) is computed from Θ alone. Each class is its plain form's subclass (same
constraint, same state, same export); only the C step's metric differs.

In the LC loop the penalty stays μ/2‖w − Δ(Θ) − λ/μ‖² (Euclidean): a weighted C step projects in the data's metric,
which sets the direct compression (the layer-wise post-training optimum under the diagonal approximation) and the
path; as μ grows both metrics lead to a feasible w = Δ(Θ).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from .._errors import CompressionError
from ._base import Compression
from ._constraints import Integer, Real
from ._kmeans1d import dp_rows, kmeans
from ._kmeans_rows import _values
from .lowrank import LowRank, _state
from .pruning import ConstraintL0Pruning, _pruned, _Sparse
from .quantization import AdaptiveQuantization

__all__ = ["WeightedAdaptiveQuantization", "WeightedL0Pruning", "NMPruning", "WeightedNMPruning", "WhitenedLowRank"]

_DAMP = {"damp": (Real(0, closed="neither"), "is added to the weights (normalised to mean 1), so that an input that "
                                              "was never active still counts a little")}


class _InputWeighted:
    """What the weighted C steps share: weights d (w's shape) from the layer's inputs or given by the user."""

    _stats = None            # set by bind() or weighted_by(): the view, the tensors' shapes, [(axis, mean x²)]

    def bind(self, context):
        """A copy that holds its task's input statistics (``context.input_moments``), unless given already."""
        if self._stats is not None:
            return self
        moments = context.input_moments(repr(self))
        return self._with(("inputs", context.view, context.shapes, [(axis, m.diag) for axis, m in moments]))

    def weighted_by(self, d: torch.Tensor):
        """A copy whose C step weighs each weight by ``d`` (every value > 0, the shape of what the C step sees:
        the view's output), e.g. a Fisher diagonal: min Σ_i d_i (w_i − Δ_i)²."""
        d = torch.as_tensor(d, dtype=torch.float64)
        if not bool(torch.isfinite(d).all()) or not bool((d > 0).all()):
            raise CompressionError(f"{self!r}.weighted_by(d): every weight must be finite and > 0")
        return self._with(("given", d / d.mean()))

    def _with(self, stats):
        bound = copy.copy(self)
        object.__setattr__(bound, "_stats", stats)
        return bound

    def weights(self, w: torch.Tensor) -> torch.Tensor:
        """d: float64, w's shape and device, mean 1 + ``damp``."""
        if self._stats is None:
            raise CompressionError(f"{self!r} needs its layer's input statistics: use it through lc.Algorithm(..., "
                                   "example_input=calibration_batch), or give weights with .weighted_by(d)")
        if self._stats[0] == "given":
            d = self._stats[1]
        else:
            _, view, shapes, stats = self._stats
            total = sum(float(h.sum()) * s.numel() / h.numel() for (_, h), s in zip(stats, shapes))
            mean = total / sum(s.numel() for s in shapes) or 1.0
            d = view.flatten([(h if axis == 1 else h[:, None]).expand(s).to(torch.float64) / mean
                              for (axis, h), s in zip(stats, shapes)])
        if d.shape != w.shape:
            raise CompressionError(f"{self!r}: its weights have shape {tuple(d.shape)}, the tensor it compresses "
                                   f"{tuple(w.shape)}")
        return d.to(w.device) + float(self.damp)


@dataclass(frozen=True)
class WeightedAdaptiveQuantization(_InputWeighted, AdaptiveQuantization):
    """Solves min_{c, z} Σ_i d_i (w_i − c_{z_i})² over codebooks c ∈ ℝᵏ: weighted 1-D k-means, d_i the mean square of
    weight i's input (SqueezeLLM's sensitivity-weighted k-means, with H's diagonal for the Fisher's). The optimal
    clusters are contiguous runs of the sorted values, so the exact programme of :mod:`._kmeans1d` solves it with the
    weights as multiplicities, and its fast path (above 4096 distinct values) runs as for AdaptiveQuantization.
    ``per_channel=True``: one codebook per row, every row by the exact programme (O(kN log n), O(kN) memory).
    Storage as AdaptiveQuantization's."""

    damp: float = 0.01
    _stats: object = field(default=None, init=False, repr=False, compare=False)
    constraints = {**AdaptiveQuantization.constraints, **_DAMP}

    def compress(self, w, mu, previous=None):
        d = self.weights(w)
        if self.per_channel and w.dim() >= 2:
            return self._rows_state(w, _weighted_rows(w.detach().reshape(w.shape[0], -1), d.reshape(w.shape[0], -1),
                                                      int(self.k)))
        init = previous.tensors.get("codebook") if previous is not None else None
        return self._state(w, kmeans(w.detach(), int(self.k), init=init, exact=self.exact, weights=d))


def _weighted_rows(x: torch.Tensor, d: torch.Tensor, k: int) -> torch.Tensor:
    """Centroids (rows, m) of the weighted k-means of every row (exact programme), m = min(k, most distinct values
    of a row); a row with at most m distinct values keeps them (its largest repeated)."""
    v, order = torch.sort(x.to(torch.float64), 1)
    n = d.gather(1, order)
    distinct = 1 + (v[:, 1:] != v[:, :-1]).sum(1)
    m = int(min(k, int(distinct.max())))
    out = torch.empty(x.shape[0], m, dtype=torch.float64, device=x.device)
    few = distinct <= m
    if bool(few.any()):
        out[few] = _values(v[few], m)
    if bool((~few).any()):
        vs, ns = v[~few].cpu().numpy(), n[~few].cpu().numpy()
        cuts = dp_rows(vs, ns, m)
        s1, s0 = np.cumsum(np.pad(vs * ns, ((0, 0), (1, 0))), 1), np.cumsum(np.pad(ns, ((0, 0), (1, 0))), 1)
        sums, counts = np.diff(np.take_along_axis(s1, cuts, 1), axis=1), np.diff(np.take_along_axis(s0, cuts, 1), axis=1)
        out[~few] = torch.from_numpy(sums / counts).to(out.device)
    return out


def _keep_largest(score: torch.Tensor, w: torch.Tensor, kappa: int):
    """θ: w where ``score`` is among the κ largest, zero elsewhere (ties by ``topk``'s order)."""
    flat = w.reshape(-1)
    keep = torch.topk(score.reshape(-1), kappa, sorted=False).indices
    theta = torch.zeros_like(flat)
    theta[keep] = flat[keep]
    return _pruned(theta.reshape(w.shape))


@dataclass(frozen=True)
class WeightedL0Pruning(_InputWeighted, ConstraintL0Pruning):
    """Solves min_θ Σ_i d_i (w_i − θ_i)² s.t. ‖θ‖₀ ≤ κ: a pruned weight costs d_i w_i², so keep the κ largest d_i w_i²
    (with d the input's mean square, Wanda's |W_ij|·‖X_j‖ ranking, over the whole task). O(N)."""

    damp: float = 0.01
    _stats: object = field(default=None, init=False, repr=False, compare=False)
    constraints = {**ConstraintL0Pruning.constraints, **_DAMP}

    def compress(self, w, mu, previous=None):
        return _keep_largest(self.weights(w) * w.to(torch.float64) ** 2, w, int(self.kappa))


@dataclass(frozen=True)
class NMPruning(_Sparse):
    """Solves min_θ ‖w − θ‖² s.t. at most ``n`` nonzeros in every group of ``m`` consecutive weights along the last
    axis (N:M sparsity, 2:4 for sparse tensor cores): keep the n largest |w| of each group. O(N). On a linear
    weight (out, in) with ``AsIs`` the groups run along the input; ``AsGroups(m, axis=0)`` does so for a weight
    stored (in, out). Storage as ℓ0 pruning's (values and positions)."""

    n: int
    m: int
    constraints = {"n": (Integer(0), "is the most nonzeros of a group"),
                   "m": (Integer(1), "is the size of a group of consecutive weights")}

    def check(self, shape):
        super().check(shape)
        if int(self.n) > int(self.m) or not len(shape) or shape[-1] % int(self.m):
            raise CompressionError(f"{self!r} on a tensor of shape {tuple(shape)}: n must be at most m and the last "
                                   f"dimension a multiple of m = {self.m}")

    def _score(self, w):
        return w.abs()

    def compress(self, w, mu, previous=None):
        n, m = int(self.n), int(self.m)
        groups = w.reshape(-1, m)
        keep = torch.topk(self._score(w).reshape(-1, m), n, dim=1, sorted=False).indices
        theta = torch.zeros_like(groups).scatter_(1, keep, groups.gather(1, keep))
        return _pruned(theta.reshape(w.shape))


@dataclass(frozen=True)
class WeightedNMPruning(_InputWeighted, NMPruning):
    """Solves min_θ Σ_i d_i (w_i − θ_i)² s.t. at most n nonzeros in every group of m: keep the n largest d_i w_i² of
    each group (Wanda's N:M score). O(N)."""

    damp: float = 0.01
    _stats: object = field(default=None, init=False, repr=False, compare=False)
    constraints = {**NMPruning.constraints, **_DAMP}

    def _score(self, w):
        return self.weights(w) * w.to(torch.float64) ** 2


@dataclass(frozen=True)
class WhitenedLowRank(LowRank):
    """Solves min_Δ ‖(W − Δ) S‖² s.t. rank(Δ) ≤ r, S Sᵀ = H + damp·mean(diag H)·I, H the second moments of the
    layer's inputs (SVD-LLM, Wang et al. 2024): Δ S is the truncated SVD of W S, so Δ = [W S]_r S⁻¹ (Eckart–Young in
    the whitened space; S, a Cholesky factor, is invertible). For a weight stored (in, out) the same on Wᵀ. One
    Cholesky and one thin SVD, O(mn·min(m, n) + n³), in float64; stored as LowRank's factors."""

    damp: float = 0.01
    _stats: object = field(default=None, init=False, repr=False, compare=False)
    constraints = {**LowRank.constraints, **_DAMP}

    def bind(self, context):
        if self._stats is not None:
            return self
        if len(context.shapes) != 1 or context.view is None or context.view.shape(context.shapes) != context.shapes[0]:
            raise CompressionError(f"{self!r} whitens one weight matrix: use it with lc.AsIs on one linear weight")
        (axis, moments), = context.input_moments(repr(self), full=True)
        bound = copy.copy(self)
        object.__setattr__(bound, "_stats", (axis, moments.full))
        return bound

    def whitened_by(self, h: torch.Tensor, axis: int = 1):
        """A copy that whitens by the input second moments ``h`` (in × in, symmetric positive semi-definite) of a
        weight whose input multiplies ``axis`` (1: (out, in); 0: (in, out))."""
        bound = copy.copy(self)
        object.__setattr__(bound, "_stats", (axis, torch.as_tensor(h, dtype=torch.float64)))
        return bound

    def compress(self, w, mu, previous=None):
        if self._stats is None:
            raise CompressionError(f"{self!r} needs its layer's input statistics: use it through lc.Algorithm(..., "
                                   "example_input=calibration_batch), or give them with .whitened_by(h)")
        axis, h = self._stats
        a = (w if axis == 1 else w.T).to(torch.float64)
        h = h.to(a.device)
        if h.shape != (a.shape[1], a.shape[1]):
            raise CompressionError(f"{self!r}: input moments of shape {tuple(h.shape)} for a weight of shape "
                                   f"{tuple(w.shape)} (input axis {axis})")
        s = torch.linalg.cholesky(h + float(self.damp) * float(h.diagonal().mean().clamp(min=1e-30))
                                  * torch.eye(h.shape[0], dtype=h.dtype, device=h.device))
        u, sigma, vh = torch.linalg.svd(a @ s, full_matrices=False)              # W S = U Σ Vᵀ
        r = min(int(self.target_rank), sigma.numel())
        v = torch.linalg.solve_triangular(s, vh[:r], upper=False, left=False)    # Vᵣᵀ S⁻¹
        svd = (u[:, :r], sigma[:r], v) if axis == 1 else (v.T, sigma[:r], u[:, :r].T)
        return _state(w, tuple(t.contiguous() for t in svd), int(self.target_rank))
