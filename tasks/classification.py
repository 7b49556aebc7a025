"""The image-classification adapter: a reference model (trained once, cached on disk), one L step with one fixed set
of hyperparameters per task, an evaluation, and the helpers that build ``compression_tasks`` and count FLOPs.

    import math, lc
    from tasks.classification import Classification, TaskConfig, compression_tasks

    task = Classification(TaskConfig(dataset="mnist", model="lenet300", data_dir="/data/mnist"))
    net = task.reference(cache_dir=".cache/references")          # trained, or loaded from the cache
    algorithm = lc.Algorithm(net, compression_tasks(net, lambda shapes: (lc.AsVector, lc.ConstraintL0Pruning(
                                 kappa=round(0.05 * sum(math.prod(s) for s in shapes)))), joint=True),
                             lc.geometric_mu(9e-5, 1.1, 40), task.l_step(), task.evaluate)

The L step knows nothing of the compression: every scheme on a task is trained with the same hyperparameters.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from lc import CompressionError, recalibrate_batchnorm
from lc._io import write_atomic

from . import adapter
from .adapter import compression_tasks, flops, weight_names
from .custom import check_forward, instantiate, is_import_path, load_weights, source_sha256, weights_sha256
from .data import DATASETS, Dataset, load, stratified_split
from .models import MODELS, make_model

__all__ = ["TaskConfig", "Classification", "LStep", "compression_tasks", "weight_names", "flops"]

log = logging.getLogger(__name__)

L_STEP_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}
"""The L step's optimizers (``TaskConfig.optimizer``) and their default learning rates in LC step 0."""

# Fields added after results were first made, at the value that gives those results: left out of a fingerprint
# at that value, so that earlier run ids and output directories stay valid.
_LATER_FIELDS = {"optimizer": "sgd", "validation": 0.0}


