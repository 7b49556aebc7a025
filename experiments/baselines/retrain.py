"""Compression with retraining, at the training budget of the LC run (the task's own L step, called as often):
compress-then-fine-tune with the structure fixed, gradual magnitude pruning, and iterative magnitude pruning with
rewinding.

The structure is held fixed by re-parametrising the weights (``torch.nn.utils.parametrize``): the optimizer of the
task's L step sees the free parameters (the kept weights, a codebook, two factors), never the weights, so that
the structure holds at every step whatever the optimizer (its momentum and adaptive scales included):

- :class:`Masked`: W = V ⊙ m — a weight outside the mask is zero and gets no gradient;
- :class:`Tied`: W = c[z] — the weights of a cluster share one value, whose gradient is the sum of theirs
  (∂L/∂c_k = Σ_{i: z_i = k} ∂L/∂W_i, as in Deep Compression and TF-MOT's clustering);
- :class:`Factored`: W = U V — the factors are trained.

At the end the weights are projected onto the lc state of that structure (``lc.Compressed.direct``: a fixed mask,
shared values and a rank-r product are already there, so nothing moves; ``chosen.projection_change`` says by how
much it did) and saved with ``lc.save`` as LC's runs are."""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

import lc
from lc.compression.lowrank import factors

from .common import Budget, Job, Outcome, project, train_size

__all__ = ["Masked", "Tied", "Factored", "parametrized", "finetune", "masks", "tied", "factored", "gmp",
           "cubic_sparsity", "imp", "early_iterate"]


