"""Export of low-rank layers: a ``Linear`` or ``Conv2d`` whose weight is Δ = U V (``lc.LowRank``,
``lc.RankSelection``) becomes two layers, where that lowers the multiply-adds, r(m + n) < mn.

Linear → ``Linear(n, r)`` then ``Linear(r, m)``. A conv kernel viewed by scheme 1 (``AsIs``) → a kh×kw conv to r
channels then a 1×1 conv; by scheme 2 → a 1×kw conv to r channels then a kh×1 conv (stride, padding and dilation
split between the two). Grouped convs, non-zero padding modes and string paddings stay dense."""
from __future__ import annotations

import torch
from torch import nn

from ..compression.lowrank import LowRank, RankSelection, factors
from ..params import AsIs
from ._registry import register

__all__ = ["two_layers"]


def _low_rank_linear(layer: nn.Linear, u: torch.Tensor, v: torch.Tensor) -> nn.Module:
    r = u.shape[1]
    kw = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.Linear(layer.in_features, r, bias=False, **kw)
    second = nn.Linear(r, layer.out_features, bias=layer.bias is not None, **kw)
    return _pair(first, second, v, u, layer.bias)


def _pair(first: nn.Module, second: nn.Module, w1: torch.Tensor, w2: torch.Tensor, bias) -> nn.Sequential:
    """first → second, with their weights set to the factors and the original layer's bias on the second."""
    with torch.no_grad():
        first.weight.copy_(w1)
        second.weight.copy_(w2)
        if bias is not None:
            second.bias.copy_(bias)
    return nn.Sequential(first, second)


def _low_rank_conv(layer: nn.Conv2d, u: torch.Tensor, v: torch.Tensor, scheme: int) -> nn.Module:
    o, i, kh, kw = layer.weight.shape
    r = u.shape[1]
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    bias, kw_ = layer.bias is not None, {"device": layer.weight.device, "dtype": layer.weight.dtype}
    if scheme == 1:      # W (o) × (i·kh·kw) = U V: a kh×kw conv to r channels, then 1×1
        first = nn.Conv2d(i, r, (kh, kw), layer.stride, layer.padding, layer.dilation, bias=False, **kw_)
        second = nn.Conv2d(r, o, 1, bias=bias, **kw_)
        w1, w2 = v.reshape(r, i, kh, kw), u.reshape(o, r, 1, 1)
    else:                # W (o·kh) × (i·kw) = U V: a 1×kw conv to r channels, then kh×1
        (ph, pw) = layer.padding
        first = nn.Conv2d(i, r, (1, kw), (1, sw), (0, pw), (1, dw), bias=False, **kw_)
        second = nn.Conv2d(r, o, (kh, 1), (sh, 1), (ph, 0), (dh, 1), bias=bias, **kw_)
        w1 = v.reshape(r, i, 1, kw)
        w2 = u.reshape(o, kh, r).permute(0, 2, 1).reshape(o, r, kh, 1)
    return _pair(first, second, w1, w2, layer.bias)


@register(LowRank, RankSelection)
def two_layers(layer: nn.Module, view, compression, state, ctx=None) -> nn.Module | None:
    """The factorised layer, or None (keep ``layer`` dense with Δ(Θ)) where two layers would not be cheaper."""
    uv = factors(state)
    if uv is None or not isinstance(view, AsIs):
        return None
    u, v = uv
    m, n = u.shape[0], v.shape[1]
    if not 0 < u.shape[1] * (m + n) < m * n:
        return None                                    # rank 0 (Δ = 0), or two layers would cost more
    if isinstance(layer, nn.Linear):
        return _low_rank_linear(layer, u, v)
    if (isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.padding_mode == "zeros"
            and not isinstance(layer.padding, str)):
        return _low_rank_conv(layer, u, v, view.scheme)
    return None
