"""Every validation error: raised at construction (before any training), of the project's type, saying what to do."""
import pytest
import torch

import lc


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 3)
        self.fc2 = torch.nn.Linear(3, 2)
        self.conv = torch.nn.Conv2d(2, 4, 3)
        self.steps = torch.nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)


def never_called(*args):
    raise AssertionError("training started before validation finished")


def build(tasks, mu=(1.0, 2.0)):
    return lc.Algorithm(Net(), tasks, list(mu), never_called)


def test_unknown_name_lists_near_names():
    with pytest.raises(lc.CompressionError, match=r"no parameter named 'fc1.weights'.*did you mean 'fc1.weight'"):
        build({lc.Param("fc1.weights"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))})


def test_unknown_name_without_near_names_lists_parameters():
    with pytest.raises(lc.CompressionError, match=r"its parameters are 'steps', 'fc1.weight', 'fc1.bias'"):
        build({lc.Param("zzz"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))})


def test_tensor_not_in_model():
    with pytest.raises(lc.CompressionError, match="not a parameter of the model"):
        build({lc.Param(torch.nn.Linear(4, 3).weight): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))})


def test_tensor_in_two_tasks():
    net = Net()
    with pytest.raises(lc.CompressionError, match="'fc1.weight' appears in two tasks"):
        lc.Algorithm(net, {lc.Param(net.fc1.weight): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1)),
                           lc.Param(["fc2.weight", "fc1.weight"]): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))},
                     [1.0], never_called)


def test_same_tensor_twice_in_one_param():
    with pytest.raises(lc.CompressionError, match="names the same tensor twice"):
        build({lc.Param(["fc1.weight", "fc1.weight"]): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))})


@pytest.mark.parametrize("kappa", [13, -1])
def test_impossible_budget_names_task_and_range(kappa):
    with pytest.raises(lc.CompressionError, match=r"task 'fc1.weight': .*between 0 and 12"):
        build({lc.Param("fc1.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=kappa))})


def test_joint_budget_counts_all_tensors():
    build({lc.Param(["fc1.weight", "fc2.weight"]): (lc.AsVector, lc.ConstraintL0Pruning(kappa=18))})
    with pytest.raises(lc.CompressionError, match="between 0 and 18"):
        build({lc.Param(["fc1.weight", "fc2.weight"]): (lc.AsVector, lc.ConstraintL0Pruning(kappa=19))})


def test_non_float_tensor():
    with pytest.raises(lc.CompressionError, match="'steps' has dtype torch.int64; only floating-point"):
        build({lc.Param("steps"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))})


@pytest.mark.parametrize("mu,msg", [([], "mu_schedule is empty"), ([1.0, 0.0], "finite values > 0"),
                                    ([-1.0], "finite values > 0"), ([1.0, float("nan")], "finite values > 0"),
                                    ([1.0, 2.0, 1.5], r"must not decrease: μ\[2\]=1.5 < μ\[1\]=2"),
                                    ("abc", "sequence of numbers")])
def test_bad_mu_schedule(mu, msg):
    with pytest.raises(lc.CompressionError, match=msg):
        build({lc.Param("fc1.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))}, mu)


@pytest.mark.parametrize("args,msg", [((0.0, 1.1, 3), "mu0"), ((1.0, 0.9, 3), "may not decrease"),
                                      ((1.0, 1.1, 0), "steps")])
def test_bad_geometric_mu(args, msg):
    with pytest.raises(lc.CompressionError, match=msg):
        lc.geometric_mu(*args)


def test_geometric_mu_values():
    assert lc.geometric_mu(2.0, 3.0, 3) == [2.0, 6.0, 18.0]


@pytest.mark.parametrize("tasks,msg", [
    ({}, "non-empty dict"),
    ({"fc1.weight": (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))}, "keys must be lc.Param"),
    ({lc.Param("fc1.weight"): lc.ConstraintL0Pruning(kappa=1)}, "must be a .View, Compression. pair"),
    ({lc.Param("fc1.weight"): (lc.ConstraintL0Pruning(kappa=1), lc.AsVector)}, "first element must be a view"),
    ({lc.Param("fc1.weight"): (lc.AsVector, lc.ConstraintL0Pruning)}, "is a class; give an instance"),
    ({lc.Param("fc1.weight"): (lc.AsVector, "prune")}, "must be an lc compression"),
    ({lc.Param("fc1.weight"): []}, "empty list"),
    ({lc.Param(["fc1.weight", "fc2.weight"]): (lc.AsIs, lc.ConstraintL0Pruning(kappa=1))}, "AsIs views exactly one"),
    ({lc.Param("fc1.weight"): (lc.AsIs(scheme=2), lc.ConstraintL0Pruning(kappa=1))}, "scheme=2. applies to 2-D conv"),
    ({lc.Param("conv.weight"): (lc.AsIs(scheme=3), lc.ConstraintL0Pruning(kappa=1))}, "scheme must be 1 or 2"),
])
def test_malformed_tasks(tasks, msg):
    with pytest.raises(lc.CompressionError, match=msg):
        build(tasks)


def test_param_of_nothing():
    with pytest.raises(lc.CompressionError, match="names no tensor"):
        lc.Param([])


def test_l_step_must_be_callable():
    with pytest.raises(lc.CompressionError, match="l_step_optimization must be callable"):
        lc.Algorithm(Net(), {lc.Param("fc1.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=1))}, [1.0], None)


def test_compression_error_is_a_value_error():
    assert issubclass(lc.CompressionError, ValueError)


class Blocks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList(torch.nn.ModuleDict({"attn": torch.nn.Linear(4, 4), "mlp": torch.nn.Linear(4, 4)})
                                          for _ in range(3))
        self.head = torch.nn.Linear(4, 4, bias=False)
        self.embed = torch.nn.Linear(4, 4, bias=False)
        self.head.weight = self.embed.weight                 # tied


def test_param_patterns_match_in_model_order_and_tied_tensors_once():
    net = Blocks()
    assert lc.match(net, "blocks.*.attn.weight") == [f"blocks.{i}.attn.weight" for i in range(3)]
    assert lc.match(net, "blocks.?.*.weight", "blocks.0.attn.weight") == [
        f"blocks.{i}.{k}.weight" for i in range(3) for k in ("attn", "mlp")]
    assert lc.match(net, "*.weight")[-1] == "head.weight" and "embed.weight" not in lc.match(net, "*.weight")
    c = lc.Compressed.direct(net, {lc.Param("blocks.*.mlp.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))})
    assert c.tasks[0].param_names == tuple(f"blocks.{i}.mlp.weight" for i in range(3))
    with pytest.raises(lc.CompressionError, match=r"pattern 'blocks.\*.atn.weight' matches no parameter.*did you "
                                                  r"mean"):
        lc.Compressed.direct(net, {lc.Param("blocks.*.atn.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))})
    with pytest.raises(lc.CompressionError, match="appears in two tasks"):
        lc.Compressed.direct(net, {lc.Param("blocks.0.*"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5)),
                                   lc.Param("blocks.0.attn.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))})
