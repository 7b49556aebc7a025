"""The export benchmark's models and compressions are what its docs say (the timing itself is not tested)."""
import torch

import lc
from benchmarks import export_speed as bench
from lc.measure import flops, parameter_count


def test_architectures_have_their_published_sizes():
    lenet, resnet = bench.lenet300(), bench.ResNet20()
    assert parameter_count(lenet) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert parameter_count(resnet) == 269_722                     # "0.27M" (He et al. 2016, Table 6)
    assert flops(lenet, torch.zeros(1, 1, 28, 28)) == 266_200
    assert 40e6 < flops(resnet, torch.zeros(1, 3, 32, 32)) < 41e6   # ≈ 41M multiply-adds
    assert resnet(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_low_rank_runs_cut_flops_about_4x():
    for build, shape in bench.MODELS.values():
        torch.manual_seed(0)
        model = build().eval()
        x = torch.zeros((1, *shape))
        c = lc.Compressed.direct(model, bench.low_rank_tasks(model, scheme=2))
        assert 3.5 < flops(model, x) / flops(lc.export(model, c, sparse="never"), x) < 4.5


def test_resnet20_artifact_is_within_the_stated_bound(tmp_path):
    torch.manual_seed(0)
    model = bench.ResNet20()
    c = lc.Compressed.direct(model, bench.pruning_tasks(model))
    size = lc.save(tmp_path / "r.lc", model, c)
    nominal = lc.nominal_bits(model, c) / 8
    assert nominal < size <= lc.storage.size_bound(model, c)
    assert size - nominal < 3000                        # 136 stored tensors: the header is ~2.3 KB
