"""lc.export: the exported module computes Δ(Θ) (within float tolerance), with the layer structure and the FLOPs
the rules promise, and leaves the original model alone."""
import copy
import dataclasses
import pytest
import torch
from torch import nn

import lc
from lc.export import MicroBatched, SparseLinear
from lc.measure import flops
from tests.lc.compression.cases import CASES


def _same_outputs(model, compressed, exported, x):
    reference = compressed.apply(copy.deepcopy(model)).eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), reference(x), rtol=1e-4, atol=1e-5)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 20))


def test_low_rank_linear_becomes_two_linears_with_r_times_m_plus_n_flops():
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.LowRank(target_rank=5)),
                                     lc.Param("2.weight"): (lc.AsIs, lc.LowRank(target_rank=19))})
    out = lc.export(model, c)
    first, second = out[0]
    assert (first.in_features, first.out_features, first.bias, second.out_features) == (40, 5, None, 30)
    assert isinstance(out[2], nn.Linear)                    # 19·(30 + 20) = 950 ≥ 600: dense is cheaper
    assert flops(out, torch.zeros(1, 40)) == 5 * (40 + 30) + 30 * 20
    assert flops(model, torch.zeros(7, 40)) == 7 * (40 * 30 + 30 * 20)
    _same_outputs(model, c, out, torch.randn(16, 40))
    for k, v in model.state_dict().items():                 # the original is untouched
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("scheme", [1, 2])
@pytest.mark.parametrize("stride,padding,dilation,bias", [(1, 1, 1, True), (2, 1, 1, False), ((2, 1), (0, 2),
                                                                                               (1, 2), True)])
def test_low_rank_conv_is_two_convs_of_its_scheme(scheme, stride, padding, dilation, bias):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(6, 8, 3, stride, padding, dilation, bias=bias), nn.ReLU())
    r = 2
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs(scheme=scheme), lc.LowRank(target_rank=r))})
    out = lc.export(model, c)
    first, second = out[0]
    x = torch.randn(3, 6, 11, 12)
    _same_outputs(model, c, out, x)
    h, w = model(x).shape[2:]
    if scheme == 1:
        assert (first.kernel_size, second.kernel_size) == ((3, 3), (1, 1))
        assert flops(out, x[:1]) == h * w * r * (6 * 9 + 8)
    else:
        assert (first.kernel_size, second.kernel_size) == ((1, 3), (3, 1))
        rows = first(x[:1]).shape[2]                        # the 1×kw conv runs on every input row
        assert rows == (11 - 1) // (stride if isinstance(stride, int) else stride[0]) + 1 or rows == 11
        assert flops(out, x[:1]) == rows * w * r * 6 * 3 + h * w * 8 * r * 3


def test_pruned_linear_dense_with_zeros_or_csr():
    model = _mlp()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=60))})
    x = torch.randn(9, 40)
    dense = lc.export(model, c, sparse="never")
    assert isinstance(dense[0], nn.Linear) and int((dense[0].weight != 0).sum()) == 60
    sparse = lc.export(model, c, sparse="always")
    assert isinstance(sparse[0], SparseLinear) and isinstance(sparse[2], nn.Linear)
    assert flops(sparse, x[:1]) == 60 + 30 * 20
    assert lc.measure.parameter_count(sparse) == 60 + 30 + 30 * 20 + 20
    measured = lc.export(model, c)                          # either kernel, whichever was faster here
    for out in (dense, sparse, measured):
        _same_outputs(model, c, out, x)
    with pytest.raises(lc.CompressionError, match="choose 'measure', 'never' or 'always'"):
        lc.export(model, c, sparse="auto")
    with pytest.raises(lc.CompressionError, match="micro_batch=0"):
        lc.export(model, c, micro_batch=0)
    with pytest.raises(lc.CompressionError, match="micro_batch='auto'.*'measure' or None"):
        lc.export(model, c, micro_batch="auto")
    with pytest.raises(lc.CompressionError, match="give an input batch tensor.*not list"):
        lc.export(model, c, example=[1.0] * 40)


def test_micro_batches_give_the_same_outputs():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    out = lc.export(model, lc.Compressed((), ()), micro_batch=4)
    calls = []
    out.module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x = torch.randn(10, 3, 8, 8)
    _same_outputs(model, lc.Compressed((), ()), out, x)
    assert calls == [4, 4, 2]


def test_micro_batches_measured_on_the_example_or_not_at_all():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    c = lc.Compressed.direct(model, {lc.Param("3.weight"): (lc.AsIs(scheme=2), lc.LowRank(target_rank=2))})
    x = torch.randn(130, 3, 8, 8)
    assert type(lc.export(model, c)) is nn.Sequential                             # default: the model's class
    assert type(lc.export(model, c, example=x)) is nn.Sequential                 # an example alone changes nothing
    small = torch.randn(32, 3, 8, 8)                                             # no slice size below 32: whole
    assert lc.export(model, c, micro_batch="measure", example=small).size is None
    out = lc.export(model, c, micro_batch="measure", example=x)                  # sliced or not, by measurement,
    assert isinstance(out, MicroBatched) and out.size in (None, 32, 64, 128)   # always the same type
    _same_outputs(model, c, out, x)
    forced = lc.export(model, c, micro_batch=64, example=x)                      # a number is not measured
    assert isinstance(forced, MicroBatched) and forced.size == 64
    with pytest.raises(lc.CompressionError, match="micro_batch='measure'.*give example=x"):
        lc.export(model, c, micro_batch="measure")


