"""Channel groups of a model, from its ``torch.fx`` graph: which output channels (filters, neurons) can be removed
together, which parameters produce them, and which layers consume them.

One forward pass on an example input gives every value's shape; then each value's channels (dimension 1 of a
4-D tensor, the features of a 2-D one) are slots of a union–find. A ``Conv``/``Linear`` layer creates one slot per
output channel (a *producer*); batch norms, element-wise activations with f(0) = 0, pools, dropout and spatial
slicing keep the slots; an addition of two tensors (a residual connection) joins their slots pairwise; a
concatenation along the channels concatenates them; ``F.pad`` on the channels adds constant-zero slots (the
option-A shortcut of CIFAR ResNets); a flatten turns a channel into the block of features it becomes. The model's
input and output channels, and channels that go through anything else (an activation with f(0) ≠ 0, a
normalisation across channels, a product of two tensors, an unknown function), are frozen.

A **group** is one class of joined slots with at least one producer and nothing frozen: one channel of the network.
Its *members* are the producers' parameters of that channel — the filter or neuron row of every layer writing into
it, its bias, the scale and shift of every batch norm on it —: when all of them are zero, the channel is zero
everywhere, so its consumers' input slices multiply zeros and the channel can be removed from every layer without
changing the outputs (:func:`remove_channels`). Members of different groups never overlap.

Costs per group: ``count`` (1), ``params`` (the members' values), ``flops`` (the producers' multiply-adds for that
channel, per example: kernel size × input channels × output positions): removing a group saves at least that much.
"""
from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._errors import CompressionError

__all__ = ["ChannelGraph", "Group", "channel_groups", "remove_channels", "channel_tasks"]

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_KEEP_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Hardswish, nn.ELU, nn.Dropout,
                 nn.Dropout2d, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Hardtanh, nn.Softsign)
_KEEP_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.tanh, F.tanh, F.hardswish,
                   F.elu, F.dropout, F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
                   F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.hardtanh}
_KEEP_METHODS = {"relu", "tanh", "contiguous", "clone", "detach"}
_FLATTEN = {torch.flatten, "flatten"}
_ADD = {operator.add, torch.add, operator.iadd, "add", "add_"}


@dataclass
class Group:
    """One removable channel: ``members`` (parameter name, row) — the rows that are zero when it is removed —,
    ``cost`` per kind, and ``layers``: the names of the layers producing it."""

    members: list[tuple[str, int]]
    cost: dict[str, int]
    layers: tuple[str, ...]


@dataclass
class ChannelGraph:
    """The groups of a model, and what removing them touches (see the module docstring)."""

    groups: list[Group]
    row_group: dict[str, np.ndarray]            # parameter name → group of each row (−1: not removable)
    frozen: int                                  # producer channels that cannot be removed (outputs, and the rest)
    notes: list[str] = field(default_factory=list)
    # for removal: slots of values and layers
    _slots: dict = field(default_factory=dict, repr=False)
    _find: object = field(default=None, repr=False)
    _graph: object = field(default=None, repr=False)
    _roots: dict = field(default_factory=dict, repr=False)          # union–find root → group


class _UnionFind:
    def __init__(self):
        self.parent, self.kind = [], []

    def new(self, kind) -> int:
        self.parent.append(len(self.parent))
        self.kind.append(kind)
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        from .export._layers import MicroBatched, SparseLinear
        from .export.quantized import Int8Linear, Reweighted
        return isinstance(m, (*_LAYERS, *_NORMS, SparseLinear, Int8Linear, Reweighted, MicroBatched)) or \
            super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, example) -> torch.fx.GraphModule:
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure is the same user-facing problem
        raise CompressionError(f"channel groups need a model torch.fx can trace; {type(model).__name__} cannot be "
                               f"({type(e).__name__}: {e}). Data-dependent control flow in forward is the usual "
                               "cause: move it out of the traced path") from None
    gm = torch.fx.GraphModule(model, graph)
    from torch.fx.passes.shape_prop import ShapeProp
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(*(example if isinstance(example, tuple) else (example,)))
    except Exception as e:  # noqa: BLE001
        raise CompressionError(f"channel groups: running the model on the example input failed ({e}); give an "
                               "input batch the model accepts") from None
    finally:
        for m, t in modes:
            m.train(t)
    return gm


