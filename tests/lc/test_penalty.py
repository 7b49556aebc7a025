import pytest
import torch

from lc.algorithm import Penalty


def test_add_grad_equals_the_autograd_gradient_of_the_penalty():
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    targets = [torch.randn(4, 3), torch.randn(5)]
    pen = Penalty(0.37, list(zip(ps, targets)))
    with torch.no_grad():
        expected_value = sum(0.37 / 2 * float(((p - t) ** 2).sum()) for p, t in zip(ps, targets))
    assert float(pen().detach()) == pytest.approx(expected_value)
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


@pytest.mark.parametrize("mu", [0.01, 0.37, 5.0, 1e4])
def test_prox_solves_its_problem_and_is_stable_for_every_mu(mu):
    torch.manual_seed(1)
    ps = [torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64)), torch.nn.Parameter(torch.randn(5, dtype=torch.float64))]
    w0 = [p.detach().clone() for p in ps]
    targets = [torch.randn(4, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    pen, eta = Penalty(mu, list(zip(ps, targets))), 0.5
    pen.prox_(eta)
    for p, w, t in zip(ps, w0, targets):
        v = p.detach()
        # optimality of argmin_v 1/(2η)‖v − w‖² + μ/2‖v − t‖²: its gradient (v − w)/η + μ(v − t) vanishes
        assert torch.allclose((v - w) / eta + mu * (v - t), torch.zeros_like(v), atol=1e-9 * (1 + mu))
        # never past the target: the distance shrinks by the factor 1/(1 + ημ)
        assert torch.allclose((v - t).norm(), (w - t).norm() / (1 + eta * mu))
    with pytest.raises(Exception, match="eta"):
        pen.prox_(0.0)


def test_prox_is_the_gradient_step_to_first_order():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    t, mu, eta = torch.tensor([0.5, 0.5], dtype=torch.float64), 1e-4, 0.5
    grad_step = p.detach() - eta * mu * (p.detach() - t)
    Penalty(mu, [(p, t)]).prox_(eta)
    assert torch.allclose(p.detach(), grad_step, rtol=0, atol=(eta * mu) ** 2 * 3)
