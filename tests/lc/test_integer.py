"""Integer-only inference: the fixed-point requantization against exact rational rounding, the integer net against
the float model, and the generated C code compiled and run bit for bit against the Python integer reference."""
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import lc
from lc.export import integer
from lc.export.cgen import CompiledNet, compile_shared


def test_fixed_point_multipliers_and_requantization_round_like_exact_arithmetic():
    rng = np.random.default_rng(0)
    for m in [0.5, 0.25, 1e-3, 0.7310585, 3e-7, 0.999999, 1.0, 1.86827, 37.5]:
        m0, n = integer.fixed_point(m)
        assert (1 << 30) <= m0 < (1 << 31) and abs(m0 * 2.0 ** (-31 - n) - m) <= 2.0 ** (-31 - n)
        acc = rng.integers(-(1 << 24), 1 << 24, 2000)
        got = integer.requantize(acc, np.full_like(acc, m0), np.full_like(acc, n))
        exact = [Fraction(int(a) * m0 * (1 << max(-n, 0)), 1 << (31 + max(n, 0))) for a in acc]
        # two roundings (TFLite's): to an integer after the high multiply, then after the shift right by n:
        # within 1/2 + 2^−(n+1) of the exact product (1/2 when nothing is shifted right)
        bound = Fraction(1, 2) + (Fraction(1, 1 << (n + 1)) if n > 0 else 0)
        errors = [abs(Fraction(int(g)) - e) for g, e in zip(got, exact)]
        assert max(errors) <= bound and sum(e > Fraction(1, 2) for e in errors) < 0.3 * len(errors)
    with pytest.raises(lc.CompressionError, match="not in"):
        integer.fixed_point(0.0)


def _mlp_and_grid(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    tasks = {lc.Param(f"{i}.weight"): (lc.AsIs, lc.AffineQuantization(8, per_channel=True)) for i in (0, 2, 4)}
    return model, lc.Compressed.direct(model, tasks)


def test_the_integer_net_keeps_the_lc_grid_and_follows_the_float_model():
    model, c = _mlp_and_grid()
    x = torch.randn(256, 12)
    net = integer.convert(model, c, x)
    assert [layer.source for layer in net.layers] == ["lc grid"] * 3           # Δ(Θ)'s own int8 weights
    out = net.dequantize(net.run(net.quantize_input(x.numpy())))
    with torch.no_grad():
        want = c.apply(model)(x).numpy()
    assert np.abs(out - want).max() < 0.05 * np.abs(want).max()               # activation rounding only
    assert (out.argmax(1) == want.argmax(1)).mean() > 0.95
    plain = integer.convert(model, lc.Compressed.none(), x)                    # a float model: weights rounded
    assert [layer.source for layer in plain.layers] == ["rounded"] * 3


def _cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 1 * 1, 3)).eval()


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")),
                    reason="no C compiler on PATH (install gcc to run the integer net's C code)")
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_the_c_code_computes_the_python_integer_reference_bit_for_bit(tmp_path, kind):
    if kind == "mlp":
        model, c = _mlp_and_grid()
        x = torch.randn(64, 12)
    else:
        model = _cnn()
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.5, 0.5)
            model[1].running_var.uniform_(0.5, 2.0)
        c = lc.Compressed.direct(model, {lc.Param("4.weight"): (lc.AsIs, lc.AffineQuantization(6))})
        x = torch.randn(64, 1, 6, 6)
    net = integer.convert(model, c, x)
    source = net.c_source()
    assert "float" not in source and "double" not in source                   # integer-only
    compiled = CompiledNet(compile_shared(source, tmp_path), int(np.prod(x.shape[1:])), net.run(
        net.quantize_input(x[:1].numpy())).shape[1])
    q = np.random.default_rng(3).integers(-127, 128, (200, *x.shape[1:])).astype(np.int8)
    q[:64] = net.quantize_input(x.numpy())
    assert np.array_equal(compiled(q), net.run(q))
    assert net.code_bytes() < sum(p.numel() for p in model.parameters()) * 2


def test_what_cannot_be_converted_says_so():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.a(x)) + x
    with pytest.raises(lc.CompressionError, match="chain of Linear, Conv2d"):
        integer.convert(Skip(), lc.Compressed.none(), torch.randn(3, 4))
    with pytest.raises(lc.CompressionError, match="cannot convert layer '1'"):
        integer.convert(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), lc.Compressed.none(), torch.randn(3, 4))


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")), reason="no C compiler")
def test_two_nets_compiled_in_one_process_stay_two(tmp_path):
    x = torch.randn(32, 12)
    outs = []
    for seed in (0, 1):
        model, c = _mlp_and_grid(seed)
        net = integer.convert(model, c, x)
        compiled = CompiledNet(compile_shared(net.c_source(), tmp_path), 12, 4)
        q = net.quantize_input(x.numpy())
        assert np.array_equal(compiled(q), net.run(q))
        outs.append(compiled(q))
    assert not np.array_equal(*outs)
