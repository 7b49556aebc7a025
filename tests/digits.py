"""A tiny real problem for loop tests: a 64-32-10 MLP on scikit-learn's digits, trained in about a second."""
from __future__ import annotations

import functools

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@functools.lru_cache(maxsize=1)
def data():
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return f(xtr), torch.tensor(ytr), f(xte), torch.tensor(yte)


def make_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def train(model, epochs, lr, penalty=None, batch=64):
    """Plain SGD with Nesterov momentum; ``penalty`` is the LC penalty when called as an L step."""
    xtr, ytr, _, _ = data()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr)).split(batch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            if penalty is not None:
                loss = loss + penalty()
            loss.backward()
            opt.step()


def l_step(epochs=2, lr=0.05, decay=0.95):
    def step(model, lc_penalty, j):
        train(model, epochs, lr * decay ** j, lc_penalty)
    return step


def test_error(model) -> float:
    _, _, xte, yte = data()
    with torch.no_grad():
        return float((model(xte).argmax(1) != yte).float().mean())


@functools.lru_cache(maxsize=4)
def _reference_state(seed):
    net = make_net(seed)
    train(net, epochs=30, lr=0.05)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def reference(seed=0):
    """A fresh copy of a trained reference network (about 2–3% test error; trained once per process)."""
    net = make_net(seed)
    net.load_state_dict(_reference_state(seed))
    torch.manual_seed(seed)
    return net