def _shape(node) -> tuple | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _channels(shape) -> int:
    return shape[1] if len(shape) >= 3 else shape[-1]


def channel_groups(model: nn.Module, example) -> ChannelGraph:
    """The channel groups of ``model`` (see the module docstring), from one forward pass on ``example``."""
    gm = _trace(model, example)
    modules = dict(gm.named_modules())
    uf = _UnionFind()
    slots: dict[str, np.ndarray] = {}
    producers: dict[str, np.ndarray] = {}          # layer → its output slots
    norms: dict[str, np.ndarray] = {}              # batch norm → the slots it scales
    positions: dict[str, int] = {}                 # layer → output positions per example
    calls: dict[str, int] = {}
    notes = []

    def frozen(n: int) -> np.ndarray:
        return np.array([uf.new("frozen") for _ in range(n)], dtype=np.int64)

    def freeze(ids: np.ndarray) -> None:
        anchor = uf.new("frozen")
        for i in ids:
            uf.union(int(i), anchor)

    def arg(a):
        return slots.get(a.name) if isinstance(a, torch.fx.Node) else None

    for node in gm.graph.nodes:
        shape = _shape(node)
        inputs = [a for a in node.args if isinstance(a, torch.fx.Node)]
        first = arg(node.args[0]) if node.args else None
        if node.op == "placeholder":
            slots[node.name] = frozen(_channels(shape)) if shape else None
            continue
        if node.op == "output":
            for a in _nodes(node.args):
                if slots.get(a.name) is not None:
                    freeze(slots[a.name])
            continue
        if shape is None:
            slots[node.name] = None
            continue
        target = modules.get(node.target) if node.op == "call_module" else None
        fn = node.target if node.op == "call_function" else node.target if node.op == "call_method" else None
        if isinstance(target, _LAYERS):
            calls[node.target] = calls.get(node.target, 0) + 1
            if getattr(target, "groups", 1) != 1:
                raise CompressionError(f"channel groups: layer {node.target!r} is a grouped convolution "
                                       f"(groups={target.groups}), which channel removal does not handle")
            out = np.array([uf.new(("producer", node.target, j)) for j in range(_channels(shape))], dtype=np.int64)
            producers[node.target], slots[node.name] = out, out
            positions[node.target] = math.prod(shape[2:]) if len(shape) >= 3 else math.prod(shape[1:-1])
        elif isinstance(target, _NORMS):
            if not target.affine or first is None:
                notes.append(f"{node.target}: a batch norm without scale and shift: its channels are frozen")
                freeze(first) if first is not None else None
                slots[node.name] = frozen(_channels(shape))
            else:
                norms[node.target], slots[node.name] = first, first
        elif isinstance(target, _KEEP_MODULES) or fn in _KEEP_FUNCTIONS or fn in _KEEP_METHODS:
            slots[node.name] = first
        elif isinstance(target, nn.Flatten) or fn in _FLATTEN:
            before = _shape(node.args[0])
            start = (node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 1)) if target is None \
                else target.start_dim
            if first is None or len(before) < 3 or start != 1:
                freeze(first) if first is not None else None
                slots[node.name] = frozen(_channels(shape))
            else:
                slots[node.name] = np.repeat(first, math.prod(before[2:]))
        elif fn in _ADD and len(inputs) == 2 and _shape(inputs[0]) == _shape(inputs[1]) == shape:
            a, b = arg(inputs[0]), arg(inputs[1])
            for i, j in zip(a, b):
                uf.union(int(i), int(j))
            slots[node.name] = a
        elif fn is operator.getitem and first is not None and _spatial_slice(node.args[1], len(shape)):
            slots[node.name] = first
        elif fn is F.pad and first is not None and len(shape) >= 3:
            pad = list(node.args[1] if len(node.args) > 1 else node.kwargs["pad"])
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            channel_pad = pad[2 * (len(shape) - 2): 2 * (len(shape) - 2) + 2] if len(pad) > 2 * (len(shape) - 2) else [0, 0]
            if mode != "constant" or value not in (None, 0, 0.0):
                freeze(first)
                slots[node.name] = frozen(_channels(shape))
            else:
                before, after = (channel_pad + [0, 0])[:2]
                zeros = lambda n: np.array([uf.new("zero") for _ in range(n)], dtype=np.int64)  # noqa: E731
                slots[node.name] = np.concatenate([zeros(before), first, zeros(after)])
        elif fn in (torch.cat, torch.concat) and _cat_dim(node) in (1, -3 if len(shape) == 4 else 1):
            slots[node.name] = np.concatenate([slots[a.name] for a in node.args[0]])
        else:
            label = node.target if node.op == "call_module" else getattr(fn, "__name__", str(fn))
            notes.append(f"{label}: not known to keep channels: the channels through it are frozen")
            for a in inputs:
                if slots.get(a.name) is not None:
                    freeze(slots[a.name])
            slots[node.name] = frozen(_channels(shape))
    shared = [name for name, k in calls.items() if k > 1]
    if shared:
        raise CompressionError(f"channel groups: layers {shared} are called more than once in forward; channel "
                               "removal needs each layer called once")
    return _groups(model, uf, slots, producers, norms, positions, notes, gm)