class Masked(nn.Module):
    """W = V ⊙ m for a fixed 0/1 mask m (a buffer, which :func:`gmp` and :func:`imp` update between L steps)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, v):
        return v * self.mask


class Tied(nn.Module):
    """W = c[z] for fixed assignments z (a buffer of W's shape) and a trained codebook c: ∂L/∂c_k is the sum of
    ∂L/∂W_i over the weights of cluster k, or (``mean=True``) their mean — the step each of them would take alone,
    so that a centroid moves under the L step's learning rate as a weight does (the sum is n_k times that)."""

    def __init__(self, codebook: torch.Tensor, codes: torch.Tensor, mean: bool = False):
        super().__init__()
        self.register_buffer("codes", codes)
        counts = torch.bincount(codes.reshape(-1), minlength=codebook.numel()).clamp(min=1)
        self.register_buffer("scale", (1 / counts if mean else torch.ones_like(counts)).to(codebook.dtype))
        self.start = codebook.detach().clone()

    def forward(self, c):
        c = (c - c * self.scale).detach() + c * self.scale           # c forward; ∂/∂c × scale backward
        return c[self.codes]

    def right_inverse(self, w):
        return self.start.clone()


class Factored(nn.Module):
    """W = U V, reshaped to the layer's weight (a kernel as out × in·k·k, lc's ``AsIs`` view); U, V trained."""

    def __init__(self, u: torch.Tensor, v: torch.Tensor, shape):
        super().__init__()
        self.shape, self.start = tuple(shape), (u.detach().clone(), v.detach().clone())

    def forward(self, u, v):
        return (u @ v).reshape(self.shape)

    def right_inverse(self, w):
        return tuple(t.clone() for t in self.start)


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module, _, attr = name.rpartition(".")
    return (model.get_submodule(module) if module else model), attr


@contextlib.contextmanager
def parametrized(model: nn.Module, forms: Mapping[str, nn.Module]):
    """Within this context each weight named in ``forms`` is computed by its form from free parameters (which
    ``model.parameters()`` then lists instead); on exit each holds its last value as a plain parameter again."""
    done = []
    try:
        for name, form in forms.items():
            module, attr = _owner(model, name)
            parametrize.register_parametrization(module, attr, form, unsafe=True)
            done.append((module, attr))
        yield
    finally:
        for module, attr in done:
            parametrize.remove_parametrizations(module, attr, leave_parametrized=True)


def free(model: nn.Module, name: str) -> torch.Tensor:
    """The free parameter behind the parametrized weight ``name`` (V of W = V ⊙ m)."""
    module, attr = _owner(model, name)
    return getattr(module.parametrizations, attr).original


# ------------------------------------------------------------------------------------------ the structures
def masks(model: nn.Module, compressed: lc.Compressed, tasks: dict):
    """Pruning: the mask of Δ(Θ)'s nonzeros, fixed."""
    return {n: Masked((d != 0).to(d.dtype)) for n, d in compressed.deltas().items()}, tasks


def tied(model: nn.Module, compressed: lc.Compressed, tasks: dict, mean: bool = False):
    """Clustering: Δ(Θ)'s distinct values per weight are the codebook, which value each weight takes is fixed
    (``mean``: see :class:`Tied`)."""
    forms = {}
    for n, d in compressed.deltas().items():
        codebook, codes = torch.unique(d, return_inverse=True)
        forms[n] = Tied(codebook, codes, mean)
    return forms, tasks


def factored(model: nn.Module, compressed: lc.Compressed, tasks: dict):
    """Low rank: the factors U, V of each matrix the direct compression factorised, its rank fixed (a matrix it
    kept dense stays dense and free, as in the LC run); the final projection is ``lc.LowRank`` at those ranks."""
    forms, final = {}, {}
    for task, state in zip(compressed.tasks, compressed.states):
        uv = factors(state)
        if uv is None:
            continue
        (name,) = task.param_names
        forms[name] = Factored(*uv, model.get_parameter(name).shape)
        final[lc.Param(name)] = (lc.AsIs, lc.LowRank(target_rank=int(state.meta["rank"])))
    return forms, final


def finetune(job: Job, value, structure: Callable) -> Outcome:
    """Compress, then fine-tune with the structure fixed: Θ₀ = Π(w̄) (the direct compression: LC's step 0), then
    min over the free parameters φ of L(Δ(φ)) by the task's L step for the LC run's number of L steps, starting
    from Δ(Θ₀): with a fixed mask, magnitude pruning + fine-tuning (Han et al., "Learning both weights and
    connections for efficient neural networks", NeurIPS 2015); with fixed assignments and the codebook trained,
    weight clustering + fine-tuning of the centroids (Han et al., "Deep compression", ICLR 2016; TF-MOT's
    ``cluster_weights``); with the factors trained, truncated SVD + fine-tuning (Denton et al., NeurIPS 2014;
    Jaderberg et al., BMVC 2014). ``structure(model, Θ₀, tasks)`` gives the forms and the final tasks."""
    model = job.copy()
    tasks = job.family.tasks(model, value)
    compressed, _, c_start = project(model, tasks)                  # Θ₀ = Π(w̄): the start, as LC's step 0
    forms, final = structure(model, compressed, tasks)
    budget = Budget(job)
    with parametrized(model, forms):
        for j in range(job.steps):
            budget(model, j)                                        # min_φ L(Δ(φ)): the task's L step, μ = 0
    compressed, change, c_end = project(model, final)
    return budget.outcome(model, compressed, c_start + c_end, projection_change=change)


# ------------------------------------------------------------------------------------------ gradual pruning
def cubic_sparsity(j: int, n: int, final: float) -> float:
    """Zhu & Gupta's schedule: the sparsity at pruning step j of n, s_j = s_f (1 − (1 − j/n)³) from s_0 = 0 to
    s_n = s_f, then s_f (at n = 0: s_f at once)."""
    if n <= 0 or j >= n:
        return final
    return final * (1 - (1 - j / n) ** 3)


def _kappas(tasks: dict) -> list[tuple[list[str], int]]:
    """(weight names, κ) of each pruning task: the weights it prunes together and how many of them it keeps."""
    out = []
    for param, (_, compression) in tasks.items():
        if not isinstance(compression, lc.ConstraintL0Pruning):
            raise lc.CompressionError(f"gradual and iterative pruning need ConstraintL0Pruning tasks, not "
                                      f"{type(compression).__name__}")
        out.append((list(param.targets), int(compression.kappa)))
    return out


@torch.no_grad()
def _prune_to(model: nn.Module, forms: dict, names: list[str], keep: int) -> None:
    """Keep the ``keep`` largest |W| of ``names`` together (W = V ⊙ m: a pruned weight stays pruned)."""
    w = torch.cat([(free(model, n) * forms[n].mask).reshape(-1).abs() for n in names])
    mask = torch.zeros_like(w)
    mask[torch.topk(w, keep, sorted=False).indices] = 1
    start = 0
    for n in names:
        m = forms[n].mask
        m.copy_(mask[start:start + m.numel()].reshape(m.shape))
        start += m.numel()


def gmp(job: Job, value, fraction: float = 0.5) -> Outcome:
    """Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", ICLR workshops 2018,
    arXiv:1710.01878): min_w L(w) s.t. ‖w‖₀ ≤ κ, approached by pruning the smallest |w| at the start of L steps
    0 … n (n = ⌊(steps − 1)·fraction⌋, half the budget by default) to the cubic schedule's sparsity
    (:func:`cubic_sparsity`), training between prunings and for the rest of the budget with the mask fixed. One
    magnitude threshold over all the weights a task prunes together (the LC family's grouping: all weights
    jointly for ``pruning``). Pruning happens between L steps (the budget's granularity), not every few hundred
    minibatches as in the paper."""
    model = job.copy()
    tasks = job.family.tasks(model, value)
    groups = _kappas(tasks)
    forms = {n: Masked(torch.ones_like(model.get_parameter(n))) for names, _ in groups for n in names}
    n = int((job.steps - 1) * fraction)
    budget, schedule = Budget(job), []
    with parametrized(model, forms):
        for j in range(job.steps):
            if j <= n:
                for names, kappa in groups:
                    size = sum(forms[m].mask.numel() for m in names)
                    keep = kappa if j >= n else round(size * (1 - cubic_sparsity(j, n, 1 - kappa / size)))
                    _prune_to(model, forms, names, max(keep, kappa))
                schedule.append(sum(int(f.mask.sum()) for f in forms.values()))
            budget(model, j)
    compressed, change, c_time = project(model, tasks)
    return budget.outcome(model, compressed, c_time, kept_per_step=schedule, pruning_steps=n + 1,
                          projection_change=change)


# ------------------------------------------------------------------------------------------ lottery tickets
def early_iterate(job: Job, epochs: int) -> tuple[dict[str, torch.Tensor], int]:
    """The reference's own training replayed for its first ``epochs`` epochs (the same seed, initialisation,
    batches and learning rates: deterministic, so these are the weights its training passed through), and the
    training examples that took. Needs an adapter whose reference training can be replayed
    (:class:`tasks.classification.Classification` with a reference it trained itself)."""
    task = job.task
    config = getattr(task, "config", None)
    if config is None or not hasattr(config, "ref_epochs") or getattr(config, "weights", None) is not None:
        raise lc.CompressionError("imp rewinds to an early iterate of the reference's training, which needs an "
                                  "adapter that trained the reference itself and can replay it "
                                  "(tasks.classification.Classification without weights=); use gmp or ft-prune")
    replay = type(task)(dataclasses.replace(config, ref_epochs=epochs), data=task.data)
    return replay.reference(cache_dir=None).state_dict(), epochs * (train_size(task) or 0)


def imp(job: Job, value, rounds: int = 4, rewind_epochs: int = 1) -> Outcome:
    """Iterative magnitude pruning with rewinding (lottery tickets: Frankle & Carbin, ICLR 2019; rewinding to an
    early iterate: Frankle, Dziugaite, Roy & Carbin, ICML 2020): R rounds; before round r the smallest |w| are
    pruned (round 1: of the reference; then of the weights round r − 1 trained) so that a fraction f^(r/R) is
    kept, every weight (biases too) is rewound to the reference's training at epoch ``rewind_epochs``
    (:func:`early_iterate`), and the masked network is trained for steps/R of the budget's L steps with a fresh L
    step (a fresh optimizer). What it optimises: min_w L(w ⊙ m) from w_k ⊙ m for the final mask m. The replayed
    epochs are counted in the row's epochs."""
    rewind, extra = early_iterate(job, rewind_epochs)
    model = job.copy()
    tasks = job.family.tasks(model, value)
    groups = _kappas(tasks)
    forms = {n: Masked(torch.ones_like(model.get_parameter(n))) for names, _ in groups for n in names}
    r_total = max(1, min(rounds, job.steps))
    bounds = [round(job.steps * r / r_total) for r in range(r_total + 1)]
    kept, examples, l_time = [], extra, 0.0
    with parametrized(model, forms):
        for r in range(r_total):
            for names, kappa in groups:
                size = sum(forms[m].mask.numel() for m in names)
                keep = kappa if r == r_total - 1 else round(size * (kappa / size) ** ((r + 1) / r_total))
                _prune_to(model, forms, names, max(keep, kappa))
            kept.append(sum(int(f.mask.sum()) for f in forms.values()))
            with torch.no_grad():                                        # rewind every parameter to w_k
                for name, w in rewind.items():
                    (free(model, name) if name in forms else model.get_parameter(name)).copy_(w)
            budget = Budget(job)                                         # a fresh L step: a fresh optimizer
            for j in range(bounds[r], bounds[r + 1]):
                budget(model, j)
            examples, l_time = examples + budget.examples, l_time + budget.time
    compressed, change, c_time = project(model, tasks)
    return Outcome(model, compressed, job.steps, examples, l_time, c_time,
                   {"kept_per_round": kept, "rounds": r_total, "rewind_epochs": rewind_epochs,
                    "projection_change": change})
