"""The baselines of the structured-pruning study (:mod:`experiments.structured_study`), against which LC's exact
global allocation of channels is measured, and the pieces they share:

- :class:`Channels`: a model's channel groups (:func:`lc.structure.channel_groups`), their layer classes (the groups
  produced by the same layers: one layer's channels, or the channels a residual addition couples across layers),
  and the exact multiply-adds of the model with any set of groups removed, without building it;
- :func:`prune`: the model with the groups outside a mask removed physically (zeroed, then
  :func:`lc.structure.remove_channels`): a smaller dense model whose removed channels cannot come back;
- :func:`fine_tune`: SGD with Nesterov momentum, a cosine learning rate, cross-entropy (+ distillation);
- :func:`torch_pruning`: Torch-Pruning's magnitude pruner (L1 or group-norm importance; Fang et al., CVPR 2023),
  stepped until the FLOPs target is met, as its benchmarks do;
- :func:`mc_search`: a layer-wise allocation sampled in the spirit of RL-Pruner (Wang & Kindratenko, 2024): in
  stages, Monte Carlo samples of the share of the removed channels each layer class takes, scored by validation
  accuracy, the sampling distribution moved toward the best samples, the best one pruned, then distillation
  fine-tuning — every evaluation counted in the training budget.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

import lc
from lc.structure import channel_groups, remove_channels

__all__ = ["Channels", "prune", "zeroed", "fine_tune", "torch_pruning", "mc_search", "Search", "eval_epochs"]

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class Channels:
    """The channel groups of ``model`` on ``example``: ``classes`` (layer tuple → indices of its groups, in the
    model's order), ``norms`` (‖w_g‖² of each group's members now), and :meth:`flops` of any set of kept groups."""

    def __init__(self, model: nn.Module, example: torch.Tensor):
        graph = channel_groups(model, example)
        self.graph, self.count = graph, len(graph.groups)
        params = {n: p.detach() for n, p in model.named_parameters()}
        self.norms = np.array([sum(float(params[n][j].double().pow(2).sum()) for n, j in g.members)
                               for g in graph.groups])
        self.classes: dict[tuple[str, ...], np.ndarray] = {}
        for i, g in enumerate(graph.groups):
            self.classes.setdefault(tuple(sorted(g.layers)), []).append(i)
        self.classes = {k: np.array(v) for k, v in self.classes.items()}
        group_of = lambda ids: np.array([graph._roots.get(graph._find.find(int(s)), -1) for s in ids])  # noqa: E731
        self._layers = []                                 # (output slots' groups, input slots' groups, MACs per pair)
        for node in graph._graph.graph.nodes:
            if node.op != "call_module" or not isinstance(graph._graph.get_submodule(node.target), _LAYERS):
                continue
            layer = graph._graph.get_submodule(node.target)
            shape = node.meta["tensor_meta"].shape
            positions = math.prod(shape[2:]) if isinstance(layer, nn.modules.conv._ConvNd) else \
                math.prod(shape[1:-1])
            kernel = math.prod(layer.kernel_size) if isinstance(layer, nn.modules.conv._ConvNd) else 1
            self._layers.append((group_of(graph._slots[node.name]), group_of(graph._slots[node.args[0].name]),
                                 kernel * positions))

    def flops(self, kept: np.ndarray) -> int:
        """Multiply-adds per example of the model with the groups outside ``kept`` (a boolean mask) removed: every
        layer's kept outputs × kept inputs × kernel × positions (channels that are never removable count as kept)."""
        alive = np.append(kept, True)                     # index −1: not removable
        return int(sum(alive[out].sum() * alive[inp].sum() * macs for out, inp, macs in self._layers))

    def keep_largest(self, removed: dict[tuple[str, ...], int]) -> np.ndarray:
        """The mask that removes ``removed[c]`` groups of each class c, those of the smallest ‖w_g‖²."""
        kept = np.ones(self.count, dtype=bool)
        for c, ix in self.classes.items():
            m = removed.get(c, 0)
            if m:
                kept[ix[np.argsort(self.norms[ix], kind="stable")[:m]]] = False
        return kept


def prune(model: nn.Module, example: torch.Tensor, channels: Channels, kept: np.ndarray) -> nn.Module:
    """``model`` with the groups outside ``kept`` removed physically (``model`` itself is not modified)."""
    small, _ = remove_channels(zeroed(model, channels, kept), example)
    return small


def zeroed(model: nn.Module, channels: Channels, kept: np.ndarray) -> nn.Module:
    """A copy of ``model`` with the members of the groups outside ``kept`` zeroed (the pruned model's function)."""
    net = copy.deepcopy(model)
    params = dict(net.named_parameters())
    with torch.no_grad():
        for g in np.flatnonzero(~kept):
            for name, j in channels.graph.groups[g].members:
                params[name][j] = 0
    return net


def fine_tune(task, model: nn.Module, epochs: int, lr: float, teacher: nn.Module | None = None) -> None:
    """``epochs`` epochs of ``task.train_epoch`` (SGD, Nesterov momentum) at a cosine learning rate from ``lr`` to
    0; with ``teacher``, the loss is the task's (1 − β)·CE + β·T²·KL (its config's ``distill``, ``temperature``)."""
    opt = task.optimizer(model, lr)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        task.train_epoch(model, opt, teacher=teacher)


