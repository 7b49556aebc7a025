"""Image classification data as in-memory tensors: scikit-learn's digits (embedded, the default), MNIST from its
four IDX files, CIFAR-10 from its python batches. No download, no torchvision.

    data = load("mnist", data_dir="/path/to/mnist")     # or env LC_DATA_DIR
    data.x_train, data.y_train, data.x_test, data.y_test, data.split

Where only the test files of a dataset are present (e.g. ``t10k-*`` of MNIST, ``test_batch`` of CIFAR-10), its
10,000 test images are split into 8,000 training and 2,000 test images by :func:`stratified_split`
(``seed=0``): deterministic, the same class proportions on both sides. ``data.split`` says which split was used;
every number reported on such data must say so.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lc import CompressionError

__all__ = ["Dataset", "DataError", "load", "read_idx", "stratified_split", "DATASETS", "DATA_DIR_ENV",
           "MNIST_FILES", "CIFAR_TRAIN", "CIFAR_TEST"]

log = logging.getLogger(__name__)

DATA_DIR_ENV = "LC_DATA_DIR"
DATASETS = ("digits", "mnist", "cifar10")
SPLIT_SEED = 0
SPLIT_TEST_FRACTION = 0.2          # 10,000 test images → 8,000 training + 2,000 test


class DataError(CompressionError):
    """A dataset's files are missing or malformed; the message says which files to put where."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and test tensors (inputs float32 (N, C, H, W), normalised; labels int64) and a label of the split."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    split: str              # e.g. "official train/test" or "8000/2000 stratified split of the test set (seed 0)"
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def fingerprint(self) -> str:
        """A short hash of the tensors: reference models are cached under it (other data → another model)."""
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def stratified_split(labels: torch.Tensor, n_test: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test) of a deterministic stratified split with exactly ``n_test`` test items.

    Class c with n_c items gets ⌊n_test·n_c/N⌋ test items, and the remaining ones go, one each, to the classes
    with the largest fractional parts (ties: smaller class label first). Within each class the test items are the
    first of a ``torch.randperm`` drawn from a generator seeded with ``seed + c``. Both index lists are sorted."""
    labels = labels.reshape(-1).long()
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_test / labels.numel()
    quota = exact.floor().long()
    short = n_test - int(quota.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(float(exact[i]) - int(quota[i])), int(classes[i])))
    for i in order[:short]:
        quota[i] += 1
    test = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(labels == c, as_tuple=True)[0]
        g = torch.Generator().manual_seed(seed + c)
        test.append(members[torch.randperm(members.numel(), generator=g)[:q]])
    test = torch.sort(torch.cat(test)).values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[test] = False
    return torch.nonzero(mask, as_tuple=True)[0], test


# ------------------------------------------------------------------------------------------------ directories
def _data_dir(data_dir, name: str) -> Path:
    d = data_dir or os.environ.get(DATA_DIR_ENV)
    if not d:
        raise DataError(f"{name}: no data directory given; pass data_dir (--data-dir) or set the environment "
                        f"variable {DATA_DIR_ENV} to the directory that holds the {name} files")
    d = Path(d).expanduser()
    if not d.is_dir():
        raise DataError(f"{name}: data directory {str(d)!r} does not exist")
    return d


def _find(d: Path, stem: str) -> Path | None:
    """``d/stem`` or ``d/stem.gz``, whichever exists."""
    return next((c for c in (d / stem, d / (stem + ".gz")) if c.is_file()), None)


def _read(path: Path) -> bytes:
    """The file's bytes, gunzipped if it is gzip (by its magic number, whatever its name)."""
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path: str | Path) -> torch.Tensor:
    """An IDX file (LeCun's MNIST format, gzipped or not) as a uint8 tensor of its declared shape."""
    path = Path(path)
    raw = _read(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number); expected the original "
                        "MNIST files, e.g. t10k-images-idx3-ubyte.gz")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: holds {data.size} bytes of data, but its header declares shape {shape}; the "
                        "file is truncated or corrupted")
    return torch.from_numpy(data.reshape(shape).copy())


# ------------------------------------------------------------------------------------------------ datasets
@functools.lru_cache(maxsize=1)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y, dtype=torch.int64)
    tr, te = stratified_split(y, n_test=540)
    return _normalised("digits", x[tr], y[tr], x[te], y[te],
                       f"{len(tr)}/{len(te)} stratified split of sklearn digits, seed {SPLIT_SEED}", per_channel=False)


MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _mnist(data_dir) -> Dataset:
    d = _data_dir(data_dir, "mnist")
    found = {part: [_find(d, s) for s in stems] for part, stems in MNIST_FILES.items()}
    if not all(found["test"]):
        missing = [s for s, p in zip(MNIST_FILES["test"], found["test"]) if p is None]
        raise DataError(f"mnist: {d} lacks {', '.join(missing)} (optionally .gz). Put the four standard MNIST IDX "
                        f"files there: {', '.join(s for v in MNIST_FILES.values() for s in v)} — or at least the "
                        "two t10k-* files, which are then split 8000/2000 for training and testing")
    xte, yte = (read_idx(p) for p in found["test"])
    if all(found["train"]):
        xtr, ytr = (read_idx(p) for p in found["train"])
        split = "official MNIST train/test (60000/10000)"
    else:
        if any(found["train"]):
            raise DataError(f"mnist: {d} holds only one of {MNIST_FILES['train']}; put both there, or neither "
                            "(the test set is then split 8000/2000)")
        xtr, ytr, xte, yte, split = _split_test_set(xte, yte, "MNIST test set (no training files present)")
    for x, y, what in ((xtr, ytr, "train"), (xte, yte, "t10k")):
        if x.dim() != 3 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise DataError(f"mnist: the {what} files hold images of shape {tuple(x.shape)} and labels of shape "
                            f"{tuple(y.shape)}; expected (N, 28, 28) and (N,)")
    f = lambda x: x.to(torch.float32).unsqueeze(1) / 255.0  # noqa: E731
    return _normalised("mnist", f(xtr), ytr.long(), f(xte), yte.long(), split, per_channel=False)


CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def _cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x, y = d[b"data"], d[b"labels"]
    except (pickle.UnpicklingError, KeyError, EOFError, TypeError) as e:
        raise DataError(f"cifar10: {path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); expected the "
                        "files of cifar-10-python.tar.gz") from None
    x = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 3, 32, 32).copy())
    return x, torch.tensor(list(y), dtype=torch.int64)


def _cifar10(data_dir) -> Dataset:
    d = _data_dir(data_dir, "cifar10")
    if not (d / CIFAR_TEST).is_file() and (d / "cifar-10-batches-py" / CIFAR_TEST).is_file():
        d = d / "cifar-10-batches-py"
    if not (d / CIFAR_TEST).is_file():
        raise DataError(f"cifar10: {d} lacks {CIFAR_TEST}. Put the CIFAR-10 python batches there (the contents of "
                        f"cifar-10-python.tar.gz: {', '.join(CIFAR_TRAIN)}, {CIFAR_TEST}) — or at least "
                        f"{CIFAR_TEST}, which is then split 8000/2000 for training and testing")
    xte, yte = _cifar_batch(d / CIFAR_TEST)
    present = [(d / n).is_file() for n in CIFAR_TRAIN]
    if all(present):
        parts = [_cifar_batch(d / n) for n in CIFAR_TRAIN]
        xtr, ytr = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        split = "official CIFAR-10 train/test (50000/10000)"
    elif any(present):
        missing = [n for n, p in zip(CIFAR_TRAIN, present) if not p]
        raise DataError(f"cifar10: {d} lacks {', '.join(missing)}; put all five training batches there, or none "
                        "(the test batch is then split 8000/2000)")
    else:
        xtr, ytr, xte, yte, split = _split_test_set(xte, yte, "CIFAR-10 test batch (no training batches present)")
    f = lambda x: x.to(torch.float32) / 255.0  # noqa: E731
    return _normalised("cifar10", f(xtr), ytr, f(xte), yte, split, per_channel=True)


def _split_test_set(x, y, what: str):
    tr, te = stratified_split(y, round(SPLIT_TEST_FRACTION * len(y)))
    return x[tr], y[tr], x[te], y[te], f"{len(tr)}/{len(te)} stratified split of the {what}, seed {SPLIT_SEED}"


def _normalised(name, xtr, ytr, xte, yte, split, per_channel: bool) -> Dataset:
    """Subtract the training mean and divide by the training standard deviation (per channel, or overall)."""
    dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    mean, std = xtr.mean(dims, keepdim=True), xtr.std(dims, keepdim=True).clamp_min(1e-8)
    if not per_channel:
        mean, std = mean.reshape(1, 1, 1, 1), std.reshape(1, 1, 1, 1)
    return Dataset(name, (xtr - mean) / std, ytr, (xte - mean) / std, yte, split)


def load(name: str = "digits", data_dir: str | Path | None = None) -> Dataset:
    """The dataset ``name``: one of :data:`DATASETS` (files read from ``data_dir`` or ``$LC_DATA_DIR``), or yours,
    used as it is: ``FILE.npz`` or ``MODULE:ATTR`` (see :func:`tasks.custom.load_dataset`)."""
    if name == "digits":
        data = _digits()
    elif name == "mnist":
        data = _mnist(data_dir)
    elif name == "cifar10":
        data = _cifar10(data_dir)
    else:
        from .custom import load_dataset          # a .npz or MODULE:ATTR; anything else is refused there
        data = load_dataset(name)
    log.info("%s: %d training and %d test images of shape %s (%s)", name, len(data.y_train), len(data.y_test),
             data.input_shape, data.split)
    return data