def _field(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TaskConfig:
    """One classification task: data, model, and the hyperparameters of its reference training and its L step
    (the same for every compression scheme). Each field's ``metadata["help"]`` documents it."""

    dataset: str = _field("digits", "dataset: digits (embedded) | mnist | cifar10 | FILE.npz (your arrays x_train, "
                                    "y_train, x_test, y_test, used as they are) | MODULE:ATTR (your function "
                                    "returning a tasks.data.Dataset or (x_train, y_train, x_test, y_test))")
    model: str = _field("lenet300", "model: lenet300 | lenet5 | resnet20 | resnet32 | resnet56 | resnet110 | vgg16 | "
                                    "MODULE:ATTR (your nn.Module class or factory, e.g. mypkg.models:SmallCNN)")
    weights: str | None = _field(None, "a file of the model's trained weights (torch.save(model.state_dict(), "
                                       "path)): the reference, used as it is, never retrained; the file's path is "
                                       "in no key, a hash of its weights is")
    data_dir: str | None = _field(None, "directory of the dataset's files (default: $LC_DATA_DIR); not in any key")
    seed: int = _field(0, "seed of the model's initialisation and of the reference's batch order")
    batch_size: int = _field(128, "minibatch size (reference and L step)")
    augment: bool = _field(False, "random 4-pixel shifts and horizontal flips of training images (CIFAR)")
    ref_epochs: int = _field(30, "reference training: epochs of SGD with Nesterov momentum")
    ref_lr: float = _field(0.1, "reference training: initial learning rate")
    ref_lr_decay: float = _field(0.95, "reference training: learning rate × this after every epoch")
    weight_decay: float = _field(0.0, "reference training: weight decay (the L step has none)")
    momentum: float = _field(0.9, "Nesterov momentum (reference, and L step with sgd)")
    optimizer: str = _field("sgd", "L step: sgd (Nesterov momentum, a fresh optimizer per LC step, the penalty's "
                                   "gradient added to the loss's: the LC papers' L step) | adam | adamw (one "
                                   "optimizer kept across the LC steps, the penalty applied by "
                                   "lc_penalty.step(optimizer)); the reference is trained with SGD either way")
    lr: float | None = _field(None, "L step: learning rate in LC step 0 (default: 0.1 for sgd, 1e-3 for adam and "
                                    "adamw)")
    lr_decay: float = _field(0.98, "L step: learning rate × this after every LC step (lr · lr_decay^j)")
    epochs_per_step: int = _field(2, "L step: epochs per LC step")
    first_step_epochs: int | None = _field(None, "L step: epochs of the first LC step (default: epochs_per_step)")
    distill: float = _field(0.0, "L step: weight β of the distillation term, (1−β)·CE + β·T²·KL; 0: none")
    temperature: float = _field(4.0, "L step: softmax temperature T of the distillation term")
    device: str = _field("cpu", "torch device of data, model and C steps; not in any key")
    validation: float = _field(0.0, "fraction of the training images held out for validation (stratified, seed "
                                    "0): neither the reference nor the L step trains on them; validate(model) "
                                    "evaluates them (a search over budgets chooses on them, never on the test set)")

    def l_step_lr(self) -> float:
        """The L step's learning rate in LC step 0: ``lr``, or the optimizer's default (:data:`L_STEP_LR`)."""
        return L_STEP_LR[self.optimizer] if self.lr is None else self.lr

    def check(self) -> None:
        if self.model not in MODELS and not is_import_path(self.model):
            raise CompressionError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}, or give your "
                                   "own as MODULE:ATTR (e.g. mypkg.models:SmallCNN, with --weights FILE for its "
                                   "trained weights)")
        if self.optimizer not in L_STEP_LR:
            raise CompressionError(f"TaskConfig.optimizer={self.optimizer!r}: choose one of {', '.join(L_STEP_LR)}")
        positive = {"batch_size": self.batch_size, "ref_lr": self.ref_lr, "lr": self.l_step_lr(),
                    "epochs_per_step": self.epochs_per_step, "temperature": self.temperature}
        for name, v in positive.items():
            if not v > 0:
                raise CompressionError(f"TaskConfig.{name}={v!r} must be > 0")
        if self.ref_epochs < 0:
            raise CompressionError(f"TaskConfig.ref_epochs={self.ref_epochs!r} must be ≥ 0")
        if not 0 <= self.validation < 1:
            raise CompressionError(f"TaskConfig.validation={self.validation!r} is the fraction of the training set "
                                   "held out for validation; it must lie in [0, 1)")
        if not 0 <= self.distill <= 1:
            raise CompressionError(f"TaskConfig.distill={self.distill!r} is the weight of the distillation term "
                                   "in (1 − β)·cross-entropy + β·distillation; it must lie in [0, 1]")

    def reference_fields(self) -> dict:
        """What determines the reference model (the L step's and placement fields do not)."""
        keep = ("dataset", "model", "seed", "batch_size", "augment", "ref_epochs", "ref_lr", "ref_lr_decay",
                "weight_decay", "momentum")
        return {**{k: getattr(self, k) for k in keep}, **({"validation": self.validation} if self.validation else {})}


