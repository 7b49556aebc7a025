"""The penalty term of the L step: μ/2 ‖w − Δ(Θ) − λ/μ‖², handed to the user's training as ``lc_penalty``.

With any ``torch.optim`` optimizer the penalty is best applied decoupled from the loss, as AdamW applies weight
decay: ``loss.backward(); optimizer.step(); lc_penalty.step(optimizer)`` (see :meth:`Penalty.step`). Added to the
loss instead, an adaptive optimizer (Adam, AdamW, RMSprop, …) divides the penalty's gradient by the running size
of the whole gradient, penalty included, per coordinate: where the penalty dominates, every weight moves about
one learning rate a step whatever its distance to Δ(Θ), ‖w − Δ(Θ)‖ stalls, and the loss barely trains.
"""
from __future__ import annotations

import logging
import math

import torch

from ._errors import CompressionError

__all__ = ["Penalty", "step_sizes"]

log = logging.getLogger(__name__)
_ADAM = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam)
_warned: set[type] = set()


def _momentum(group) -> float:
    """1/(1 − β)·(1 − dampening): the steady-state gain of heavy-ball momentum on a constant gradient."""
    beta = group.get("momentum", 0.0) or 0.0
    return (1 - group.get("dampening", 0.0)) / (1 - beta) if beta > 0 else 1.0


def step_sizes(optimizer: torch.optim.Optimizer, group: dict, p: torch.nn.Parameter) -> torch.Tensor | float:
    """η for ``p``: how far ``optimizer`` moves ``p`` (per coordinate) per unit of a constant gradient, at its
    current learning rate and state — lr for SGD (over 1 − momentum with momentum), lr/(√v̂ + ε) for the Adam
    family (v̂ the bias-corrected second moment; the largest one with amsgrad), lr/(√Σg² + ε) for Adagrad,
    lr/(√v + ε) for RMSprop (centred: the variance; over 1 − momentum with momentum), lr/u for Adamax,
    lr·√(Δ² + ε)/√(v + ε) for Adadelta. Any other optimizer: its ``lr`` (logged once, as a warning)."""
    lr, state = group["lr"], optimizer.state.get(p, {})
    if isinstance(optimizer, torch.optim.SGD):
        return lr * _momentum(group)
    t = float(state["step"]) if "step" in state else 0.0
    if isinstance(optimizer, _ADAM) and "exp_avg_sq" in state:
        v = state["max_exp_avg_sq"] if group.get("amsgrad") and "max_exp_avg_sq" in state else state["exp_avg_sq"]
        return lr / ((v / (1 - group["betas"][1] ** t)).sqrt() + group["eps"])
    if isinstance(optimizer, torch.optim.Adamax) and "exp_inf" in state:
        return lr / state["exp_inf"]                           # u = max(β₂u, |g| + ε); the bias correction is m's
    if isinstance(optimizer, torch.optim.Adagrad) and "sum" in state:
        return lr / (1 + (t - 1) * group["lr_decay"]) / (state["sum"].sqrt() + group["eps"])
    if isinstance(optimizer, torch.optim.RMSprop) and "square_avg" in state:
        v = state["square_avg"] - state["grad_avg"] ** 2 if group.get("centered") else state["square_avg"]
        return lr * _momentum(group) / (v.clamp(min=0).sqrt() + group["eps"])
    if isinstance(optimizer, torch.optim.Adadelta) and "square_avg" in state:
        return lr * (state["acc_delta"] + group["eps"]).sqrt() / (state["square_avg"] + group["eps"]).sqrt()
    if not state and isinstance(optimizer, (*_ADAM, torch.optim.Adamax, torch.optim.Adagrad, torch.optim.RMSprop,
                                            torch.optim.Adadelta)):
        return lr                                  # no step taken on p yet: no preconditioner to follow
    if type(optimizer) not in _warned:
        _warned.add(type(optimizer))
        log.warning("lc_penalty.step: %s is not one of torch.optim's; the penalty's proximal step uses its learning "
                    "rate as the step size", type(optimizer).__name__)
    return lr


class Penalty:
    """The ``lc_penalty`` given to the L step: ``lc_penalty()`` is μ/2 Σ‖w − Δ(Θ) − λ/μ‖², a differentiable scalar;
    ``lc_penalty.add_grad_()`` adds its gradient μ(w − Δ(Θ) − λ/μ) to each weight's ``.grad`` in place, without an
    autograd graph — the same step, cheaper: ``loss.backward(); lc_penalty.add_grad_(); optimizer.step()``;
    ``lc_penalty.prox_(eta)`` takes the proximal step on the penalty alone (stable for every μ);
    ``lc_penalty.step(optimizer)`` takes it in the optimizer's own metric, after ``optimizer.step()``: the way to
    use any optimizer, adaptive ones included."""

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
    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The penalty, decoupled from the loss: call after ``optimizer.step()`` (and leave ``lc_penalty()`` out of
        the loss). Each compressed weight takes the exact proximal step on the penalty in the optimizer's own metric,

            w ← argmin_v ½‖v − w‖²_{1/η} + μ/2 ‖v − Δ(Θ) − λ/μ‖² = w + f (Δ(Θ) + λ/μ − w),   f = ημ / (1 + ημ),

        with η the optimizer's step size per coordinate at its current learning rate (:func:`step_sizes`: a
        learning-rate scheduler is followed; Adam's η is lr/(√v̂ + ε)). The loss's step is η∇L per coordinate and
        the penalty's is scaled alike, so the fixed point is ∇L(w) + μ(w − Δ(Θ) − λ/μ) = 0: the L step's own
        objective, as with plain gradient descent on loss + penalty. Stable for every μ (f < 1). A compressed
        weight that is in no parameter group of ``optimizer`` is an error."""
        seen = set()
        for group in optimizer.param_groups:
            for p in group["params"]:
                seen.add(id(p))
        missing = [i for i, (p, _) in enumerate(self.targets) if id(p) not in seen]
        if missing:
            raise CompressionError(f"lc_penalty.step(optimizer): {len(missing)} compressed tensor(s) (shape "
                                   f"{tuple(self.targets[missing[0]][0].shape)}, …) are in no parameter group of "
                                   "the optimizer, so their penalty would never be applied; give the optimizer "
                                   "model.parameters()")
        targets = {id(p): t for p, t in self.targets}
        for group in optimizer.param_groups:
            for p in group["params"]:
                t = targets.get(id(p))
                if t is None:
                    continue
                eta_mu = step_sizes(optimizer, group, p) * self.mu
                p.lerp_(t, eta_mu / (1 + eta_mu))                                # w + f (t − w)

    @torch.no_grad()
    def add_grad_(self) -> None:
        for p, t in self.targets:
            if p.grad is None:
                p.grad = self.mu * (p - t)
            else:
                p.grad.add_(p - t, alpha=self.mu)                                 # ∇ = μ(w − Δ(Θ) − λ/μ)