@pytest.mark.parametrize("case", [c for c in CASES if len(c.shape) == 2], ids=lambda c: c.id)
def test_every_compression_exports_to_the_same_outputs(case):
    """Every registry compression of a matrix, alone and mixed additively with pruning, on a Linear layer."""
    o, i = case.shape
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(i, o), nn.Tanh(), nn.Linear(o, 3))
    mixes = [] if getattr(case.compression, "coupling", None) is not None else [   # shared budgets do not mix
        [(lc.AsIs, case.compression), (lc.AsVector, lc.ConstraintL0Pruning(kappa=o))]]
    for value in [(lc.AsIs, case.compression), *mixes]:
        c = lc.Compressed.direct(model, {lc.Param("0.weight"): value}, mu=case.mu)
        for sparse in ("never", "always"):
            _same_outputs(model, c, lc.export(model, c, sparse=sparse), torch.randn(5, i))


def test_export_of_a_loaded_artifact(tmp_path):
    model = _mlp()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.LowRank(target_rank=4))})
    lc.save(tmp_path / "m.lc", model, c)
    fresh = _mlp()
    loaded = lc.load(tmp_path / "m.lc", fresh)
    out = lc.export(fresh, loaded)
    assert out[0][0].out_features == 4
    _same_outputs(model, c, out, torch.randn(4, 40))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so its batch norm stays."""

    def __init__(self):
        super().__init__()
        self.fc, self.bn = nn.Linear(6, 4), nn.BatchNorm1d(4)

    def forward(self, x):
        y = self.bn(self.fc(x))
        return y if float(y.sum()) > -1e9 else -y


def _randomise_batch_norms(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model


def test_batch_norms_fold_into_the_layer_before_them():
    torch.manual_seed(0)
    model = _randomise_batch_norms(nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5), nn.BatchNorm1d(5)))
    c = lc.Compressed.direct(model, {lc.Param("3.weight"): (lc.AsIs(scheme=2), lc.LowRank(target_rank=3))})
    out = lc.export(model, c)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in out.modules())
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in out.modules()
               if isinstance(m, nn.Conv2d))
    _same_outputs(model, c, out, torch.randn(4, 3, 8, 8))
    assert model.training and isinstance(model[1], nn.BatchNorm2d)        # the original is untouched
    plain = lc.export(model, lc.Compressed((), ()))                      # no compression: folding only
    with torch.no_grad():
        torch.testing.assert_close(plain(torch.ones(2, 3, 8, 8)), model.eval()(torch.ones(2, 3, 8, 8)),
                                   rtol=1e-4, atol=1e-5)
    model = _randomise_batch_norms(Branchy())
    kept = lc.export(model, lc.Compressed((), ()))
    assert isinstance(kept.bn, nn.BatchNorm1d)
    _same_outputs(model, lc.Compressed((), ()), kept, torch.randn(3, 6))


def test_float64_models_export_in_float64():
    model = _mlp().double()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.LowRank(target_rank=3))})
    out = lc.export(model, c)
    assert out[0][0].weight.dtype == torch.float64
    _same_outputs(model, c, out, torch.randn(3, 40, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pruned_models_export_dense(dtype):
    """torch's CSR kernel runs no half types on the CPU: such layers stay dense (export crashed inside
    torch.sparse.mm)."""
    model = _mlp().to(dtype)
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=40))})
    for sparse in ("measure", "always"):
        out = lc.export(model, c, sparse=sparse, batch_size=8)
        assert isinstance(out[0], nn.Linear) and out[0].weight.dtype == dtype
        x = torch.randn(8, 40).to(dtype)
        with torch.no_grad():
            assert torch.equal(out(x), c.apply(copy.deepcopy(model)).eval()(x))


def test_a_handler_registered_for_a_compression_type_replaces_its_layers():
    from lc.export import register
    from lc.export._registry import _HANDLERS

    class Marked(nn.Linear):
        pass

    @dataclasses.dataclass(frozen=True)
    class Tagged(lc.ConstraintL0Pruning):
        pass

    @register(Tagged)
    def mark(layer, view, compression, state, ctx):
        new = Marked(layer.in_features, layer.out_features)
        new.load_state_dict(layer.state_dict())
        return new

    try:
        model = _mlp()
        c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsVector, Tagged(kappa=100)),
                                         lc.Param("2.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=100))})
        out = lc.export(model, c, sparse="never")
        assert type(out[0]) is Marked and type(out[2]) is nn.Linear
        _same_outputs(model, c, out, torch.randn(4, 40))
    finally:
        del _HANDLERS[Tagged]


def test_folding_batch_norms_keeps_the_models_class_and_names():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 6 * 6, 2)
            self.shared_bn = nn.BatchNorm1d(2)
            self.again = self.shared_bn                     # one module under two names: not folded

        def forward(self, x):
            return self.again(self.fc(torch.relu(self.bn(self.conv(x))).flatten(1)))

    torch.manual_seed(0)
    model = Net()
    for bn in (model.bn, model.shared_bn):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    model.eval()
    out = lc.export(model, lc.Compressed.none())
    assert type(out) is Net and isinstance(out.bn, nn.Identity) and isinstance(out.again, nn.BatchNorm1d)
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), rtol=1e-4, atol=1e-5)
