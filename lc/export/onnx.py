"""ONNX files of compressed models, each compression in its ONNX form (``lc.export_onnx``):

- low rank: two MatMul/Gemm or Conv (the export handler's two layers);
- affine grids (``lc.AffineQuantization``, ≤ 8 bits, per tensor or per output channel, on a Linear or Conv2d
  weight): the weight as an int8 initializer through ``DequantizeLinear`` (QDQ), 1 byte a weight;
- codebooks (``lc.AdaptiveQuantization``, ≤ 16 entries): the codes packed in a ``uint8`` initializer (8/b a byte),
  unpacked by ``BitShift`` and ``BitwiseAnd``, looked up by ``Gather``;
- pruned weights: dense in the graph, stored as ONNX sparse initializers (the nonzero values and their int64
  positions; ONNX Runtime makes them dense when it loads the file): the file shrinks where a weight is at least half
  zeros, the run time does not change;
- everything else (other compressions, additive mixes, tasks over several tensors): the dense Δ(Θ) weight.

The graph comes from torch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``; the quantized forms
need its custom ``symbolic`` functions). ``onnx`` and ``onnxruntime`` are the optional extra ``lc[deploy]``.
"""
from __future__ import annotations

import copy
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._errors import CompressionError
from .._io import write_bytes_atomic
from ..compressed import Compressed

__all__ = ["export_onnx", "OnnxExport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the file, its size, its operators, and (if checked) the largest deviation of
    ONNX Runtime's outputs on the example from the model holding Δ(Θ)."""

    path: Path
    file_bytes: int
    ops: dict
    max_deviation: float | None


def _imports():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise CompressionError(f"ONNX export needs the packages onnx and onnxruntime ({e}): pip install "
                               "'lc[deploy]' (or pip install onnx onnxruntime)") from None
    return onnx, onnxruntime


def _sparse_initializers(model_proto, onnx, min_zeros: float = 0.5) -> int:
    """Float initializers of 2 or more dimensions that are at least ``min_zeros`` zeros become sparse initializers;
    returns how many."""
    from onnx import numpy_helper
    keep, moved = [], 0
    for init in model_proto.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind != "f" or a.ndim < 2 or np.count_nonzero(a) > (1 - min_zeros) * a.size:
            keep.append(init)
            continue
        flat = a.reshape(-1)
        idx = np.flatnonzero(flat).astype(np.int64)
        values = numpy_helper.from_array(flat[idx], init.name)
        indices = numpy_helper.from_array(idx, init.name + "_indices")
        model_proto.graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, list(a.shape)))
        moved += 1
    del model_proto.graph.initializer[:]
    model_proto.graph.initializer.extend(keep)
    return moved


def export_onnx(model: nn.Module, compressed, path, example: torch.Tensor, *, overwrite: bool = False,
                opset: int = 18, check: bool = True, rtol: float = 1e-4, atol: float = 1e-5,
                channels: bool = False) -> OnnxExport:
    """Write the compressed model as an ONNX file at ``path`` (each compression in its ONNX form, see the module
    docstring), for inputs like ``example`` (any batch size: the batch dimension is dynamic). Refuses to replace an
    existing file unless ``overwrite=True``; the file appears atomically. ``check``: run the file in ONNX Runtime on
    ``example`` and compare with the model holding Δ(Θ) (``rtol``/``atol``: a :class:`lc.CompressionError` beyond).
    ``channels=True``: channels zero in Δ(Θ) are removed first (as :func:`lc.export`'s option)."""
    onnx, ort = _imports()
    from . import Context, apply_deltas, fold_batch_norms, remove_dead_channels, replace_layers
    path = Path(path)
    if path.exists() and not overwrite:
        raise CompressionError(f"{path} exists; pass overwrite=True to replace it, or choose another path")
    if not isinstance(example, torch.Tensor) or example.dim() < 1:
        raise CompressionError("export_onnx(example=…): give an input batch tensor (batch first)")
    compressed = Compressed.of(compressed)
    ctx = Context(compressed, sparse="never", onnx=True, channels=channels, example=example)
    module = copy.deepcopy(model)
    for pass_ in (apply_deltas, replace_layers, remove_dead_channels, fold_batch_norms):   # quantized: ONNX forms
        module = pass_(module, ctx)
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                       # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    proto = onnx.load_from_string(buffer.getvalue())
    _sparse_initializers(proto, onnx)
    data = proto.SerializeToString()
    deviation = None
    if check:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": example.detach().cpu().numpy()})[0]
        with torch.no_grad():
            want = compressed.apply(copy.deepcopy(model)).eval()(example).detach().cpu().numpy()
        deviation = float(np.abs(got - want).max()) if got.size else 0.0
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            raise CompressionError(f"ONNX Runtime's outputs differ from the compressed model's by up to {deviation:g} "
                                   f"(rtol {rtol:g}, atol {atol:g}); the file was not written")
    write_bytes_atomic(path, data, what="the ONNX file")
    ops = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    log.info("ONNX file %s: %d bytes, ops %s", path, len(data), ops)
    return OnnxExport(path, len(data), ops, deviation)
