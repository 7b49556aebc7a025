"""lc.recalibrate_batchnorm: the running statistics become the data's, computed independently; modes and
statistics kept on error."""
import pytest
import torch
from torch import nn

import lc


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5)).eval()


def test_the_statistics_become_the_batches_averages():
    net = _net()
    batches = [torch.randn(16, 2, 8, 8) * 3 + 1 for _ in range(3)]
    with torch.no_grad():                      # the oracle: per-batch mean and unbiased variance, averaged
        h = [net[0](x) for x in batches]
        mean = torch.stack([a.mean((0, 2, 3)) for a in h]).mean(0)
        var = torch.stack([a.var((0, 2, 3), unbiased=True) for a in h]).mean(0)
    out = lc.recalibrate_batchnorm(net, batches)
    assert out is net and not net.training and not net[3].training and not net[1].training
    assert torch.allclose(net[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(net[1].running_var, var, rtol=1e-4)
    assert net[1].momentum == 0.1 and int(net[1].num_batches_tracked) == 3
    with torch.no_grad():                      # the second norm saw the first's batch-mode outputs (dropout off)
        bn = net[1]
        a = [net[5](torch.relu(nn.functional.batch_norm(c, None, None, bn.weight, bn.bias, True, 0.0, bn.eps))
                    .flatten(1)) for c in h]
    assert torch.allclose(net[6].running_mean, torch.stack([x.mean(0) for x in a]).mean(0), atol=1e-5)


def test_it_fixes_the_stale_statistics_of_a_changed_model():
    net = _net()
    net[3].p = 0.0                             # dropout off, so that train mode is deterministic
    x = torch.randn(256, 2, 8, 8)
    lc.recalibrate_batchnorm(net, [x])
    with torch.no_grad():
        net[0].weight.mul_(5)                  # as a C step moves weights: the statistics are now stale
        target = net.train()(x)                # what the normalisation should do: the batch's own statistics
        stale = net.eval()(x)
        fresh = lc.recalibrate_batchnorm(net, [x])(x)
    stale_err, fresh_err = (stale - target).abs().max(), (fresh - target).abs().max()
    assert stale_err > 0.5 and fresh_err < 0.02 * stale_err


def test_no_batch_or_an_error_leaves_the_statistics_as_they_were():
    net = _net()
    lc.recalibrate_batchnorm(net, [torch.randn(8, 2, 8, 8)])
    before = {k: b.clone() for k, b in net.state_dict().items()}
    with pytest.raises(lc.CompressionError, match="no batches"):
        lc.recalibrate_batchnorm(net, [])

    def failing():
        yield torch.randn(8, 2, 8, 8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lc.recalibrate_batchnorm(net, failing())
    assert all(torch.equal(before[k], b) for k, b in net.state_dict().items())
    assert not net.training and net[1].momentum == 0.1


def test_a_model_without_batch_norm_is_unchanged():
    net = nn.Sequential(nn.Linear(3, 2))
    assert lc.recalibrate_batchnorm(net, []) is net
