"""The registry of the baselines' families (see :mod:`experiments.baselines`), merged into
:data:`experiments.schemes.FAMILIES`."""
from __future__ import annotations

from functools import partial

from ..schemes import FAMILIES as _LC
from ..schemes import Family, kappa_of
import lc
from lc import AsIs, AsVector

from .common import FloatCast
from .posttraining import direct, minmax
from .qat import qat
from .retrain import factored, finetune, gmp, imp, masks, tied
from .small import small

__all__ = ["FAMILIES", "KD_WEIGHT", "KD_TEMPERATURE"]

KD_WEIGHT, KD_TEMPERATURE = 0.5, 2.0
"""small-kd's distillation: loss = (1 − β)·CE + β·T²·KL with β = 0.5, T = 2, chosen on a validation split of
digits' training set (``python -m experiments.baselines.choose_kd``; β = 0.9, T = 4 diverges under the L step's
SGD at lr 0.1), never on a test set."""


def _like(lc_name: str, name: str, method: str, run, description: str, **changes) -> Family:
    """A baseline whose structure is LC family ``lc_name``'s (its parameter, values, tasks, colour)."""
    base = _LC[lc_name]
    fields = dict(parameter=base.parameter, values=base.values, make=base.make, joint=base.joint,
                  names=base.names, build=base.build, integer=base.integer, at_least=base.at_least)
    return Family(name, **{**fields, **changes}, method=method, kind=base.type, run=run, description=description)


def _every_parameter(model) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def _grid(bits, shapes, per_channel=False, symmetric=True):
    return (AsIs if per_channel else AsVector), lc.AffineQuantization(bits=bits, symmetric=symmetric,
                                                                      per_channel=per_channel)


_PTQ, _FT = "post-training", "fine-tune"

FAMILIES: dict[str, Family] = {f.name: f for f in [
    *(Family(f"ptq-{dtype}", "bits", (16,), lambda b, shapes, d=dtype: (AsVector, FloatCast(d)), integer=True,
             names=_every_parameter, method=_PTQ, kind="float16", run=direct,
             description=f"every parameter rounded to {dtype}") for dtype in ("float16", "bfloat16")),
    Family("ptq-int", "bits", (8, 4), _grid, integer=True, method=_PTQ, kind="affine",
           run=partial(minmax, per_channel=False),
           description="each weight tensor on a symmetric integer grid, min–max scale"),
    Family("ptq-int-channel", "bits", (8, 4), partial(_grid, per_channel=True), integer=True, method=_PTQ,
           kind="affine", run=partial(minmax, per_channel=True),
           description="each output channel on a symmetric integer grid, min–max scale"),
    Family("ptq-int-mse", "bits", (8, 4), _grid, integer=True, method=_PTQ, kind="affine", run=direct,
           description="each weight tensor on a symmetric integer grid, scale of least squared error"),
    Family("ptq-int-mse-channel", "bits", (8, 4), partial(_grid, per_channel=True), integer=True, method=_PTQ,
           kind="affine", run=direct,
           description="each output channel on a symmetric integer grid, scale of least squared error"),
    _like("quantization", "ptq-kmeans", _PTQ, direct, "k-means per layer (weight clustering), no retraining"),
    Family("ptq-prune-layer", "kept fraction", (0.01, 0.02, 0.05, 0.1),
           lambda f, shapes: (AsVector, lc.ConstraintL0Pruning(kappa=kappa_of(f, shapes))), method=_PTQ,
           kind="pruning", run=direct, description="magnitude pruning, the same fraction of each layer kept"),
    _like("pruning", "ptq-prune-global", _PTQ, direct, "magnitude pruning, one threshold over all weights"),
    _like("affine", "ptq-affine", _PTQ, direct, "each tensor on the affine grid of least squared error (lc's "
          "affine family's structure), no retraining"),
    _like("ternary", "ptq-ternary", _PTQ, direct, "each tensor in {−a, 0, a} of least squared error, no retraining"),
    _like("quant2+sparse", "ptq-quant2+sparse", _PTQ, direct,
          "k-means with k = 2 per tensor plus the largest residuals kept (lc's quant2+sparse structure), solved "
          "once by lc's C step on the reference's weights, no retraining"),
    _like("rank", "ptq-svd", _PTQ, direct, "truncated SVD, the ranks of least total error that meet the ratio"),
    _like("pruning", "ft-prune", _FT, partial(finetune, structure=masks),
          "magnitude pruning over all weights, then fine-tuning with the mask fixed"),
    _like("quantization", "ft-kmeans", _FT, partial(finetune, structure=tied),
          "k-means per layer, then fine-tuning the centroids with the assignments fixed (gradients summed per "
          "cluster)"),
    _like("quantization", "ft-kmeans-mean", _FT, partial(finetune, structure=partial(tied, mean=True)),
          "k-means per layer, then fine-tuning the centroids with the assignments fixed (gradients averaged per "
          "cluster)"),
    _like("rank", "ft-svd", _FT, partial(finetune, structure=factored),
          "truncated SVD (ranks meeting the ratio), then fine-tuning the factors"),
    _like("pruning", "gmp", "gmp", gmp, "gradual magnitude pruning (cubic schedule), then fine-tuning"),
    _like("pruning", "imp", "imp-rewind", imp,
          "iterative magnitude pruning, 4 rounds, rewinding to the reference's training at epoch 1"),
    Family("qat", "bits", (8, 4, 2), partial(_grid, symmetric=False), integer=True, method="qat-lsq",
           kind="affine", run=qat, description="quantization-aware training, per tensor, learned scale and zero "
                                               "point (LSQ)"),
    Family("qat-channel", "bits", (8, 4, 2), partial(_grid, per_channel=True, symmetric=False), integer=True,
           method="qat-lsq", kind="affine", run=qat,
           description="quantization-aware training, per output channel, learned scale and zero point (LSQ)"),
    Family("small", "target ratio", (4, 8, 16, 32), build=lambda model, value: {}, method="small", kind="small",
           run=small, at_least=1, description="a narrower network of the same family trained from scratch"),
    Family("small-kd", "target ratio", (4, 8, 16, 32), build=lambda model, value: {}, method="small-kd",
           kind="small", run=partial(small, distill=KD_WEIGHT, temperature=KD_TEMPERATURE), at_least=1,
           description="a narrower network trained from scratch with distillation from the reference"),
]}
