"""Quantized layers that run as what they are: int8 kernels for affine grids (outputs within the stated bound of
Δ(Θ)'s), packed codebooks (the same outputs, fewer resident bytes), and the export options that choose them."""
import copy

import pytest
import torch
from torch import nn

import lc
from lc.export import CodebookWeight, Int8Linear, Reweighted, resident_bytes


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)).eval()


def _int8_bound(model, compressed, x, layer=0):
    """max|x_b|/254 · ‖Δ_j‖₁ for the first layer's outputs: the error of rounding the input to int8 per row."""
    delta = compressed.deltas()[f"{layer}.weight"]
    return (x.abs().amax(1, keepdim=True) / 254) * delta.abs().sum(1)[None, :]


@pytest.mark.parametrize("bits,symmetric,per_channel", [(8, True, False), (8, True, True), (8, False, True),
                                                        (4, False, False), (2, True, True)])
def test_int8_linear_is_within_the_input_rounding_bound_of_delta(bits, symmetric, per_channel):
    model = _mlp()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.AffineQuantization(bits, symmetric,
                                                                                          per_channel))})
    out = lc.export(model, c, integer="always")
    assert isinstance(out[0], Int8Linear) and out[0].source.weight.dtype == torch.int8 and isinstance(out[2], nn.Linear)
    x = torch.randn(33, 64) * 3
    with torch.no_grad():
        got, want = out[0](x), nn.functional.linear(x, c.deltas()["0.weight"], model[0].bias)
    assert bool(((got - want).abs() <= _int8_bound(model, c, x) + 1e-5).all())
    assert (got - want).abs().max() > 0                      # really the integer path, not float
    # the integers are exact: an input already on the int8 grid gives Δ(Θ)'s outputs to float rounding
    q = torch.randint(-127, 128, (5, 64)).float()
    q[:, 0] = 127.0                                          # so that max|x| = 127 and the input scale is 1
    with torch.no_grad():
        torch.testing.assert_close(out[0](q), nn.functional.linear(q, c.deltas()["0.weight"], model[0].bias),
                                   rtol=1e-5, atol=1e-3)


def test_int8_is_chosen_by_measurement_or_never():
    model = _mlp()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.AffineQuantization(8))})
    assert isinstance(lc.export(model, c)[0], nn.Linear)                          # default: never
    measured = lc.export(model, c, integer="measure", batch_size=64)
    assert type(measured[0]) in (nn.Linear, Int8Linear)
    with pytest.raises(lc.CompressionError, match="integer is 'never', 'measure' or 'always'"):
        lc.export(model, c, integer="yes")


@pytest.mark.parametrize("k,per_channel", [(2, False), (4, True), (16, False), (3, False)])
def test_packed_codebooks_give_delta_with_fewer_resident_bytes(k, per_channel):
    model = _mlp()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.AdaptiveQuantization(k, per_channel=per_channel)),
                                     lc.Param("2.weight"): (lc.AsVector, lc.AdaptiveQuantization(k))})
    out = lc.export(model, c, codebooks="packed")
    assert all(isinstance(out[i], Reweighted) and isinstance(out[i].source, CodebookWeight) for i in (0, 2))
    bits = {2: 1, 3: 2, 4: 2, 16: 4}[k]
    assert out[0].source.packed.numel() == -(-64 * 48 * bits // 8) and out[0].source.bits == bits
    x = torch.randn(7, 64)
    reference = c.apply(copy.deepcopy(model))
    with torch.no_grad():
        torch.testing.assert_close(out(x), reference(x), rtol=1e-5, atol=1e-6)
        assert torch.equal(out[0].weight(), c.deltas()["0.weight"])
    dense = resident_bytes(lc.export(model, c))
    assert resident_bytes(out) < dense - 0.6 * 4 * (64 * 48 + 48 * 10)           # ≥ 60 % of the weights' bytes saved


def test_packed_codebooks_in_convolutions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.AdaptiveQuantization(4, per_channel=True)),
                                     lc.Param("2.weight"): (lc.AsVector, lc.AdaptiveQuantization(16))})
    out = lc.export(model, c, codebooks="packed")
    assert isinstance(out[0], Reweighted) and isinstance(out[2], Reweighted)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(out(x), c.apply(copy.deepcopy(model))(x), rtol=1e-5, atol=1e-5)


def test_quantized_forms_count_the_flops_of_their_layers():
    model = _mlp()
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): (lc.AsIs, lc.AffineQuantization(8)),
                                     lc.Param("2.weight"): (lc.AsIs, lc.AdaptiveQuantization(4))})
    x = torch.zeros(3, 64)
    assert lc.measure.flops(lc.export(model, c, integer="always", codebooks="packed"), x) == \
        lc.measure.flops(model, x) == 3 * (64 * 48 + 48 * 10)


def test_batch_norms_are_folded_beside_quantized_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    c = lc.Compressed.direct(model, {lc.Param("4.weight"): (lc.AsIs, lc.AffineQuantization(8))})
    for out in (lc.export(model, c, integer="always"), lc.export(model, c, codebooks="packed"),
                lc.export(model, lc.Compressed.direct(model, {lc.Param("4.weight"): (
                    lc.AsIs, lc.AdaptiveQuantization(4))}), codebooks="packed")):
        assert isinstance(out[1], nn.Identity)
