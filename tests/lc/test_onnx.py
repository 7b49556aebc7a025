"""lc.export_onnx: every compression and mix gives an ONNX file that ONNX Runtime runs to the compressed model's
outputs, each compression in its ONNX form (QDQ for affine grids, packed codes + Gather for codebooks, two
layers for low rank, sparse initializers for pruned weights)."""
import copy

import pytest
import torch
from torch import nn

import lc
from tests.lc.compression.cases import CASES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 12)).eval()


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3),
                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 5)).eval()


@pytest.mark.parametrize("mix", [False, True], ids=["alone", "additive"])
@pytest.mark.parametrize("case", [c for c in CASES if len(c.shape) == 2], ids=lambda c: c.id)
def test_every_compression_of_a_matrix_runs_in_onnx_runtime(tmp_path, case, mix):
    if mix and case.compression.coupling is not None:
        pytest.skip("a shared budget cannot be part of a mix")
    model = nn.Sequential(nn.Linear(case.shape[1], case.shape[0]), nn.ReLU(), nn.Linear(case.shape[0], 3)).eval()
    value = [(lc.AsIs, case.compression), (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))] if mix else \
        (lc.AsIs, case.compression)
    c = lc.Compressed.direct(model, {lc.Param("0.weight"): value}, mu=case.mu)
    x = torch.randn(4, case.shape[1])
    result = lc.export_onnx(model, c, tmp_path / "m.onnx", x)          # checks against Δ(Θ) itself
    assert result.file_bytes == (tmp_path / "m.onnx").stat().st_size and result.max_deviation < 1e-4
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    big = torch.randn(9, case.shape[1])                                   # another batch size
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(session.run(None, {"input": big.numpy()})[0]),
                                   c.apply(copy.deepcopy(model))(big), rtol=1e-4, atol=1e-5)


def test_each_compression_in_its_onnx_form_and_the_file_sizes(tmp_path):
    model = _cnn()
    x = torch.randn(2, 3, 8, 8)
    sizes = {"dense": lc.export_onnx(model, lc.Compressed.none(), tmp_path / "dense.onnx", x).file_bytes}
    forms = {
        "affine": ({lc.Param("3.weight"): (lc.AsIs, lc.AffineQuantization(8, per_channel=True)),
                    lc.Param("6.weight"): (lc.AsIs, lc.AffineQuantization(4, symmetric=False))},
                   {"DequantizeLinear": 2}),
        "codebook": ({lc.Param("3.weight"): (lc.AsIs, lc.AdaptiveQuantization(4, per_channel=True)),
                      lc.Param("6.weight"): (lc.AsVector, lc.AdaptiveQuantization(16))}, {"Gather": 2, "BitShift": 2}),
        "lowrank": ({lc.Param("6.weight"): (lc.AsIs, lc.LowRank(target_rank=2))}, {"MatMul": 1, "Gemm": 1}),
        "pruned": ({lc.Param(["3.weight", "6.weight"]): (lc.AsVector, lc.ConstraintL0Pruning(kappa=60))}, {}),
    }
    for name, (tasks, ops) in forms.items():
        r = lc.export_onnx(model, lc.Compressed.direct(model, tasks), tmp_path / f"{name}.onnx", x)
        sizes[name] = r.file_bytes
        for op, n in ops.items():
            assert r.ops.get(op, 0) >= n, (name, r.ops)
    proto = onnx.load(str(tmp_path / "pruned.onnx"))
    assert len(proto.graph.sparse_initializer) == 2
    stored = {name: _initializer_bytes(onnx.load(str(tmp_path / f"{name}.onnx"))) for name in sizes}
    compressed = 6 * 8 * 9 + 5 * 216                                      # the weights of layers 3 and 6
    assert stored["dense"] - stored["affine"] == 3 * compressed - (4 * 6 + 6) - (4 + 1)   # int8; scales, zero points
    assert stored["dense"] - stored["codebook"] >= 4 * compressed - compressed // 2 - 4 * 4 * 6 - 4 * 16 - 16
    assert stored["pruned"] <= stored["dense"] - 4 * compressed + 12 * 60                 # 60 values + int64 indices
    assert stored["lowrank"] == stored["dense"] - 4 * (5 * 216 - 2 * (5 + 216))        # rank 2: U and V


def _initializer_bytes(proto) -> int:
    """Bytes of the stored tensors (dense and sparse initializers) of an ONNX model."""
    from onnx import numpy_helper
    dense = sum(numpy_helper.to_array(t).nbytes for t in proto.graph.initializer)
    return dense + sum(numpy_helper.to_array(t.values).nbytes + numpy_helper.to_array(t.indices).nbytes
                       for t in proto.graph.sparse_initializer)


def test_a_file_is_never_overwritten_without_asking(tmp_path):
    model = _mlp()
    x = torch.randn(2, 40)
    (tmp_path / "m.onnx").write_bytes(b"mine")
    with pytest.raises(lc.CompressionError, match="exists; pass overwrite=True"):
        lc.export_onnx(model, lc.Compressed.none(), tmp_path / "m.onnx", x)
    assert (tmp_path / "m.onnx").read_bytes() == b"mine"
    lc.export_onnx(model, lc.Compressed.none(), tmp_path / "m.onnx", x, overwrite=True)
    assert (tmp_path / "m.onnx").stat().st_size > 1000
