"""The structured families of the sweeps: whole channels (filters, neurons) removed, the budget allocated across
layers by the exact C step (``lc.ChannelPruning`` over ``lc.channel_tasks``), and the run exported with its zero
channels removed (``lc.export(..., channels=True)``), so that its FLOPs and latency are those of a smaller dense
model. :mod:`experiments.schemes` registers them; the sweep records what they kept (:func:`kept_channels`).

- ``channels`` (kept fraction): at most that fraction of the removable channels is kept (``cost="count"``);
- ``channels-flops`` (FLOPs reduction r): the kept channels' producing layers may keep 1/r of their multiply-adds
  (``cost="flops"``, ``keep=1/r``); the consumers' input slices shrink too, so the exported model has at least about
  r× fewer multiply-adds (measured: the rows' ``flops_exported``).
"""
from __future__ import annotations

import torch
from torch import nn

import lc

__all__ = ["by_count", "by_flops", "kept_channels"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def by_count(model: nn.Module, fraction: float, example: torch.Tensor) -> dict:
    """``compression_tasks``: every removable channel of ``model`` in one task, at most ``fraction`` of them kept."""
    return lc.channel_tasks(model, lc.ChannelPruning(keep=fraction, cost="count"), example)


def by_flops(model: nn.Module, reduction: float, example: torch.Tensor) -> dict:
    """``compression_tasks``: every removable channel in one task, their producers' multiply-adds cut ``reduction``×."""
    return lc.channel_tasks(model, lc.ChannelPruning(keep=1 / reduction, cost="flops"), example)


def kept_channels(reference: nn.Module, exported: nn.Module) -> dict[str, list[int]]:
    """``{layer: [kept, of]}``: the output channels (or features) of every linear and convolutional layer of the
    exported model against the reference's (``lc.export`` keeps the layers' names; one zero channel stays where a
    layer lost them all)."""
    out = {}
    for name, layer in reference.named_modules():
        if isinstance(layer, _LAYERS):
            small = exported.get_submodule(name)
            out[name] = [small.weight.shape[0], layer.weight.shape[0]]
    return out
