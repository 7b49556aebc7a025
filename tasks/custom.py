"""Your own work as a task: a model you trained, your L step, your evaluation — the sweep driver
(:func:`experiments.sweep.run`) then compresses it with every family of a sweep, with the rows, plot, resume and
artifacts of the built-in job; and the loaders behind the command line's ``--model MODULE:ATTR``, ``--weights
FILE`` and ``--dataset MODULE:ATTR | FILE.npz``.

    from experiments.sweep import Sweep, run
    from tasks.custom import Custom
    task = Custom(reference=net, l_step=MyLStep, evaluate=test_error, example_input=x_test[:1], name="mine/cnn")
    rows = run(task, Sweep(families=["pruning", "quantization"], out="results/mine"))

Every mistake that can be seen before training (a module that does not import, an attribute that is not there,
something that is not an ``nn.Module``, a weights file that is missing or does not fit the model, a dataset of the
wrong form) is an :class:`lc.CompressionError` that says what to change.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from lc import CompressionError

from . import adapter
from .data import DataError, Dataset

__all__ = ["Custom", "import_object", "instantiate", "load_weights", "load_dataset", "weights_sha256",
           "source_sha256", "is_import_path", "check_forward"]


# ---------------------------------------------------------------------------------------------- the adapter
class Custom:
    """A task adapter (:class:`tasks.adapter.Adapter`) around your own pieces:

    - ``reference``: the trained model w̄, used as it is (never retrained; every run compresses a copy);
    - ``l_step``: your L step ``l_step(model, lc_penalty, step)`` — or a class (or any function of no arguments)
      that makes one, called once per run, for an L step that keeps state across the L steps of a run (one Adam:
      ``self.opt = self.opt or torch.optim.Adam(model.parameters())``); build the optimizer on ``model``, the
      run's copy, not on your reference;
    - ``evaluate``: ``evaluate(model)`` → a number, or a dict of numbers one of whose keys is ``metric``;
    - ``example_input``: an input batch of the model (batch first; the first example is used);
    - ``metric``, ``higher_is_better``: what the rows report and the plot draws (``test_<metric>``), and its
      direction; ``chance``: the metric's value from which a model is no better than chance (a run that ends
      there is flagged; None: not checked);
    - ``key``: a string of yours that names your L step, data and evaluation (a version, a hash of your config):
      with ``name``, ``metric``, ``seed`` and a sha256 of the reference's weights it is this task's fingerprint,
      so a changed reference makes new run ids, and a changed ``key`` tells the sweep that your L step or data
      changed (it refuses an output directory holding results of another fingerprint);
    - ``names``: the weights that families compress (default: every linear and conv weight).
    """

    def __init__(self, reference: nn.Module, l_step: Callable, evaluate: Callable[[nn.Module], Any],
                 example_input: torch.Tensor, *, name: str = "custom", metric: str = "error",
                 higher_is_better: bool = False, key: str = "", split: str = "your evaluation", seed: int = 0,
                 chance: float | None = None, names: list[str] | None = None):
        if not isinstance(reference, nn.Module):
            raise CompressionError(f"Custom(reference=…): give your trained torch.nn.Module, not "
                                   f"{type(reference).__name__}")
        if not (isinstance(example_input, torch.Tensor) and example_input.dim() >= 1 and len(example_input)):
            raise CompressionError("Custom(example_input=…): give an input batch of the model (a tensor, batch "
                                   "first, at least one example)")
        if not callable(evaluate):
            raise CompressionError("Custom(evaluate=…): give a function evaluate(model) → a number or a dict")
        self._reference, self._evaluate, self._example = reference, evaluate, example_input[:1]
        self._make_l_step = _l_step_maker(l_step)
        self.name, self.metric, self.higher_is_better = name, metric, bool(higher_is_better)
        self.key, self.split, self.seed, self.chance, self.names = key, split, seed, chance, names
        check_forward(reference, self._example)
        if names is not None:
            adapter.compression_tasks(reference, lambda shapes: None, names=names)    # names that exist

    def fingerprint(self) -> dict:
        """What the results depend on: the name, key, metric, seed, input shape, the weights' names, and a
        sha256 of the reference's weights."""
        return {"name": self.name, "key": self.key, "metric": self.metric, "higher_is_better": self.higher_is_better,
                "seed": self.seed, "input_shape": list(self._example.shape[1:]), "names": self.names,
                "reference_sha256": weights_sha256(self._reference)}

    def reference(self, cache_dir: str | Path | None = None) -> nn.Module:
        """Your model, as you trained it (the sweep compresses a copy of it in every run)."""
        return self._reference

    def l_step(self, reference: nn.Module | None = None) -> Callable:
        """Your L step, made afresh for this run if you gave a class or factory."""
        return self._make_l_step()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``{metric: value, …}``: your evaluation's dict, or ``{metric: its number}``."""
        out = self._evaluate(model)
        if isinstance(out, Mapping):
            bad = {k: v for k, v in out.items() if not isinstance(v, numbers.Real)}
            if bad or self.metric not in out:
                raise CompressionError(
                    f"Custom: evaluate(model) returned {dict(out)!r}; give a dict of numbers with the key "
                    f"metric={self.metric!r} (or a number), or set metric= to one of its keys")
            return {str(k): float(v) for k, v in out.items()}
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            out = out.item()
        if not isinstance(out, numbers.Real) or isinstance(out, bool):
            raise CompressionError(f"Custom: evaluate(model) returned a {type(out).__name__}; give a number (the "
                                   f"{self.metric}) or a dict of numbers")
        return {self.metric: float(out)}

    def compression_tasks(self, model: nn.Module, make, *, joint: bool = False, names=None) -> dict:
        return adapter.compression_tasks(model, make, joint=joint, names=names if names is not None else self.names)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        p = next(self._reference.parameters(), None)
        x = self._example if p is None else self._example.to(p.device)
        return x.expand(batch_size, *x.shape[1:]).clone()