def _nodes(args):
    out = []
    torch.fx.node.map_arg(args, out.append)
    return out


def _spatial_slice(index, ndim: int) -> bool:
    """x[:, :, …]: the batch and channel dimensions taken whole."""
    if not isinstance(index, tuple) or len(index) < 2:
        return False
    return all(isinstance(s, slice) and s == slice(None) for s in index[:2]) and ndim >= 3


def _cat_dim(node) -> int:
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)


def _groups(model, uf, slots, producers, norms, positions, notes, gm) -> ChannelGraph:
    params = dict(model.named_parameters())
    classes: dict[int, list[int]] = {}
    for s in range(len(uf.parent)):
        classes.setdefault(uf.find(s), []).append(s)
    groups, row_group, index = [], {}, {}
    for root, members in classes.items():
        kinds = [uf.kind[s] for s in members]
        if "frozen" in kinds or not any(isinstance(k, tuple) for k in kinds):
            continue
        index[root] = len(groups)
        rows, cost, layers = [], {"count": 1, "params": 0, "flops": 0}, []
        for k in kinds:
            if not isinstance(k, tuple):
                continue
            _, layer, j = k
            module = model.get_submodule(layer)
            layers.append(layer)
            row = module.weight[j].numel()
            cost["params"] += row + (module.bias is not None)
            cost["flops"] += row * positions[layer]
            rows += [(f"{layer}.weight", j)] + ([(f"{layer}.bias", j)] if module.bias is not None else [])
        groups.append(Group(rows, cost, tuple(layers)))
    for norm, ids in norms.items():
        for j, s in enumerate(ids):
            g = index.get(uf.find(int(s)))
            if g is not None:
                groups[g].members += [(f"{norm}.weight", j), (f"{norm}.bias", j)]
                groups[g].cost["params"] += 2
    for name, p in params.items():
        row_group[name] = np.full(p.shape[0] if p.dim() else 1, -1, dtype=np.int64)
    for g, group in enumerate(groups):
        for name, j in group.members:
            row_group[name][j] = g
    frozen = sum(isinstance(uf.kind[s], tuple) for r, m in classes.items() if r not in index for s in m)
    return ChannelGraph(groups, row_group, frozen, notes, slots, uf, gm, index)


