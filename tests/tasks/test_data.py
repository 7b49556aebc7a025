"""Data loaders on tiny synthetic files written by the tests (never the network)."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import lc
from tasks import data as D


def write_idx(path, array: np.ndarray, gz: bool):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def mnist_like(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 256, size=(n, 28, 28))
    x[:, 0, 0] = y * 20                       # a pixel that tells the label, to check the pairing survives
    return x, y


def write_mnist(d, parts=("train", "test"), gz=True, n=50):
    for part in parts:
        x, y = mnist_like(n, seed=len(part))
        img, lab = D.MNIST_FILES[part]
        suffix = ".gz" if gz else ""
        write_idx(d / (img + suffix), x, gz)
        write_idx(d / (lab + suffix), y, gz)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "a", a, gz)
    t = D.read_idx(tmp_path / "a")
    assert t.dtype == torch.uint8 and t.shape == (2, 3, 4)
    assert torch.equal(t, torch.from_numpy(a.astype(np.uint8)))


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(lc.CompressionError, match="bad magic"):
        D.read_idx(tmp_path / "bad")
    a = np.zeros((4, 5))
    write_idx(tmp_path / "short", a, False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(lc.CompressionError, match="truncated"):
        D.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_train_and_test_files(tmp_path, gz):
    write_mnist(tmp_path, gz=gz, n=50)
    data = D.load("mnist", tmp_path)
    assert data.x_train.shape == (50, 1, 28, 28) and data.x_test.shape == (50, 1, 28, 28)
    assert data.split.startswith("official MNIST")
    # normalised with the training statistics: mean 0, std 1 on the training set
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std()) - 1) < 1e-4
    # labels stay paired with their images: pixel (0, 0) encodes the label, and normalisation is monotone
    order = torch.argsort(data.x_train[:, 0, 0, 0])
    assert torch.equal(data.y_train[order], torch.sort(data.y_train).values)


def test_mnist_test_files_only_are_split_stratified(tmp_path, monkeypatch):
    write_mnist(tmp_path, parts=("test",), n=100)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    data = D.load("mnist")                                 # directory from the environment
    assert len(data.y_train) == 80 and len(data.y_test) == 20
    assert "80/20 stratified split" in data.split and "seed 0" in data.split
    assert torch.bincount(data.y_test, minlength=10).tolist() == [2] * 10
    again = D.load("mnist", tmp_path)
    assert torch.equal(again.x_test, data.x_test)          # deterministic


def test_stratified_split_exact_counts_and_proportions():
    y = torch.tensor([0] * 500 + [1] * 300 + [2] * 200 + [3] * 7)
    tr, te = D.stratified_split(y, 201)
    assert len(te) == 201 and len(tr) == len(y) - 201
    assert set(tr.tolist()).isdisjoint(te.tolist()) and len(set(tr.tolist()) | set(te.tolist())) == len(y)
    # quotas: exact shares 99.7, 59.8, 39.9, 1.4 → floors 99, 59, 39, 1 = 198, +3 to the largest remainders
    assert torch.bincount(y[te]).tolist() == [100, 60, 40, 1]
    tr2, te2 = D.stratified_split(y, 201)
    assert torch.equal(te, te2)
    _, te3 = D.stratified_split(y, 201, seed=1)
    assert not torch.equal(te, te3)


def test_mnist_errors_say_which_files_to_put_where(tmp_path, monkeypatch):
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    with pytest.raises(D.DataError, match="LC_DATA_DIR"):
        D.load("mnist")
    with pytest.raises(lc.CompressionError, match="does not exist"):
        D.load("mnist", tmp_path / "nowhere")
    with pytest.raises(D.DataError) as e:
        D.load("mnist", tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "t10k-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    write_mnist(tmp_path, parts=("test",), n=20)
    x, _ = mnist_like(20, 0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x, True)   # one training file without its labels
    with pytest.raises(D.DataError, match="only one of"):
        D.load("mnist", tmp_path)
    with pytest.raises(D.DataError, match="unknown dataset 'svhn'"):
        D.load("svhn")


def write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
    y = [i % 10 for i in range(n)]
    with open(path, "wb") as f:
        pickle.dump({b"data": x, b"labels": y, b"batch_label": b"synthetic"}, f)
    return x, y


def test_cifar_full_and_test_only(tmp_path):
    full, only = tmp_path / "full" / "cifar-10-batches-py", tmp_path / "only"
    full.mkdir(parents=True), only.mkdir()
    for i, name in enumerate(D.CIFAR_TRAIN):
        write_cifar_batch(full / name, 20, i)
    write_cifar_batch(full / D.CIFAR_TEST, 30, 9)
    data = D.load("cifar10", tmp_path / "full")            # finds the cifar-10-batches-py subdirectory
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (30, 3, 32, 32)
    assert data.split.startswith("official CIFAR-10")
    per_channel = data.x_train.mean((0, 2, 3))
    assert torch.allclose(per_channel, torch.zeros(3), atol=1e-5)
    assert torch.allclose(data.x_train.std((0, 2, 3)), torch.ones(3), atol=1e-4)

    x, y = write_cifar_batch(only / D.CIFAR_TEST, 50, 3)
    data = D.load("cifar10", only)
    assert len(data.y_train) == 40 and len(data.y_test) == 10 and "40/10 stratified split" in data.split
    # the image layout is (3, 32, 32) from the row-major 3072 bytes: compare one raw image, un-normalised
    tr, _ = D.stratified_split(torch.tensor(y), 10)
    raw = torch.from_numpy(x[int(tr[0])].reshape(3, 32, 32)).float() / 255
    xtr = torch.from_numpy(x[tr.numpy()].reshape(-1, 3, 32, 32)).float() / 255
    mean, std = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True)
    assert torch.allclose(data.x_train[0], ((raw - mean) / std)[0], atol=1e-5)


def test_cifar_errors(tmp_path):
    with pytest.raises(D.DataError, match="test_batch") as e:
        D.load("cifar10", tmp_path)
    assert "data_batch_1" in str(e.value)
    (tmp_path / D.CIFAR_TEST).write_bytes(b"not a pickle")
    with pytest.raises(D.DataError, match="not a CIFAR-10 python batch"):
        D.load("cifar10", tmp_path)
    write_cifar_batch(tmp_path / D.CIFAR_TEST, 20, 0)
    write_cifar_batch(tmp_path / "data_batch_1", 20, 0)
    with pytest.raises(D.DataError, match="lacks data_batch_2"):
        D.load("cifar10", tmp_path)


def test_digits_default():
    data = D.load()
    assert data.name == "digits" and data.input_shape == (1, 8, 8)
    assert len(data.y_train) == 1257 and len(data.y_test) == 540
    assert data.fingerprint() == D.load().fingerprint()
