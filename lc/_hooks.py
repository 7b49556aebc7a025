"""One forward pass with a hook on every module: how lc learns what a model does with an input (output sizes of
layers, multiply-adds), without changing the model."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["forward_with_hooks"]


def forward_with_hooks(model: nn.Module, inputs: Any,
                       hook: Callable[[str, nn.Module, tuple, Any], None],
                       only: Callable[[nn.Module], bool] | None = None) -> Any:
    """Run ``model`` once on ``inputs`` (a tuple is passed as several arguments) in eval mode and without
    gradients, calling ``hook(name, module, args, output)`` after every module's forward (every module for which
    ``only(module)`` holds). Whatever happens, the hooks are removed and every module's training mode is restored
    (so batch-norm statistics are never updated). Returns the model's output."""
    handles = [m.register_forward_hook(lambda m, args, out, name=name: hook(name, m, args, out))
               for name, m in model.named_modules() if only is None or only(m)]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            return model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    finally:
        for m, training in modes:
            m.train(training)
        for h in handles:
            h.remove()
