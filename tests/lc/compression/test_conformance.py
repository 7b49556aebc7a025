"""One conformance suite over every compression (the registry is ``cases.CASES``): the checks of
:mod:`lc.testing`, each on its own, in float32, float64 and bfloat16, on every device."""
import pytest
import torch

import lc.testing
from tests.conftest import devices
from tests.lc.compression.cases import CASES


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request):
    return request.param


@pytest.mark.parametrize("check", list(lc.testing.CHECKS))
@pytest.mark.parametrize("dtype", lc.testing.DTYPES, ids=str)
@pytest.mark.parametrize("device", devices())
def test_conformance(case, check, dtype, device):
    if check == "idempotent" and not case.idempotent:
        pytest.skip("not a projection (see cases.Case.idempotent)")
    lc.testing.check_compression(case.compression, case.shape, feasible=case.feasible, mu=case.mu,
                                 idempotent=case.idempotent, dtypes=(dtype,), devices=(device,), checks=(check,))


def test_a_failing_check_names_itself_the_compression_and_the_dtype():
    class Broken(lc.ConstraintL0Pruning):
        def decompress(self, state):                       # one nonzero too many: infeasible
            out = super().decompress(state).clone()
            flat = out.view(-1)
            flat[int((flat == 0).nonzero()[0])] = 1.0
            return out
    with pytest.raises(AssertionError, match=r"Broken\(kappa=3\) on \[20\] torch.float32 \(cpu\): "
                                             r"check 'feasible' failed: Δ does not satisfy the constraint"):
        lc.testing.check_compression(Broken(kappa=3), (20,), feasible=lambda d: int((d != 0).sum()) <= 3)


def test_an_oracle_worse_than_the_c_step_is_fine_and_a_better_one_fails():
    c = lc.ConstraintL0Pruning(kappa=3)
    keep_first = lambda w, mu: torch.cat([w[:3], torch.zeros_like(w[3:])])  # noqa: E731 - feasible, not optimal
    lc.testing.check_compression(c, (10,), oracle=keep_first, checks=("oracle",))
    with pytest.raises(AssertionError, match="worse than the oracle's"):
        lc.testing.check_compression(lc.ConstraintL0Pruning(kappa=2), (10,), oracle=lambda w, mu: torch.where(
            w.abs() >= w.abs().sort(descending=True).values[2], w, 0), checks=("oracle",))