def eval_epochs(images: int, train_images: int) -> float:
    """A forward pass over ``images`` counted in training epochs: a training step (forward and backward) costs about
    three forward passes, so it is images / (3 · training images)."""
    return images / (3 * train_images)


# ---------------------------------------------------------------------------------------------- Torch-Pruning
def torch_pruning(model: nn.Module, example: torch.Tensor, reduction: float, importance: str = "group-norm",
                  global_pruning: bool = False, steps: int = 200) -> nn.Module:
    """Torch-Pruning's ``MetaPruner`` with magnitude importance (``"l1"``: ‖·‖₁, ``"group-norm"``: the group's ‖·‖₂,
    DepGraph's), the output layer left alone, stepped (1/``steps`` of the channels at a time, at most 90 % of a
    layer) until the model has ``reduction``× fewer multiply-adds (``lc.measure.flops``) — a pruned copy. Fails on
    the option-A shortcuts of the CIFAR ResNets (Torch-Pruning 1.6.1 mis-maps the padded channels:
    docs/structured.md)."""
    import torch_pruning as tp
    net = copy.deepcopy(model).eval()
    p = {"l1": 1, "group-norm": 2}[importance]
    last = [m for m in net.modules() if isinstance(m, _LAYERS)][-1]
    pruner = tp.pruner.MetaPruner(net, example, importance=tp.importance.GroupMagnitudeImportance(p=p),
                                  global_pruning=global_pruning, pruning_ratio=1.0, max_pruning_ratio=0.9,
                                  iterative_steps=steps, ignored_layers=[last])
    dense = lc.measure.flops(net, example)
    for _ in range(steps):
        if dense / lc.measure.flops(net, example) >= reduction:
            break
        pruner.step()
    with torch.no_grad():
        net(example)                                  # a shape error here is Torch-Pruning's (see the docstring)
    return net


# ---------------------------------------------------------------------------------------------- MC search
@dataclass(frozen=True)
class Search:
    """The Monte Carlo allocation search: ``stages`` pruning stages (the FLOPs reduction reached geometrically),
    ``samples`` candidate allocations per stage (the first is the current distribution itself), log-normal noise of
    scale ``sigma`` on the distribution, which moves a fraction ``step`` toward the mean of the best ``elite``."""

    stages: int = 3
    samples: int = 12
    sigma: float = 0.5
    elite: int = 3
    step: float = 0.5


def _allocation(channels: Channels, share: dict, budget: float) -> np.ndarray:
    """The mask that removes, from each class c, about R · share[c] of its groups (the smallest; at least one
    kept), with the smallest total R (bisection) that brings the multiply-adds within ``budget``."""
    sizes = {c: len(ix) for c, ix in channels.classes.items()}

    def mask(r: float) -> np.ndarray:
        return channels.keep_largest({c: min(n - 1, round(r * share[c])) for c, n in sizes.items()})

    lo, hi = 0.0, max(n / max(share[c], 1e-9) for c, n in sizes.items())
    if channels.flops(mask(hi)) > budget:
        return mask(hi)                               # unreachable: as close as one channel per class allows
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if channels.flops(mask(mid)) <= budget else (mid, hi)
    return mask(hi)


def mc_search(model: nn.Module, example: torch.Tensor, reduction: float, score: Callable[[nn.Module], tuple],
              fine_tune_stage: Callable[[nn.Module, int], None], search: Search, rng: np.random.Generator) -> dict:
    """Prune ``model`` to ``reduction``× fewer multiply-adds in ``search.stages`` stages. At stage s (target
    reduction^(s/S)) sample allocations — the share of the removed channels each layer class takes, the
    current distribution times log-normal noise, renormalised —, prune each by magnitude within its classes,
    score it (``score(model)``: lower is better, e.g. (validation error, loss)), move the distribution toward the
    best, keep the best pruned model and fine-tune it (``fine_tune_stage(model, stage)``). The distribution starts
    proportional to the classes' sizes: the same fraction of every class. Returns the pruned model, the number of
    evaluations and the shares chosen."""
    dense = lc.measure.flops(model, example)
    net, evaluations, share = model, 0, None
    for stage in range(1, search.stages + 1):
        channels = Channels(net, example)
        if share is None:                              # the same fraction of every class
            share = {c: float(len(ix)) for c, ix in channels.classes.items()}
        share = {c: share.get(c, min(share.values())) for c in channels.classes}
        share = {c: v / sum(share.values()) for c, v in share.items()}
        budget = dense / reduction ** (stage / search.stages)
        candidates = [share] + [_perturbed(share, search.sigma, rng) for _ in range(search.samples - 1)]
        scored = []
        for q in candidates:
            kept = _allocation(channels, q, budget)
            scored.append((score(zeroed(net, channels, kept)), q, kept))
            evaluations += 1
        scored.sort(key=lambda t: t[0])
        elite = [q for _, q, _ in scored[:search.elite]]
        share = {c: (1 - search.step) * share[c] + search.step * float(np.mean([q[c] for q in elite]))
                 for c in share}
        net = prune(net, example, channels, scored[0][2])
        fine_tune_stage(net, stage)
    return {"model": net, "evaluations": evaluations, "share": {"+".join(c): round(v, 4) for c, v in share.items()}}


def _perturbed(share: dict, sigma: float, rng: np.random.Generator) -> dict:
    q = {c: v * math.exp(sigma * rng.standard_normal()) for c, v in share.items()}
    total = sum(q.values())
    return {c: v / total for c, v in q.items()}
