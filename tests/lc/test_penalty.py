import pytest
import torch

from lc.algorithm import Penalty


def test_add_grad_equals_the_autograd_gradient_of_the_penalty():
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    targets = [torch.randn(4, 3), torch.randn(5)]
    pen = Penalty(0.37, list(zip(ps, targets)))
    assert float(pen()) == pytest.approx(sum(0.37 / 2 * float(((p - t) ** 2).sum()) for p, t in zip(ps, targets)))
    pen().backward()
    expected = [p.grad.clone() for p in ps]
    for p in ps:
        p.grad = None
    pen.add_grad_()                                        # .grad None → set
    assert all(torch.allclose(p.grad, e) for p, e in zip(ps, expected))
    pen.add_grad_()                                        # .grad present → added
    assert all(torch.allclose(p.grad, 2 * e) for p, e in zip(ps, expected))
    for p, t, e in zip(ps, targets, expected):
        assert torch.allclose(e, 0.37 * (p.detach() - t))
