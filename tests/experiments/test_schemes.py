"""experiments.schemes: one registry for the classification sweep and the Q-network study."""
import pytest
import torch

import lc
from experiments.schemes import FAMILIES, family, parse_scheme, rank_of


def test_rank_fractions_round_for_the_classifiers_and_ceil_below_full_for_the_q_networks():
    # documented: at 10 outputs a fraction of 0.2 leaves rank 2 (docs/tradeoff.md); lowrank+sparse's 5% rank of
    # digits' 300 × 64 layer is round(3.2) = 3; the Q-network study's hidden 64 × 64 layer at 0.25 is rank 16
    assert rank_of(0.2, (10, 100), rounding="round") == 2 and rank_of(0.05, (300, 64), rounding="round") == 3
    assert rank_of(0.05, (300, 64), rounding="ceil") == 4 and rank_of(0.25, (64, 64), rounding="ceil") == 16
    assert rank_of(0.125, (4, 64), rounding="ceil") == 1 and rank_of(0.125, (4, 64), rounding="round") == 1
    assert rank_of(1.0, (8, 64), rounding="ceil") == 7 and rank_of(1.0, (8, 64), rounding="round") == 8
    assert rank_of(0.5, (20, 1, 5, 5), rounding="round") == 10                 # a kernel as out × in·k·k
    with pytest.raises(lc.CompressionError, match="rounding"):
        rank_of(0.5, (4, 4), rounding="floor")


def test_schemes_parse_to_registry_families():
    assert parse_scheme("quantization=4").value == 4 and isinstance(parse_scheme("quantization=4").value, int)
    assert parse_scheme("pruning=0.1").name == "pruning=0.1" and parse_scheme("pruning=0.1").of is FAMILIES["pruning"]
    pq = parse_scheme("pruned-quant16=0.25")
    assert (pq.family, pq.value, pq.of.joint) == ("pruned-quant16", 0.25, True)
    for bad in ("hashing=3", "pruning", "pruning=abc", "quantization=2.5", "pruned-quant0=0.1"):
        with pytest.raises(lc.CompressionError, match="FAMILY=VALUE|integer"):
            parse_scheme(bad)


def test_every_family_builds_tasks_for_an_mlp():
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 4))
    for name, fam in FAMILIES.items():
        if fam.kind == "small":                  # a narrower network: no compression tasks on this one
            assert fam.tasks(net, fam.values[0]) == {}
            continue
        tasks = fam.tasks(net, fam.values[0], example=torch.randn(2, 8))
        assert tasks and all(isinstance(p, lc.Param) for p in tasks), name
    assert [p.targets for p in family("low-rank-hidden").tasks(net, 0.25)] == [("2.weight",)]
    assert len(family("pruning").tasks(net, 0.1)) == 1 and len(family("quantization").tasks(net, 2)) == 3
    with pytest.raises(lc.CompressionError, match="channels-flops finds the model's channels from an input batch"):
        family("channels-flops").tasks(net, 2)