def _l_step_maker(l_step) -> Callable[[], Callable]:
    """``l_step`` as a maker of one L step per run: itself, if it takes ``(model, lc_penalty, step)``; a call of
    it, if it takes no arguments (a class or a factory)."""
    if not callable(l_step):
        raise CompressionError("Custom(l_step=…): give your L step, l_step(model, lc_penalty, step), or a class "
                               "(or function of no arguments) that makes one")
    if _takes(l_step, 3):
        return lambda: l_step
    if _takes(l_step, 0):
        def make():
            made = l_step()
            if not (callable(made) and _takes(made, 3)):
                raise CompressionError(f"Custom(l_step=…): {_name(l_step)}() made a {type(made).__name__}, which "
                                       "cannot be called as l_step(model, lc_penalty, step)")
            return made
        return make
    raise CompressionError(f"Custom(l_step=…): {_name(l_step)} takes neither (model, lc_penalty, step) nor no "
                           "arguments; give your L step, or a class (or function of no arguments) that makes one")


def _takes(f, n: int) -> bool:
    try:
        inspect.signature(f).bind(*([None] * n))
        return True
    except TypeError:
        return False
    except ValueError:                        # no signature to read (some builtins): take it as an L step
        return n == 3


def check_forward(model: nn.Module, x: torch.Tensor) -> None:
    """The model runs on the example input (eval mode, no gradients, every module's mode restored), or an error."""
    from lc._hooks import forward_with_hooks
    try:
        forward_with_hooks(model, x, lambda *a: None, only=lambda m: False)
    except Exception as e:  # noqa: BLE001 - any failure of the user's forward is reported as what to change
        raise CompressionError(f"{type(model).__name__} does not run on an input of shape {tuple(x.shape)}: "
                               f"{type(e).__name__}: {e}") from None


