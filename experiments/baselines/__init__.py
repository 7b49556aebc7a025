"""The methods people already use, as families of the tradeoff job: the same task, reference, rows, artifacts and
plot as LC's runs, and — for the methods that train — the same training budget: the task's own L step (its
optimizer, learning-rate schedule, batches and epochs per step), called as many times as the LC run calls it
(the sweep's ``steps``, times its ``budget`` fraction), with no LC penalty.

==================  ================  ===========================================================================
family              method            what it is (details and citations in each function's docstring)
==================  ================  ===========================================================================
ptq-float16,        post-training     every parameter rounded to float16 / bfloat16 (:class:`common.FloatCast`)
ptq-bfloat16
ptq-int,            post-training     weights on a symmetric integer grid, min–max scale, per tensor / per output
ptq-int-channel                       channel (:func:`posttraining.minmax`)
ptq-int-mse,        post-training     the same grids with the scale of least squared error (lc's direct
ptq-int-mse-channel                   ``AffineQuantization``)
ptq-kmeans          post-training     k-means per layer (weight clustering; lc's direct ``AdaptiveQuantization``)
ptq-prune-layer,    post-training     magnitude pruning per layer / over all weights (lc's direct
ptq-prune-global                      ``ConstraintL0Pruning``)
ptq-affine,         post-training     lc's direct compression in the structure of the LC family of the same
ptq-ternary,                          name (affine grid, {−a, 0, a}, k = 2 + sparse residuals): the naive point
ptq-quant2+sparse                     of each LC curve
ptq-svd             post-training     truncated SVD, ranks meeting a storage ratio (lc's direct ``RankBudget``)
ft-prune            fine-tune         magnitude pruning, then fine-tuning with the mask fixed
ft-kmeans           fine-tune         k-means per layer, then fine-tuning the centroids, assignments fixed
ft-svd              fine-tune         truncated SVD, then fine-tuning the factors
gmp                 gmp               gradual magnitude pruning, Zhu & Gupta's cubic schedule
imp                 imp-rewind        iterative magnitude pruning, rewinding to an early iterate (lottery tickets)
qat, qat-channel    qat-lsq           quantization-aware training, learned scale and zero point (LSQ), per tensor
                                      / per channel
small, small-kd     small, small-kd   a narrower network of the same family from scratch, without / with
                                      distillation from the reference
==================  ================  ===========================================================================

Each family's value means what it means for the LC family of its compression type (``kind``: its colour on the
plot): a kept fraction, a codebook size k, a target storage ratio, bits; a small network's is the target ratio.
A baseline's compressed model is saved with ``lc.save`` as the lc state its structure is (pruned, clustered, on an
integer grid, low rank, 16-bit floats), so its realised size compares with LC's; a small network is saved dense
(``lc.Compressed.none()``): its size is its float32 parameters. ``lc.load`` reads the 16-bit float artifacts once
this package is imported (their C step, :class:`common.FloatCast`, is defined here).
"""
from __future__ import annotations

from .. import schemes  # noqa: F401  (first: experiments.schemes merges .registry's families at its end)
from .common import Budget, FloatCast, Job, Outcome
from .registry import FAMILIES, KD_TEMPERATURE, KD_WEIGHT

__all__ = ["FAMILIES", "Job", "Outcome", "Budget", "FloatCast", "KD_WEIGHT", "KD_TEMPERATURE"]
