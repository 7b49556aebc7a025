"""Batch-norm statistics for a compressed model.

A batch norm's running mean and variance are buffers, not parameters: the C step does not touch them, so the model
Δ(Θ) (and its export) keeps the statistics the L step's weights w produced. Where Δ(Θ) differs from w — channels
removed upstream, weights moved to a grid — those statistics are stale, and the model in ``eval()`` mode normalises
with the wrong scale (measured on ResNet20 pruned to 3× fewer multiply-adds: 28.7 % validation error with w's
statistics, 10.1 % after recalibration; docs/structured.md). Recalibrating them — forward passes over training
inputs, no labels, no gradient — is the standard fix, and part of the compressed model, not of its training. Do it
on Δ(Θ) before :func:`lc.export`, which folds each batch norm into the layer before it.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ._errors import CompressionError

__all__ = ["recalibrate_batchnorm"]


def running_norms(model: nn.Module) -> list[nn.Module]:
    """The batch norms of ``model`` that keep running statistics: those :func:`recalibrate_batchnorm` re-estimates."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Re-estimate every batch norm's running mean and variance of ``model`` on ``batches`` (input tensors; training
    inputs, not the test set): the statistics become the exact averages over all the batches' examples (PyTorch's
    cumulative average, ``momentum=None``: the per-batch means, and the unbiased per-batch variances, weighted
    equally per batch). Only the batch norms run in training mode; every other module keeps its mode (dropout stays
    off in an ``eval()`` model). In place; returns ``model``, in the mode it came in. A model without batch norms is
    returned unchanged; no batch at all is a :class:`lc.CompressionError`; on any error the statistics are left
    as they were."""
    norms = running_norms(model)
    if not norms:
        return model
    saved = [(m, m.momentum, m.training) for m in norms]
    stats = [{k: b.clone() for k, b in m.named_buffers(recurse=False)} for m in norms]
    seen, done = 0, False
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for x in batches:
                model(x)
                seen += 1
        done = seen > 0
    finally:
        for (m, momentum, training), old in zip(saved, stats):
            m.momentum = momentum
            m.train(training)
            if not done:                           # an error, or no batch: the statistics as they were
                for k, b in m.named_buffers(recurse=False):
                    b.copy_(old[k])
    if seen == 0:
        raise CompressionError("recalibrate_batchnorm got no batches: pass an iterable of input tensors (training "
                               "inputs)")
    return model
