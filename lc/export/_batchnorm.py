"""Batch norm folded into the layer before it, on the ``torch.fx`` graph of the exported model."""
from __future__ import annotations

import logging

import torch
from torch import nn

from ._layers import SparseLinear

__all__ = ["fold_batch_norms"]

log = logging.getLogger(__name__)


class _Tracer(torch.fx.Tracer):
    """Layers lc.export made are leaves: fx need not trace into them (and cannot trace the int8 kernel's forward)."""

    def is_leaf_module(self, m, qualname):
        from .quantized import Int8Linear, Reweighted
        return isinstance(m, (SparseLinear, Int8Linear, Reweighted)) or super().is_leaf_module(m, qualname)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Eval-mode batch norm folded into the conv or linear layer before it (when that layer feeds nothing else and
    each is called once): W ← W·γ/√(σ² + ε) per output channel, b ← (b − m)·γ/√(σ² + ε) + β, and the batch norm
    replaced by ``nn.Identity`` in place, so the model keeps its class and its other modules' names. The pairs are
    found on the ``torch.fx`` graph; a model that cannot be traced (data-dependent control flow) is returned
    unchanged."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure means: keep the model as it is
        log.info("batch norms not folded: the model cannot be traced by torch.fx (%s)", e)
        return model
    modules = dict(model.named_modules())
    every = [m for _, m in model.named_modules(remove_duplicate=False)]       # a module under each of its names
    calls = [n.target for n in graph.nodes if n.op == "call_module"]
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        prev = node.args[0] if bn is not None and node.args else None
        layer = modules.get(prev.target) if isinstance(prev, torch.fx.Node) and prev.op == "call_module" else None
        if not (isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.track_running_stats
                and isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and len(prev.users) == 1
                and calls.count(prev.target) == 1 and calls.count(node.target) == 1
                and sum(m is bn for m in every) == 1):                      # not shared under another name either
            continue
        with torch.no_grad():
            scale = (bn.weight if bn.affine else 1) / torch.sqrt(bn.running_var + bn.eps)
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            shift = (bias - bn.running_mean) * scale + (bn.bias if bn.affine else 0)
            layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)))
            layer.bias = nn.Parameter(shift.to(layer.weight.dtype))
        parent, _, attr = node.target.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
    return model