def _name(f) -> str:
    return getattr(f, "__qualname__", None) or type(f).__name__


def weights_sha256(model: nn.Module) -> str:
    """sha256 of the model's state_dict: every tensor's name, shape, dtype and bytes, in order."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- import paths
def is_import_path(spec: str) -> bool:
    """``MODULE:ATTR`` (e.g. ``mypkg.models:SmallCNN``)."""
    module, sep, attr = spec.partition(":")
    return bool(sep and module and attr)


def import_object(spec: str, what: str = "--model") -> Any:
    """The object named by ``MODULE:ATTR`` (``ATTR`` may be dotted), imported from the current directory or
    ``PYTHONPATH``."""
    if not is_import_path(spec):
        raise CompressionError(f"{what} {spec}: write MODULE:ATTR, e.g. mypkg.models:SmallCNN")
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())           # as `python -m` does: a console script does not
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise CompressionError(f"{what} {spec}: cannot import {module_name!r} ({e}); run from the directory that "
                               "holds it, or put that directory on PYTHONPATH") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise CompressionError(f"{what} {spec}: importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            near = difflib.get_close_matches(part, names, n=3)
            raise CompressionError(f"{what} {spec}: {module_name!r} has no attribute {part!r}"
                                   + (f"; did you mean {', '.join(near)}?" if near else
                                      f"; it has {', '.join(names[:20]) or 'no public names'}"))
        obj = getattr(obj, part)
    return obj


def instantiate(spec: str, input_shape, num_classes: int) -> nn.Module:
    """A model from ``MODULE:ATTR``: an ``nn.Module`` subclass or a factory, called with ``input_shape`` and
    ``num_classes`` where its signature names them (else with no arguments), or an ``nn.Module`` instance (used as
    it is)."""
    obj = import_object(spec, "--model")
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CompressionError(f"--model {spec} is a {type(obj).__name__}: give an nn.Module class, a function "
                               "that returns one, or an nn.Module")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}
    offered = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    kwargs = {k: v for k, v in offered.items() if k in params}
    try:
        model = obj(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's constructor failed
        call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise CompressionError(f"--model {spec}: {spec.partition(':')[2]}({call}) failed: {type(e).__name__}: {e}"
                               "; it is called with input_shape= and num_classes= where it names them, else with "
                               "no arguments") from None
    if not isinstance(model, nn.Module):
        raise CompressionError(f"--model {spec}: {spec.partition(':')[2]}() returned a {type(model).__name__}, "
                               "not a torch.nn.Module")
    return model


def source_sha256(spec: str) -> str | None:
    """sha256 of the source file of the module of ``MODULE:ATTR`` (None if it has none): results and cached
    references of a model change when its code does."""
    module = sys.modules.get(spec.partition(":")[0])
    path = getattr(module, "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else None


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """``model`` with the state_dict saved at ``path`` (``torch.save(model.state_dict(), path)``; a dict holding it
    under ``"state_dict"`` or ``"model"`` also does), read with ``torch.load(weights_only=True)``: it runs no code."""
    path = Path(path)
    if not path.is_file():
        raise CompressionError(f"--weights {path}: no such file" if not path.exists() else
                               f"--weights {path} is not a file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything torch.load refuses
        raise CompressionError(f"--weights {path} is not a state_dict that torch.load(weights_only=True) reads "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); save it with "
                               "torch.save(model.state_dict(), path)") from None
    if isinstance(saved, Mapping) and not _tensors(saved):
        saved = next((saved[k] for k in ("state_dict", "model") if isinstance(saved.get(k), Mapping)), saved)
    if not (isinstance(saved, Mapping) and _tensors(saved)):
        raise CompressionError(f"--weights {path} holds a {type(saved).__name__}, not a state_dict (names → "
                               "tensors); save it with torch.save(model.state_dict(), path)")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    shapes = [f"{k}: file {tuple(saved[k].shape)}, model {tuple(own[k].shape)}" for k in own
              if k in saved and saved[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing in the file: {_few(missing)}" if missing else "",
                 f"not in the model: {_few(unexpected)}" if unexpected else "",
                 f"other shapes: {_few(shapes)}" if shapes else ""]
        raise CompressionError(f"--weights {path} does not fit {type(model).__name__}: "
                               + "; ".join(p for p in parts if p))
    model.load_state_dict(saved)
    return model


def _tensors(d: Mapping) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _few(items: list[str], n: int = 10) -> str:
    return ", ".join(items[:n]) + (f" (and {len(items) - n} more)" if len(items) > n else "")


# ---------------------------------------------------------------------------------------------- datasets
def load_dataset(spec: str) -> Dataset:
    """Your data, used as it is (no normalisation: your reference was trained on it): ``FILE.npz`` holding the
    arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``, or ``MODULE:ATTR``, a function of no arguments (or the
    value itself) giving a :class:`tasks.data.Dataset` or a tuple ``(x_train, y_train, x_test, y_test)`` of
    tensors or arrays. Inputs: float, batch first; labels: integers 0 … classes − 1."""
    if spec.endswith(".npz"):
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"--dataset {spec}: no such file; give a .npz with arrays x_train, y_train, x_test, "
                            "y_test (numpy.savez)")
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _ARRAYS if k not in f.files]
            if missing:
                raise DataError(f"--dataset {spec} lacks the arrays {missing} (it has {f.files}); give x_train, "
                                "y_train, x_test, y_test")
            arrays = tuple(f[k] for k in _ARRAYS)
        return _dataset(spec, arrays, f"{path.name}")
    if not is_import_path(spec):
        raise DataError(f"unknown dataset {spec!r}; choose digits, mnist, cifar10, a FILE.npz, or MODULE:ATTR (a "
                        "function returning a tasks.data.Dataset or (x_train, y_train, x_test, y_test))")
    obj = import_object(spec, "--dataset")
    if callable(obj) and not isinstance(obj, Dataset):
        try:
            obj = obj()
        except Exception as e:  # noqa: BLE001 - the user's loader failed
            raise DataError(f"--dataset {spec}: {spec.partition(':')[2]}() failed: {type(e).__name__}: {e}") from None
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, (tuple, list)) and len(obj) == 4:
        return _dataset(spec, tuple(obj), spec)
    raise DataError(f"--dataset {spec} gave a {type(obj).__name__}; give a tasks.data.Dataset or a tuple (x_train, "
                    "y_train, x_test, y_test)")


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _dataset(spec: str, arrays: tuple, name: str) -> Dataset:
    xtr, ytr, xte, yte = (torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a) for a in arrays)
    for x, y, part in ((xtr, ytr, "train"), (xte, yte, "test")):
        if x.dim() < 2 or y.dim() != 1 or len(x) != len(y) or not len(y):
            raise DataError(f"--dataset {spec}: x_{part} of shape {tuple(x.shape)} and y_{part} of shape "
                            f"{tuple(y.shape)}; give inputs (N, …) and labels (N,), N ≥ 1")
        if not x.is_floating_point() or y.is_floating_point() or y.dtype == torch.bool or int(y.min()) < 0:
            raise DataError(f"--dataset {spec}: x_{part} must hold floats ({x.dtype} given) and y_{part} integer "
                            f"labels ≥ 0 ({y.dtype} given)")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"--dataset {spec}: training inputs of shape {tuple(xtr.shape[1:])}, test inputs of shape "
                        f"{tuple(xte.shape[1:])}; give one shape")
    classes = int(max(ytr.max(), yte.max())) + 1
    return Dataset(name, xtr.float(), ytr.long(), xte.float(), yte.long(),
                   f"{name}: {len(ytr)}/{len(yte)} train/test as given", num_classes=classes)
