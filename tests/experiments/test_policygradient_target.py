"""The policy-gradient study's benchmark verdict (experiments.policygradient.study.target): strict in bits."""
from experiments.policygradient.study import target


def _g(method, fam, kind, value, bits, ret):
    return {"method": method, "family": fam, "kind": kind, "value": value, "bits_per_weight": bits,
            "return_mean": ret, "seeds": 3}


def test_the_verdict_counts_scales_and_needs_naive_to_fall_short():
    groups = [_g("lc-offline", "affine", "affine", 4, 4.02, 5000.0), _g("naive", "ptq-affine", "affine", 4, 4.02, 4500.0)]
    v = target(groups, 5000.0)
    assert v["met"] == {"lc-offline": False}          # 4.02 bits (the scale counted) is not ≤ 4
    assert v["points"] == []
    groups += [_g("lc-offline", "quantization", "quantization", 8, 3.14, 4760.0),
               _g("naive", "ptq-kmeans", "quantization", 8, 3.14, 4700.0)]
    v = target(groups, 5000.0)
    assert v["keep"] == 4750.0
    assert v["met"] == {"lc-offline": True} and [w["value"] for w in v["wins"]] == [8]
    groups[-1] = _g("naive", "ptq-kmeans", "quantization", 8, 3.14, 4800.0)   # naive keeps 95% too: no win
    assert target(groups, 5000.0)["met"] == {"lc-offline": False}
    groups[-2] = _g("lc-offline", "quantization", "quantization", 8, 3.14, 4740.0)
    groups[-1] = _g("naive", "ptq-kmeans", "quantization", 8, 3.14, 4000.0)   # LC under 95%: no win
    assert target(groups, 5000.0)["met"] == {"lc-offline": False}
