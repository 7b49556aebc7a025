import pytest
import torch

import lc


@pytest.mark.parametrize("shape,scheme,matrix", [((6, 4), 1, (6, 4)), ((5,), 1, (5,)), ((8, 3, 5, 5), 1, (8, 75)),
                                                 ((8, 3, 5, 2), 2, (40, 6)), ((8, 3, 7), 1, (8, 21))])
def test_as_is_round_trip_is_exact(shape, scheme, matrix):
    t = torch.randn(shape)
    v = lc.AsIs(scheme=scheme)
    v.check([t.shape])
    m = v.flatten([t])
    assert tuple(m.shape) == matrix == tuple(v.shape([t.shape]))
    assert torch.equal(v.unflatten(m, [t.shape])[0], t)


def test_scheme_2_layout():
    # row (o, h), column (i, w): entry W[o, i, h, w] sits at [o*kh + h, i*kw + w]
    t = torch.randn(2, 3, 4, 5)
    m = lc.AsIs(scheme=2).flatten([t])
    for o, i, h, w in [(0, 0, 0, 0), (1, 2, 3, 4), (1, 0, 2, 3)]:
        assert m[o * 4 + h, i * 5 + w] == t[o, i, h, w]


def test_as_vector_round_trip_and_order():
    ts = [torch.randn(2, 3), torch.randn(4), torch.randn(1, 2, 2)]
    v = lc.AsVector()
    x = v.flatten(ts)
    assert x.shape == (14,) and v.shape([t.shape for t in ts]) == (14,)
    assert torch.equal(x[:6], ts[0].reshape(-1))
    for a, b in zip(v.unflatten(x, [t.shape for t in ts]), ts):
        assert torch.equal(a, b)


def test_view_class_and_instance_are_the_same():
    assert lc.AsIs() == lc.AsIs(scheme=1) and lc.AsVector() == lc.AsVector()
    assert repr(lc.ConstraintL0Pruning(kappa=5000)) == "ConstraintL0Pruning(kappa=5000)"
