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


# ------------------------------------------------------------------------------------------------ step(optimizer)
from lc import CompressionError  # noqa: E402
from lc.penalty import step_sizes  # noqa: E402


def _constant_gradient_steps(make, g, k):
    """Run optimizer ``make([p])`` k steps on the constant gradient g; return it, p and the last displacement."""
    p = torch.nn.Parameter(torch.zeros_like(g))
    opt = make([p])
    for _ in range(k):
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
    return opt, p, p.detach() - before


@pytest.mark.parametrize("make,exact", [
    (lambda ps: torch.optim.SGD(ps, lr=0.1), True),
    (lambda ps: torch.optim.Adam(ps, lr=1e-2), True),
    (lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True), True),
    (lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.0), True),
    (lambda ps: torch.optim.Adamax(ps, lr=1e-2), True),
    (lambda ps: torch.optim.Adagrad(ps, lr=1e-1, lr_decay=0.01), True),
    (lambda ps: torch.optim.RMSprop(ps, lr=1e-2), True),
    (lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.5), False),
    (lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True), False),
])
def test_step_sizes_are_how_far_the_optimizer_moves_per_unit_of_a_constant_gradient(make, exact):
    """The oracle is the optimizer itself: on a constant gradient g its step is η·g (exactly for the adaptive
    ones at every step; in the steady state of momentum)."""
    g = torch.tensor([0.5, -2.0, 1e-3, 3.0], dtype=torch.float64)
    opt, p, moved = _constant_gradient_steps(make, g, 7 if exact else 300)
    eta = step_sizes(opt, opt.param_groups[0], p)
    # step k moves by −η g with η from the state as step k left it (it updates its statistics, then moves)
    torch.testing.assert_close(moved, -eta * g, rtol=1e-9 if exact else 1e-3, atol=1e-12 if exact else 1e-9)


def test_step_is_the_exact_prox_in_the_optimizers_metric():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    opt = torch.optim.Adam([p], lr=1e-2)
    p.grad = torch.randn(6, dtype=torch.float64)
    opt.step()
    w, t, mu = p.detach().clone(), torch.randn(6, dtype=torch.float64), 3.0
    eta = step_sizes(opt, opt.param_groups[0], p)
    Penalty(mu, [(p, t)]).step(opt)
    v = p.detach()
    # optimality of argmin_v ½‖v − w‖²_{1/η} + μ/2‖v − t‖²: (v − w)/η + μ(v − t) = 0, per coordinate
    torch.testing.assert_close((v - w) / eta + mu * (v - t), torch.zeros_like(v), atol=1e-9, rtol=0)
    sgd = torch.optim.SGD([p], lr=0.2)
    before = p.detach().clone()
    Penalty(mu, [(p, t)]).step(sgd)                         # plain SGD: the prox at its learning rate
    q = torch.nn.Parameter(before.clone())
    Penalty(mu, [(q, t)]).prox_(0.2)
    assert torch.equal(p.detach(), q.detach())


def test_step_follows_a_scheduler_and_refuses_a_weight_the_optimizer_does_not_hold():
    p, other = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()                                            # lr 0.5 now
    Penalty(1.0, [(p, torch.zeros(3))]).step(opt)
    torch.testing.assert_close(p.detach(), torch.full((3,), 1 / 1.5))   # f = ημ/(1 + ημ) = 1/3
    with pytest.raises(CompressionError, match="in no parameter group of the optimizer"):
        Penalty(1.0, [(other, torch.zeros(2))]).step(opt)


def test_adam_with_the_decoupled_step_reaches_the_l_steps_minimiser():
    """L(w) = ½(w − a)², target t: the L step's minimiser is (a + μt)/(1 + μ). Adam + step(optimizer) gets there;
    Adam + the prox at its plain learning rate does not (its normalised steps outweigh a pull of lr·μ·|w − t|)."""
    a, t, mu = 1.0, 0.0, 0.5
    ends = {}
    for mode in ("metric", "plain"):
        p = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
        opt = torch.optim.Adam([p], lr=1e-3)
        pen = Penalty(mu, [(p, torch.tensor([t], dtype=torch.float64))])
        for _ in range(20_000):
            p.grad = p.detach() - a
            opt.step()
            pen.step(opt) if mode == "metric" else pen.prox_(1e-3)
        ends[mode] = float(p.detach())
    assert ends["metric"] == pytest.approx((a + mu * t) / (1 + mu), abs=5e-3)
    assert abs(ends["plain"] - (a + mu * t) / (1 + mu)) > 0.2
