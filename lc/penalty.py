"""The penalty term of the L step: μ/2 ‖w − Δ(Θ) − λ/μ‖², handed to the user's training as ``lc_penalty``."""
from __future__ import annotations

import math

import torch

from ._errors import CompressionError

__all__ = ["Penalty"]


class Penalty:
    """The ``lc_penalty`` given to the L step: ``lc_penalty()`` is μ/2 Σ‖w − Δ(Θ) − λ/μ‖², a differentiable scalar;
    ``lc_penalty.add_grad_()`` adds its gradient μ(w − Δ(Θ) − λ/μ) to each weight's ``.grad`` in place, without an
    autograd graph — the same step, cheaper: ``loss.backward(); lc_penalty.add_grad_(); optimizer.step()``;
    ``lc_penalty.prox_(eta)`` takes the proximal step on the penalty alone (stable for every μ)."""

    def __init__(self, mu: float, targets: list[tuple[torch.nn.Parameter, torch.Tensor]]):
        self.mu, self.targets = mu, targets

    def __call__(self) -> torch.Tensor:
        return self.mu / 2 * sum(((p - t) ** 2).sum() for p, t in self.targets)  # μ/2 ‖w − Δ(Θ) − λ/μ‖²

    @torch.no_grad()
    def prox_(self, eta: float) -> None:
        """The proximal step on the penalty, in place: w ← argmin_v 1/(2η)‖v − w‖² + μ/2‖v − Δ(Θ) − λ/μ‖²
        = (w + ημ (Δ(Θ) + λ/μ)) / (1 + ημ). It moves w the fraction ημ/(1 + ημ) of the way to its target: the
        gradient step w − η∇ to first order in ημ, but stable for every μ (the gradient step overshoots once
        ημ > 1 and diverges once ημ > 2). For L steps that treat the penalty apart from the loss (for instance
        when an adaptive optimizer such as Adam would rescale its gradient)."""
        if not (eta > 0 and math.isfinite(eta)):
            raise CompressionError(f"prox_: eta={eta!r} must be a finite number > 0")
        f = eta * self.mu / (1 + eta * self.mu)
        for p, t in self.targets:
            p.lerp_(t, f)                                                       # w + f (t − w)

    @torch.no_grad()
    def add_grad_(self) -> None:
        for p, t in self.targets:
            if p.grad is None:
                p.grad = self.mu * (p - t)
            else:
                p.grad.add_(p - t, alpha=self.mu)                                 # ∇ = μ(w − Δ(Θ) − λ/μ)
