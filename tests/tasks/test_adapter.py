"""tasks.adapter: the protocol and the helpers every adapter shares."""
import torch
from torch import nn

from tasks.adapter import Adapter, flops, weight_names
from tasks.classification import Classification, TaskConfig
from tasks.data import load


def test_classification_is_an_adapter():
    task = Classification(TaskConfig(), data=load("digits"))
    assert isinstance(task, Adapter)
    assert (task.name, task.metric, task.higher_is_better, task.seed) == ("digits/lenet300", "error", False, 0)
    assert task.split == task.data.split and task.example_input(3).shape == (3, *task.data.input_shape)
    assert set(task.evaluate(task.make_model())) == {"error", "loss"}
    assert "data_dir" not in task.fingerprint() and task.fingerprint()["model"] == "lenet300"


def test_weight_names_are_the_linear_and_conv_weights():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    # an MLP (the Q-networks): exactly the parameters named *.weight, as the Q-network study used to list them
    assert weight_names(mlp) == [n for n, _ in mlp.named_parameters() if n.endswith("weight")] == \
        ["0.weight", "2.weight", "4.weight"]
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    assert weight_names(bn) == ["0.weight", "3.weight"]                  # not the batch norm's weight


def test_flops_keeps_every_modules_mode():
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(), nn.Linear(8, 2)).train()
    net[1].eval()
    assert flops(net, (4,)) == 4 * 8 + 8 * 2
    assert net.training and not net[1].training and net[2].training
    with torch.no_grad():
        net[0].weight[:, 1:] = 0
    assert flops(net, (4,)) == 8 + 8 * 2
