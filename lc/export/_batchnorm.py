"""Batch norm folded into the layer before it, on the ``torch.fx`` graph of the exported model."""
from __future__ import annotations

import logging

import torch
from torch import nn

from ._layers import SparseLinear

__all__ = ["fold_batch_norms"]

log = logging.getLogger(__name__)


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, SparseLinear) or super().is_leaf_module(m, qualname)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Eval-mode batch norm folded into the conv or linear layer before it (when that layer feeds nothing else):
    W ← W·γ/√(σ² + ε) per output channel, b ← (b − m)·γ/√(σ² + ε) + β. Needs ``torch.fx`` tracing; a model that
    cannot be traced (data-dependent control flow) is returned unchanged."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure means: keep the model as it is
        log.info("batch norms not folded: the model cannot be traced by torch.fx (%s)", e)
        return model
    gm = torch.fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        prev = node.args[0] if bn is not None and node.args else None
        layer = modules.get(prev.target) if isinstance(prev, torch.fx.Node) and prev.op == "call_module" else None
        if not (isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.track_running_stats
                and isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and len(prev.users) == 1
                and sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == prev.target) == 1):
            continue
        with torch.no_grad():
            scale = (bn.weight if bn.affine else 1) / torch.sqrt(bn.running_var + bn.eps)
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            shift = (bias - bn.running_mean) * scale + (bn.bias if bn.affine else 0)
            layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)))
            layer.bias = nn.Parameter(shift.to(layer.weight.dtype))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        folded += 1
    if not folded:
        return model
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