def _augment(x: torch.Tensor) -> torch.Tensor:
    """Random shifts of up to 4 pixels (zero padding) and horizontal flips, per image."""
    n, c, h, w = x.shape
    x = torch.where((torch.rand(n, device=x.device) < 0.5)[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4))
    i, j = torch.randint(0, 9, (2, n), device=x.device)
    rows = (i[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (j[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def _distillation(logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch (Hinton et al., 2015)."""
    return t * t * F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                            reduction="batchmean", log_target=True)


class Classification:
    """The adapter (:class:`tasks.adapter.Adapter`): ``reference()``, ``l_step()``, ``evaluate(model)`` (metric
    ``error``, lower is better), ``compression_tasks(...)``, ``example_input()``; and ``train_epoch(...)``."""

    metric = "error"
    higher_is_better = False

    def __init__(self, config: TaskConfig = TaskConfig(), data: Dataset | None = None):
        """Loads the data, and your model and weights if the config names them: every mistake there (a module
        that does not import, weights that do not fit, a model that does not run on the data) is an error now,
        before any training."""
        config.check()
        self.config = config
        self.data = data if data is not None else load(config.dataset, config.data_dir)
        self.device = torch.device(config.device)
        self._xtr, self._ytr = self.data.x_train.to(self.device), self.data.y_train.to(self.device)
        self._xte, self._yte = self.data.x_test.to(self.device), self.data.y_test.to(self.device)
        self._xva = self._yva = None
        if config.validation:                           # held out of the training set: never trained on
            n_val = round(config.validation * len(self._ytr))
            if not 0 < n_val < len(self._ytr):
                raise CompressionError(f"TaskConfig.validation={config.validation}: {n_val} of {len(self._ytr)} "
                                       "training images; give a fraction that holds out some and keeps some")
            train, held = stratified_split(self.data.y_train, n_test=n_val)
            train, held = train.to(self.device), held.to(self.device)
            self._xva, self._yva = self._xtr[held], self._ytr[held]
            self._xtr, self._ytr = self._xtr[train], self._ytr[train]
        self._trained: nn.Module | None = None          # the reference read from config.weights
        if is_import_path(config.model) or config.weights is not None:
            model = self.make_model()
            if config.weights is not None:
                self._trained = load_weights(model, config.weights).to(self.device)
            check_forward(model, self.example_input(2))

    @property
    def name(self) -> str:
        return f"{self.config.dataset}/{self.config.model}"

    @property
    def split(self) -> str:
        return self.data.split

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def chance(self) -> float:
        """The error from which a model counts as no better than chance: 1 − 1/classes − 0.05 (a sweep flags runs
        that end there)."""
        return 1 - 1 / self.data.num_classes - 0.05

    def fingerprint(self) -> dict:
        """Every field of the config but where the data, the model and its weights live, the L step's learning rate
        resolved (``lr=None`` and the optimizer's default are one run), fields added later left out at the value
        that gives the results made before them (``optimizer="sgd"``); for your own pieces, sha256 of the weights
        (not their file's path), of the model's source file and of the data's tensors."""
        c = self.config
        fields = {k: v for k, v in dataclasses.asdict(c).items() if k not in ("data_dir", "device", "weights")
                  and _LATER_FIELDS.get(k, ...) != v}
        own = {"weights_sha256": weights_sha256(self._trained) if self._trained is not None else None,
               "model_source_sha256": source_sha256(c.model) if is_import_path(c.model) else None,
               "data": self.data.fingerprint() if c.dataset not in DATASETS else None}
        return {**fields, "lr": c.l_step_lr(), **{k: v for k, v in own.items() if v is not None}}

    def make_model(self) -> nn.Module:
        """A freshly initialised model (seeded): one of :data:`tasks.models.MODELS`, or yours (``MODULE:ATTR``)."""
        c = self.config
        if not is_import_path(c.model):
            return make_model(c.model, self.data.input_shape, self.data.num_classes, seed=c.seed).to(self.device)
        torch.manual_seed(c.seed)
        return copy.deepcopy(instantiate(c.model, self.data.input_shape, self.data.num_classes)).to(self.device)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return torch.zeros(batch_size, *self.data.input_shape, device=self.device)

    def compression_tasks(self, model: nn.Module, make, *, joint: bool = False, names=None) -> dict:
        return adapter.compression_tasks(model, make, joint=joint, names=names)

    # ------------------------------------------------------------------------------------------ training
    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                    penalty: Callable[[], torch.Tensor] | None = None, teacher: nn.Module | None = None,
                    decoupled: bool = False, trainer: nn.Module | None = None) -> float:
        """One pass over the training set minimising loss (+ ``penalty()``); returns the mean loss (without the
        penalty). lc's penalty adds its gradient directly (``add_grad_``), which is cheaper than autograd;
        ``decoupled``: the penalty is left out of the loss and applied after every optimizer step as the proximal
        step in the optimizer's own metric (``penalty.step(optimizer)``), as adaptive optimizers need.
        ``trainer``: the module the batches go through (a ``DistributedDataParallel`` wrapper of ``model``); under
        ``torch.distributed`` each rank takes its share of every epoch's permutation (the same on every rank, from
        the same seed) and of every batch, so that the ranks together see each example once an epoch."""
        c = self.config
        add_grad = getattr(penalty, "add_grad_", None)
        model.train()
        total, n = 0.0, 0
        rank, world = _rank()
        perm = torch.randperm(len(self._ytr), device=self.device)
        for idx in perm.split(c.batch_size):
            idx = idx[rank::world]                 # this rank's share of the batch (all of it in one process)
            x, y = self._xtr[idx], self._ytr[idx]
            if c.augment:
                x = _augment(x)
            optimizer.zero_grad(set_to_none=True)
            logits = (trainer or model)(x)
            loss = F.cross_entropy(logits, y)
            if teacher is not None and c.distill > 0:
                with torch.no_grad():
                    target = teacher(x)
                loss = (1 - c.distill) * loss + c.distill * _distillation(logits, target, c.temperature)
            if penalty is None or decoupled or add_grad is not None:
                loss.backward()
            else:
                (loss + penalty()).backward()
            if add_grad is not None and not decoupled:
                add_grad()                        # + ∇ μ/2‖w − Δ(Θ) − λ/μ‖², without an autograd graph
            optimizer.step()
            if penalty is not None and decoupled:
                penalty.step(optimizer)           # w ← prox of μ/2‖w − Δ(Θ) − λ/μ‖² in the optimizer's metric
            total, n = total + float(loss.detach()) * len(y), n + len(y)
        return total / n

    def optimizer(self, model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=self.config.momentum, nesterov=True,
                               weight_decay=weight_decay)

    def l_step(self, teacher: nn.Module | None = None) -> "LStep":
        """The L step of this task (``l_step_optimization`` of :class:`lc.Algorithm`); with ``distill`` > 0 in
        the config, ``teacher`` (a copy of the reference, taken now) gives the distillation targets."""
        if self.config.distill > 0:
            if teacher is None:
                raise CompressionError("TaskConfig.distill > 0 needs the reference model as teacher: "
                                       "task.l_step(teacher=reference)")
            teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        return LStep(self, teacher if self.config.distill > 0 else None)

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "test") -> dict[str, float]:
        """``{"error": fraction misclassified, "loss": mean cross-entropy}`` on the test (or "train", or
        "validation") set."""
        if split == "validation" and self._yva is None:
            raise CompressionError("this task holds out no validation images: give TaskConfig.validation (a "
                                   "fraction of the training set)")
        x, y = {"test": (self._xte, self._yte), "train": (self._xtr, self._ytr),
                "validation": (self._xva, self._yva)}[split]
        was_training = model.training
        model.eval()
        wrong, loss = 0, 0.0
        for i in range(0, len(y), 1000):
            logits = model(x[i:i + 1000])
            wrong += int((logits.argmax(1) != y[i:i + 1000]).sum())
            loss += float(F.cross_entropy(logits, y[i:i + 1000], reduction="sum"))
        model.train(was_training)
        return {"error": wrong / len(y), "loss": loss / len(y)}

    def recalibrate(self, model: nn.Module, batch_size: int = 1000) -> nn.Module:
        """The batch norms' running statistics of ``model`` re-estimated on this task's training images (in order,
        ``batch_size`` at a time; :func:`lc.recalibrate_batchnorm`): a compressed model's statistics are its L
        step's weights', stale once the C step has moved them. In place; a model without batch norm is unchanged."""
        x = self._xtr
        return recalibrate_batchnorm(model, (x[i:i + batch_size] for i in range(0, len(x), batch_size)))

    def validate(self, model: nn.Module) -> dict[str, float] | None:
        """:meth:`evaluate` on the validation images (``TaskConfig.validation``); None where none are held out."""
        return None if self._yva is None else self.evaluate(model, "validation")

    # ------------------------------------------------------------------------------------------ reference
    def reference_key(self) -> str:
        """sha256 of the reference's full training config and of the data's tensors (and of the source file of
        your model, ``MODULE:ATTR``)."""
        spec = {**self.config.reference_fields(), "data": self.data.fingerprint(),
                "input_shape": list(self.data.input_shape)}
        if is_import_path(self.config.model):
            spec["model_source_sha256"] = source_sha256(self.config.model)
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def reference(self, cache_dir: str | Path | None = None, on_epoch: Callable | None = None) -> nn.Module:
        """The reference model w̄: read from ``weights`` if the config names a file (never trained); else loaded
        from ``cache_dir`` if a model of the same key is there, else trained (``ref_epochs`` epochs of SGD) and
        saved there. A cached file is never overwritten."""
        if self._trained is not None:
            log.info("reference: the weights of %s (not retrained)", self.config.weights)
            return copy.deepcopy(self._trained)
        key = self.reference_key()
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.config.dataset}-{self.config.model}")
        path = Path(cache_dir) / f"{stem}-{key[:16]}.pt" if cache_dir else None
        model = self.make_model()
        if path is not None and path.exists():
            saved = torch.load(path, map_location=self.device, weights_only=True)
            if saved.get("key") != key:
                raise CompressionError(f"{path} holds a reference of another config (its key differs); move it "
                                       "away, or give another cache_dir")
            model.load_state_dict(saved["model"])
            log.info("reference loaded from %s (test error %.4f)", path, saved["evaluation"]["error"])
            return model
        c = self.config
        torch.manual_seed(c.seed)
        t = time.perf_counter()
        opt = self.optimizer(model, c.ref_lr, c.weight_decay)
        for epoch in range(c.ref_epochs):
            lr = c.ref_lr * c.ref_lr_decay ** epoch
            for group in opt.param_groups:
                group["lr"] = lr
            loss = self.train_epoch(model, opt)
            log.debug("reference epoch %d lr %.4g loss %.4f", epoch, lr, loss)
            if on_epoch is not None:
                on_epoch(epoch, loss)
        evaluation = self.evaluate(model)
        log.info("reference trained (%d epochs) in %.1fs: test error %.4f", c.ref_epochs, time.perf_counter() - t,
                 evaluation["error"])
        if path is not None:
            _save_new({"key": key, "config": c.reference_fields(), "split": self.data.split,
                       "evaluation": evaluation, "model": model.state_dict()}, path)
        return model


def _rank() -> tuple[int, int]:
    """(rank, world size) of this process under torch.distributed; (0, 1) without it."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _save_new(obj, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically, never replacing an existing file (another process may have won)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not write_atomic(path, lambda f: torch.save(obj, f), replace=False, what="the reference"):
        log.warning("%s appeared while training; kept the existing file", path)


class LStep:
    """``l_step_optimization(model, lc_penalty, j)``: ``epochs_per_step`` epochs (``first_step_epochs`` in step
    0) at lr·lr_decay^j on cross-entropy (+ distillation) and the LC penalty, by ``TaskConfig.optimizer``:

    - ``sgd``: SGD with Nesterov momentum, a fresh optimizer per LC step, the penalty's gradient added to the
      loss's (as in the LC papers);
    - ``adam``, ``adamw``: one optimizer kept across the LC steps (a new one would restart its moment estimates
      at every L step), the penalty applied after every optimizer step by ``lc_penalty.step(optimizer)``, never in
      the loss (an adaptive optimizer would rescale its gradient). The optimizer's state is this object's
      ``state_dict()``, which :class:`lc.Algorithm` checkpoints.
    """

    def __init__(self, task: Classification, teacher: nn.Module | None = None):
        self.task, self.teacher = task, teacher
        self.losses: list[float] = []
        self.kept: torch.optim.Optimizer | None = None        # adam/adamw: the optimizer of every LC step
        self._saved: dict | None = None                        # its state from a checkpoint, until the next step

    def __call__(self, model: nn.Module, lc_penalty: Callable[[], torch.Tensor], step: int) -> None:
        c = self.task.config
        epochs = c.first_step_epochs if (step == 0 and c.first_step_epochs) else c.epochs_per_step
        lr = c.l_step_lr() * c.lr_decay ** step
        decoupled = c.optimizer != "sgd"
        opt = self._kept(model, lr) if decoupled else self.task.optimizer(model, lr)
        trainer = self._trainer(model)
        for _ in range(epochs):
            self.losses.append(self.task.train_epoch(model, opt, lc_penalty, self.teacher, decoupled=decoupled,
                                                     trainer=trainer))

    def _trainer(self, model: nn.Module) -> nn.Module | None:
        """Under ``torch.distributed`` (more than one rank): the model wrapped in DistributedDataParallel, once."""
        if _rank()[1] == 1:
            return None
        if getattr(self, "_ddp", (None, None))[0] is not model:
            from torch.nn.parallel import DistributedDataParallel
            self._ddp = (model, DistributedDataParallel(model))
        return self._ddp[1]

    def _kept(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        if self.kept is None:
            make = torch.optim.Adam if self.task.config.optimizer == "adam" else torch.optim.AdamW
            self.kept = make(model.parameters(), lr=lr)
            if self._saved is not None:
                self.kept.load_state_dict(self._saved)
                self._saved = None
        for group in self.kept.param_groups:
            group["lr"] = lr
        return self.kept

    def state_dict(self) -> dict:
        """The kept optimizer's state (adam, adamw), for :class:`lc.Algorithm`'s checkpoints; empty for sgd."""
        if self.kept is not None:
            return {"optimizer": self.kept.state_dict()}
        return {"optimizer": self._saved} if self._saved is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore the kept optimizer (built on the model at the next L step, then loaded)."""
        self.kept, self._saved = None, state.get("optimizer")
