"""Second moments of the inputs of a model's linear layers, from one forward pass on a calibration batch: what
data-aware C steps weigh their objective by. For a layer y = W x with inputs X (in × n),

    ‖(W − Δ) X‖²_F = tr((W − Δ) H (W − Δ)ᵀ) · n,    H = X Xᵀ / n,

so its diagonal h_j = mean x_j² weighs every weight of input j (the diagonal form; Wanda's score |W_ij|·‖X_j‖ is
its pruning case) and H itself whitens a low-rank C step (SVD-LLM). The statistics are facts about the task, found
when the tasks are built (``lc.Algorithm(..., example_input=calibration_batch)``), never hyperparameters: no state
or artifact holds them, and Δ(Θ) is computed without them.

A layer is ``nn.Linear`` (weight (out, in): the input multiplies axis 1) or ``transformers``' ``Conv1D`` (weight
(in, out): axis 0), found by the identity of its weight, so a tied weight (a language model's head and its token
embedding) gets the statistics of the layer that multiplies an input by it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._errors import CompressionError
from ._hooks import forward_with_hooks

__all__ = ["Moments", "input_axis", "input_moments", "layer_of"]


def input_axis(module: nn.Module) -> int | None:
    """The axis of the layer's weight that its input multiplies: 1 for ``nn.Linear`` (out, in), 0 for
    ``transformers``' ``Conv1D`` (in, out); None for any other module."""
    if isinstance(module, nn.Linear):
        return 1
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None and module.weight.dim() == 2:
        return 0
    return None


@dataclass(frozen=True)
class Moments:
    """Of one layer's input over the calibration batch: ``count`` vectors x, ``diag`` = mean x_j² (float64, one per
    input), and ``full`` = mean x xᵀ (in × in, float64) when asked for."""

    count: int
    diag: torch.Tensor
    full: torch.Tensor | None = None


def input_moments(model: nn.Module, example_input, full: bool = False) -> dict[str, Moments]:
    """{module name: Moments of its input} for every linear layer the model calls on ``example_input`` (a layer
    called several times pools all its inputs). One forward pass, in eval mode, without gradients; the sums are
    float64, on the layer's device. ``full=True`` also sums x xᵀ: in² values per layer."""
    sums: dict[str, list] = {}

    def hook(name, module, args, out):
        x = args[0].detach()
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        acc = sums.setdefault(name, [0, torch.zeros(x.shape[1], dtype=torch.float64, device=x.device), None])
        acc[0] += x.shape[0]
        acc[1] += (x * x).sum(0)
        if full:
            acc[2] = x.T @ x if acc[2] is None else acc[2].addmm_(x.T, x)

    forward_with_hooks(model, example_input, hook, only=lambda m: input_axis(m) is not None)
    return {name: Moments(n, s / n, None if ss is None else ss / n) for name, (n, s, ss) in sums.items() if n}


def layer_of(model: nn.Module, param_name: str) -> tuple[str, int]:
    """(module name, input axis) of the linear layer whose weight is the parameter ``param_name`` (by identity: a
    tied weight is found under whichever layer multiplies an input by it)."""
    p = model.get_parameter(param_name)
    for name, m in model.named_modules():
        axis = input_axis(m)
        if axis is not None and m.weight is p:
            return name, axis
    raise CompressionError(f"{param_name!r} is not the weight of a linear layer (nn.Linear, or transformers' Conv1D), "
                           "so no input of the model multiplies it and a data-aware C step has no statistics for it; "
                           "compress it with a plain compression")