def remove_channels(model: nn.Module, example, tolerance: float = 0.0) -> tuple[torch.fx.GraphModule, int]:
    """The model with every removable channel whose members are all zero (|v| ≤ ``tolerance``) removed from every
    layer that produces, normalises or consumes it, as a ``torch.fx.GraphModule`` (a plain ``nn.Module``); returns
    it and the number of channels removed. The outputs are unchanged (a removed channel is zero everywhere). ``model``
    itself is not modified."""
    graph = channel_groups(copy.deepcopy(model), example)
    gm, uf, slots = graph._graph, graph._find, graph._slots
    params = dict(gm.named_parameters())
    dead = {g for g, group in enumerate(graph.groups)
            if all(float(params[n].detach()[j].abs().max()) <= tolerance for n, j in group.members)}
    by_layer: dict[str, list[int]] = {}
    for g, group in enumerate(graph.groups):
        for name in group.layers:
            by_layer.setdefault(name, []).append(g)
    for name, mine in sorted(by_layer.items()):
        width = gm.get_submodule(name).weight.shape[0]
        if sum(g in dead for g in mine) == width:   # every channel of the layer would go: keep one (zero) channel,
            dead.discard(mine[0])                   # as torch has no layer of width 0 (the outputs are the same)
    if not dead:
        return gm, 0
    def alive(ids) -> np.ndarray:
        return np.array([graph._roots.get(uf.find(int(s))) not in dead for s in ids], dtype=bool)

    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        target = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(target, _LAYERS):
            keep_out = torch.from_numpy(alive(slots[node.name]))
            source = node.args[0]
            keep_in = torch.from_numpy(alive(slots[source.name])) if slots.get(source.name) is not None else None
            _shrink(gm, node.target, target, keep_out, keep_in)
        elif isinstance(target, _NORMS) and slots.get(node.name) is not None:
            _shrink_norm(gm, node.target, target, torch.from_numpy(alive(slots[node.name])))
        elif node.op == "call_function" and node.target is F.pad:
            ids = slots[node.name]
            inner = slots[node.args[0].name]
            before = int(np.flatnonzero(np.isin(ids, inner))[0]) if len(inner) else 0
            keep = alive(ids)
            pad = list(node.args[1])
            d = len(_shape(node)) - 2
            pad[2 * d], pad[2 * d + 1] = int(keep[:before].sum()), int(keep[before + len(inner):].sum())
            node.args = (node.args[0], tuple(pad), *node.args[2:])
    gm.recompile()
    return gm, len(dead)


def _shrink(gm, name, layer, keep_out, keep_in) -> None:
    w = layer.weight.detach()
    if keep_in is not None and keep_in.numel() == w.shape[1]:
        w = w[:, keep_in]                                   # the consumed channels (or flattened features) kept
    w = w[keep_out]
    bias = layer.bias.detach()[keep_out] if layer.bias is not None else None
    kw = {"device": w.device, "dtype": w.dtype}
    if isinstance(layer, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, **kw)
    else:
        new = type(layer)(w.shape[1], w.shape[0], layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                          1, bias is not None, layer.padding_mode, **kw)
    with torch.no_grad():
        new.weight.copy_(w)
        if bias is not None:
            new.bias.copy_(bias)
    new.train(layer.training)
    _set(gm, name, new)


def _shrink_norm(gm, name, norm, keep) -> None:
    new = type(norm)(int(keep.sum()), norm.eps, norm.momentum, norm.affine, norm.track_running_stats,
                     device=norm.weight.device, dtype=norm.weight.dtype)
    with torch.no_grad():
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(norm, attr, None) is not None:
                getattr(new, attr).copy_(getattr(norm, attr)[keep])
        if norm.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(norm.num_batches_tracked)
    new.train(norm.training)
    _set(gm, name, new)


def _set(gm, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, attr, module)


def channel_tasks(model: nn.Module, compression, example) -> dict:
    """``compression_tasks`` for structured pruning of the whole model: one task over every row of every removable
    channel (filters, neurons, their biases and batch norms), in the model's order, with one budget (or penalty)
    across all of them: ``{lc.Param(names): (lc.AsVector, compression)}``; pass the same ``example`` to
    ``lc.Algorithm(..., example_input=example)``."""
    from .params import AsVector, Param
    graph = channel_groups(model, example)
    members = {n for group in graph.groups for n, _ in group.members}
    if not members:
        raise CompressionError(f"{type(model).__name__} has no removable channel (every layer's output is the "
                               "model's output, or frozen)")
    return {Param([n for n, _ in model.named_parameters() if n in members]): (AsVector, compression)}
