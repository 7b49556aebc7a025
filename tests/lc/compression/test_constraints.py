"""Hyperparameter constraints: each kind of constraint against the values it must allow and refuse, the message
(class, field, value, what is allowed, what the field means), a compression written outside lc that declares its
own, every lc compression declaring all its fields, and numpy integers accepted where an integer is asked."""
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
import torch

import lc
import lc.compression as C
from lc.compression import WEIGHTS, Boolean, Bound, InstanceOf, Integer, Options, OrNone, Real


class Budget:
    pass


@dataclass(frozen=True)
class KeepLargest(lc.Compression):
    """A compression of a third party: every kind of constraint, declared as the Compression docstring says."""

    count: int
    scale: float = 1.0
    half: float = 0.5
    exact: bool = False
    mode: str = "abs"
    budget: object = None
    rank: int = 1
    constraints = {"count": (Integer(0, WEIGHTS), "is the number of weights to keep"),
                   "scale": (Real(0, closed="neither"), "multiplies the weights kept"),
                   "half": (Real(0, 1, closed="left", finite=False), "is a fraction"),
                   "exact": (Boolean(), "asks for an exact answer"),
                   "mode": (Options(("abs", "square")), "says how weights are ranked"),
                   "budget": (OrNone(InstanceOf(lambda: Budget, "a Budget")), "is shared by layers"),
                   "rank": (Integer(1, Bound(lambda shape: shape[0], "the number of rows")), "is a rank")}

    def compress(self, w, mu, previous=None):
        flat = w.reshape(-1)
        keep = torch.topk(flat.abs(), int(self.count)).indices
        return lc.State({"values": flat[keep] * self.scale, "indices": torch.sort(keep).values}, {}, 0)


SHAPE = torch.Size([10, 3])


@pytest.mark.parametrize("fields,message", [
    (dict(count=31), "KeepLargest(count=31) on a tensor of shape (10, 3): count must be an integer between 0 and 30, "
                     "the number of weights; count is the number of weights to keep"),
    (dict(count=-1), "count must be an integer between 0 and 30"),
    (dict(count=2.0), "KeepLargest(count=2.0) on a tensor of shape (10, 3): count must be an integer"),
    (dict(count=True), "KeepLargest(count=True) on"),
    (dict(count="3"), "KeepLargest(count='3') on"),
    (dict(count=3, scale=0), "KeepLargest(scale=0): scale must be a finite number > 0; scale multiplies the weights"),
    (dict(count=3, scale=math.inf), "KeepLargest(scale=inf): scale must be a finite number > 0"),
    (dict(count=3, scale=math.nan), "KeepLargest(scale=nan): scale must be a finite number > 0"),
    (dict(count=3, scale=False), "KeepLargest(scale=False): scale must be a finite number > 0"),
    (dict(count=3, scale="1"), "KeepLargest(scale='1'): scale must be a finite number > 0"),
    (dict(count=3, half=1), "KeepLargest(half=1): half must be a number ≥ 0 and < 1; half is a fraction"),
    (dict(count=3, half=math.nan), "KeepLargest(half=nan): half must be a number ≥ 0 and < 1"),
    (dict(count=3, exact=1), "KeepLargest(exact=1): exact must be True or False; exact asks for an exact answer"),
    (dict(count=3, mode="max"), "KeepLargest(mode='max'): mode must be one of ('abs', 'square'); mode says how"),
    (dict(count=3, budget=2.0), "KeepLargest(budget=2.0): budget must be a Budget, or None; budget is shared"),
    (dict(count=3, rank=11), "KeepLargest(rank=11) on a tensor of shape (10, 3): rank must be an integer between "
                             "1 and 10, the number of rows; rank is a rank"),
])
def test_each_kind_of_constraint_says_field_value_range_and_meaning(fields, message):
    with pytest.raises(lc.CompressionError, match=re.escape(message)):
        KeepLargest(**fields).check(SHAPE)


@pytest.mark.parametrize("fields", [dict(count=0), dict(count=30), dict(count=np.int64(5)), dict(count=np.uint8(5)),
                                    dict(count=3, scale=np.float32(0.5)), dict(count=3, scale=Fraction(1, 3)),
                                    dict(count=3, half=0), dict(count=3, half=0.999),
                                    dict(count=3, exact=True), dict(count=3, mode="square"),
                                    dict(count=3, budget=Budget()), dict(count=3, rank=10)])
def test_allowed_values_pass(fields):
    KeepLargest(**fields).check(SHAPE)


