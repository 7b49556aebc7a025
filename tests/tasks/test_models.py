import pytest
import torch

import lc
from tasks.models import VGG16_LAYERS, count_parameters, make_model


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def resnet_count(n):
    """Counted by hand: conv1 + BN, 3 stages of n blocks (two 3×3 convs without bias, two BNs), fc 64→10."""
    total = conv(3, 16, 3, False) + 2 * 16
    cin = 16
    for c in (16, 32, 64):
        for _ in range(n):
            total += conv(cin, c, 3, False) + conv(c, c, 3, False) + 4 * c
            cin = c
    return total + 64 * 10 + 10


def test_parameter_counts():
    assert count_parameters(make_model("lenet300", (1, 28, 28))) == 266_610
    assert count_parameters(make_model("lenet300", (1, 8, 8))) == 64 * 300 + 300 + 30_100 + 1010
    assert count_parameters(make_model("lenet5", (1, 28, 28))) == 431_080
    expected = {20: 269_722, 32: 464_154, 56: 853_018, 110: 1_727_962}
    for depth, count in expected.items():
        assert count == resnet_count((depth - 2) // 6)
        assert count_parameters(make_model(f"resnet{depth}", (3, 32, 32))) == count
    # the paper's 0.27M / 0.46M / 0.85M / 1.7M
    assert [round(c / 1e6, 2) for c in expected.values()] == [0.27, 0.46, 0.85, 1.73]
    vgg, cin = 0, 3
    for v in VGG16_LAYERS:
        if v != "M":
            vgg, cin = vgg + conv(cin, v, 3) + 2 * v, v
    vgg += 512 * 512 + 512 + 2 * 512 + 512 * 10 + 10
    assert vgg == 14_991_946
    assert count_parameters(make_model("vgg16", (3, 32, 32))) == vgg


@pytest.mark.parametrize("name,shape", [("lenet300", (1, 28, 28)), ("lenet5", (1, 28, 28)),
                                        ("resnet20", (3, 32, 32)), ("vgg16", (3, 32, 32))])
def test_forward_shapes(name, shape):
    m = make_model(name, shape).eval()
    assert m(torch.zeros(2, *shape)).shape == (2, 10)


def test_option_a_shortcut_pads_channels_and_subsamples():
    block = make_model("resnet20", (3, 32, 32)).blocks[3]        # first block of stage 2: 16 → 32, stride 2
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert float(s[:, :8].abs().sum()) == 0 and float(s[:, 24:].abs().sum()) == 0


def test_model_errors():
    with pytest.raises(lc.CompressionError, match="16×16"):
        make_model("lenet5", (1, 8, 8))
    with pytest.raises(lc.CompressionError, match="unknown model"):
        make_model("resnet18", (3, 32, 32))
    from tasks.models import CifarResNet
    with pytest.raises(lc.CompressionError, match="6n\\+2"):
        CifarResNet(21)
