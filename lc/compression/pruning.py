"""Pruning C steps: ℓ0 and ℓ1, constraint and penalty forms (Carreira-Perpiñán & Idelbayev, CVPR 2018).

Every one returns a sparse state: the nonzero values (``"float"``: in w's dtype, 32 bits each for float32) and
their positions, stored with the cheaper of a bitmap or a fixed-width gap code (see :mod:`lc.compression._coding`).
A pruned weight is an exact zero and costs nothing but its share of the position code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._base import Compression, State
from ._constraints import WEIGHTS, Integer, Real
from ._primitives import scatter, sparse_state, value_bits

__all__ = ["ConstraintL0Pruning", "ConstraintL1Pruning", "PenaltyL0Pruning", "PenaltyL1Pruning",
           "project_l1_ball"]


def _pruned(theta: torch.Tensor) -> State:
    """The state of a tensor whose zeros are pruned: nonzero values + their positions in the flat tensor."""
    flat = theta.reshape(-1)
    indices = torch.nonzero(flat, as_tuple=True)[0]
    return sparse_state(theta.shape, indices, {"values": flat[indices]}, {"values": "float"},
                        value_bits(theta.dtype) * indices.numel())


class _Sparse(Compression):
    def decompress(self, state: State) -> torch.Tensor:
        return scatter(state.tensors["values"], state)


@dataclass(frozen=True)
class ConstraintL0Pruning(_Sparse):
    """Solves min_θ ‖w − θ‖² s.t. ‖θ‖₀ ≤ κ: keep the κ entries of largest |w|, zero the rest (CVPR 2018).
    O(N) (``torch.topk``). Ties at the threshold are broken by ``topk``'s order, deterministically."""

    kappa: int
    constraints = {"kappa": (Integer(0, WEIGHTS), "is the number of weights to keep")}

    def compress(self, w, mu, previous=None):
        flat = w.reshape(-1)
        keep = torch.topk(flat.abs(), int(self.kappa), sorted=False).indices
        theta = torch.zeros_like(flat)
        theta[keep] = flat[keep]
        return _pruned(theta.reshape(w.shape))


MAX_FILTER = 64          # Michelot's filtering steps before the remaining candidates are sorted


def project_l1_ball(w: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of ``w`` onto {θ : ‖θ‖₁ ≤ radius}: soft thresholding at the τ ≥ 0 with
    Σ max(|w_i| − τ, 0) = radius. τ = (Σ_{|w_i| > τ} |w_i| − radius) / #{|w_i| > τ}; Michelot's iteration
    τ ← (Σ_{a ∈ S} a − radius)/|S|, S ← {a ∈ S : a > τ} from S = all increases τ to it, every S holding the kept
    weights, so each pass is over fewer values (Condat, "Fast projection onto the simplex and the ℓ1 ball", 2016);
    should it not have settled after ``MAX_FILTER`` passes, the values left are sorted (Duchi et al., ICML 2008).
    O(N) passes in practice, sums in float64; no sort of the N weights."""
    a = w.abs().reshape(-1)
    total = float(a.sum(dtype=torch.float64))
    if total <= radius:
        return w.clone()
    if radius == 0:
        return torch.zeros_like(w)
    v, tau = a, (total - radius) / a.numel()
    for _ in range(MAX_FILTER):
        kept = v[v > tau]
        if kept.numel() == v.numel():                 # S = {a > τ} and τ = (Σ_S a − r)/|S|: the threshold
            break
        v = kept
        tau = (float(v.sum(dtype=torch.float64)) - radius) / v.numel()
    else:                                             # the support is among v: the sort-based rule on v alone
        u = torch.sort(v.to(torch.float64), descending=True).values
        excess = torch.cumsum(u, 0) - radius          # Σ_{i≤j} u_i − κ
        j = torch.arange(1, u.numel() + 1, device=w.device, dtype=u.dtype)
        rho = int(torch.nonzero(u * j > excess).max())    # last j with u_j > (Σ_{i≤j} u_i − κ)/j
        tau = float(excess[rho]) / (rho + 1)
    del a, v
    theta = w.abs().sub_(tau).clamp_(min=0)
    return theta.copysign_(w)                         # sign(w) max(|w| − τ, 0)


@dataclass(frozen=True)
class ConstraintL1Pruning(_Sparse):
    """Solves min_θ ‖w − θ‖² s.t. ‖θ‖₁ ≤ κ: the exact Euclidean projection onto the ℓ1 ball of radius κ
    (soft thresholding at the threshold that puts θ on the ball; :func:`project_l1_ball`, O(N) in practice)."""

    kappa: float
    constraints = {"kappa": (Real(0), "is the radius of the ℓ1 ball, the largest Σ|θ_i| allowed")}

    def compress(self, w, mu, previous=None):
        return _pruned(project_l1_ball(w, float(self.kappa)))


_ALPHA = {"alpha": (Real(0), "weighs the penalty against the loss")}


@dataclass(frozen=True)
class PenaltyL0Pruning(_Sparse):
    """Solves min_θ α‖θ‖₀ + μ/2 ‖w − θ‖²: hard thresholding, keep w_i iff |w_i| > √(2α/μ). O(N)."""

    alpha: float
    constraints = _ALPHA

    def compress(self, w, mu, previous=None):
        alpha = float(self.alpha)                            # μ = 0: the limit μ → 0⁺ (prune all, unless α = 0)
        threshold = 0.0 if alpha == 0 else math.inf if mu == 0 else math.sqrt(2 * alpha / mu)
        return _pruned(torch.where(w.abs() > threshold, w, torch.zeros_like(w)))


@dataclass(frozen=True)
class PenaltyL1Pruning(_Sparse):
    """Solves min_θ α‖θ‖₁ + μ/2 ‖w − θ‖²: soft thresholding at α/μ, θ_i = sign(w_i) max(|w_i| − α/μ, 0). O(N)."""

    alpha: float
    constraints = _ALPHA

    def compress(self, w, mu, previous=None):
        alpha = float(self.alpha)                            # μ = 0: the limit μ → 0⁺ (all zero, unless α = 0)
        tau = 0.0 if alpha == 0 else math.inf if mu == 0 else alpha / mu
        return _pruned(torch.sign(w) * torch.clamp(w.abs() - tau, min=0))
