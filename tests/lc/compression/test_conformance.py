"""One conformance suite over every compression (the registry is ``cases.CASES``)."""
import math

import pytest
import torch

from tests.conftest import devices
from tests.lc.compression.cases import CASES


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request):
    return request.param


def _w(case, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return torch.randn(case.shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def test_output_is_feasible_with_input_shape(case):
    w = _w(case)
    case.compression.check(w.shape)
    out = case.compression.decompress(case.compression.compress(w, case.mu))
    assert out.shape == w.shape
    assert bool(torch.isfinite(out).all())
    assert case.feasible(out)


def test_idempotent_on_its_own_output(case):
    if not case.idempotent:
        pytest.skip("not a projection (see cases.Case.idempotent)")
    w = _w(case)
    first = case.compression.decompress(case.compression.compress(w, case.mu))
    again_state = case.compression.compress(first, case.mu)
    torch.testing.assert_close(case.compression.decompress(again_state), first, rtol=1e-6, atol=1e-6)


def test_warm_start_gives_the_same_answer(case):
    w = _w(case)
    cold = case.compression.compress(w, case.mu)
    w2 = w + 0.01 * torch.randn_like(w)
    torch.testing.assert_close(case.compression.decompress(case.compression.compress(w2, case.mu, previous=cold)),
                               case.compression.decompress(case.compression.compress(w2, case.mu)),
                               rtol=1e-5, atol=1e-6)


def test_bits_are_consistent(case):
    w = _w(case)
    s = case.compression.compress(w, case.mu)
    assert isinstance(s.bits, int) and s.bits >= 0
    if case.idempotent:
        again = case.compression.compress(case.compression.decompress(s), case.mu)
        assert again.bits == s.bits                      # same Θ, same storage
    n = math.prod(case.shape)
    assert s.bits <= 32 * n + 64 * 8                     # never (much) more than the dense tensor


def test_state_round_trips_as_plain_data(case):
    from lc import State
    s = case.compression.compress(_w(case), case.mu)
    back = State.from_dict(s.to_dict())
    torch.testing.assert_close(case.compression.decompress(back), case.compression.decompress(s))
    assert back.bits == s.bits


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", devices())
def test_dtype_and_device_kept(case, dtype, device):
    w = _w(case, dtype, device)
    w0 = w.clone()
    out = case.compression.decompress(case.compression.compress(w, case.mu))
    assert out.dtype == dtype and out.device == w.device
    assert torch.equal(w, w0)                            # the input is not modified