def test_a_third_party_compression_runs_under_the_algorithm_with_its_check():
    net = torch.nn.Sequential(torch.nn.Linear(3, 10))
    with pytest.raises(lc.CompressionError, match=r"task '0.weight'.*count must be an integer between 0 and 30"):
        lc.Algorithm(net, {lc.Param("0.weight"): (lc.AsIs, KeepLargest(count=40))}, [1.0], lambda *a: None)


def test_options_compare_type_and_value():
    c = Options((1, "a"))
    assert c.allows(1, None) and c.allows("a", None)
    assert not c.allows(True, None) and not c.allows(1.0, None) and not c.allows("b", None)


def test_integer_and_real_describe_their_ranges():
    assert Integer(1, 16).describe(None) == "an integer from 1 to 16"
    assert Integer(1).describe(None) == "an integer ≥ 1"
    assert Integer(high=5).describe(None) == "an integer ≤ 5"
    assert Integer().describe(None) == "an integer"
    assert Integer(0, WEIGHTS).describe((4, 5)) == "an integer between 0 and 20, the number of weights"
    assert Real(0).describe(None) == "a finite number ≥ 0"
    assert Real(0, 1, closed="right").describe(None) == "a finite number > 0 and ≤ 1"
    assert Real(high=2, closed="neither", finite=False).describe(None) == "a number < 2"
    assert not Real().allows(math.inf, None) and Real(finite=False).allows(math.inf, None)
    assert not Real(finite=False).allows(math.nan, None)


COMPRESSIONS = [getattr(C, n) for n in C.__all__ if isinstance(getattr(C, n), type)
                and issubclass(getattr(C, n), lc.Compression) and dataclasses.is_dataclass(getattr(C, n))]


@pytest.mark.parametrize("cls", COMPRESSIONS + [lc.RankBudget], ids=lambda c: c.__name__)
def test_every_lc_compression_declares_every_hyperparameter(cls):
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    assert list(cls.constraints) == fields
    assert all(isinstance(meaning, str) and meaning for _, meaning in cls.constraints.values())


def test_every_lc_compression_is_listed():
    assert {c.__name__ for c in COMPRESSIONS} == {
        "ConstraintL0Pruning", "ConstraintL1Pruning", "PenaltyL0Pruning", "PenaltyL1Pruning", "AdaptiveQuantization",
        "BinaryQuantization", "ScaledBinaryQuantization", "ScaledTernaryQuantization", "AffineQuantization",
        "PrunedQuantization", "LowRank", "RankSelection", "ChannelPruning", "ChannelPenaltyL0", "ChannelPenaltyL21",
        "NMPruning", "WeightedAdaptiveQuantization", "WeightedL0Pruning", "WeightedNMPruning", "WhitenedLowRank"}


@pytest.mark.parametrize("make,shape", [
    (lambda i: lc.ConstraintL0Pruning(kappa=i(10)), (40,)),
    (lambda i: lc.PrunedQuantization(kappa=i(10), k=i(3)), (40,)),
    (lambda i: lc.AdaptiveQuantization(k=i(3)), (40,)),
    (lambda i: lc.AdaptiveQuantization(k=i(3), per_channel=True), (4, 10)),
    (lambda i: lc.AffineQuantization(bits=i(4), symmetric=False), (40,)),
    (lambda i: lc.LowRank(target_rank=i(2)), (8, 5)),
])
def test_numpy_integers_are_integers(make, shape):
    """kappa=np.int64(10) is an integer: accepted, and the C step gives the state of kappa=10, with plain meta."""
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours, plain = make(np.int64), make(int)
    ours.check(torch.Size(shape))
    s, t = ours.compress(w, 1.0), plain.compress(w, 1.0)
    assert torch.equal(ours.decompress(s), plain.decompress(t)) and s.bits == t.bits
    assert json.dumps(s.meta) == json.dumps(t.meta)


def test_numpy_and_fraction_reals_are_reals():
    w = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    for alpha in (np.float32(0.05), Fraction(1, 20)):
        c = lc.RankSelection(alpha=alpha)
        c.check(w.shape)
        assert torch.equal(c.decompress(c.compress(w, 1.0)), lc.RankSelection(alpha=0.05).decompress(
            lc.RankSelection(alpha=0.05).compress(w, 1.0)))
        for p in (lc.PenaltyL0Pruning(alpha=alpha), lc.PenaltyL1Pruning(alpha=alpha)):
            p.check(w.shape)
            assert p.decompress(p.compress(w, 1.0)).dtype == w.dtype
