"""Post-training compression: the reference's weights compressed once, no data, no training.

Where the method is lc's direct compression Θ = Π(w̄) (the C step on the reference's weights: k-means per layer,
magnitude pruning, truncated SVD, the MSE-optimal integer grid, 16-bit floats), it is run as that
(:func:`direct`); the min–max integer grid, which is not a C step (it does not minimise ‖w − Δ‖²), is computed
here and then stored as the lc state it lies on (:func:`minmax`)."""
from __future__ import annotations

import time

import torch

from .common import Job, Outcome, project

__all__ = ["direct", "minmax", "minmax_grid"]


def direct(job: Job, value) -> Outcome:
    """Θ = Π(w̄): the family's compression of the reference's weights, solved once (``lc.Compressed.direct``).
    What it optimises is the family's C step, min_Θ ‖w̄ − Δ(Θ)‖² under the family's constraint: k-means per layer
    (weight clustering, TF-MOT's ``cluster_weights`` without its fine-tuning; Han et al., "Deep compression",
    ICLR 2016), keeping the largest |w| per layer or over all layers (magnitude pruning; Han et al., NeurIPS 2015),
    the truncated SVD with the ranks that meet a storage budget at the least total squared error (Denton et al.,
    NeurIPS 2014), the integer grid of least squared error (an MSE-optimal scale, per tensor or per channel), or
    rounding to float16/bfloat16 (TensorFlow Lite's float16 post-training quantization)."""
    model = job.copy()
    compressed, change, c_time = project(model, job.family.tasks(model, value))
    return Outcome(model, compressed, c_time=c_time)


def minmax_grid(w: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """w on the symmetric integer grid S·{−(2^(b−1) − 1), …, 2^(b−1) − 1} with S = max|w| / (2^(b−1) − 1), per
    tensor or per output channel (the first axis): the min–max ("absmax") calibration of TensorFlow Lite's int8
    weights (Jacob et al., CVPR 2018; Krishnamoorthi, arXiv:1806.08342, 2018). Nothing is clipped; the scale is
    not chosen to minimise the error."""
    top = 2 ** (bits - 1) - 1
    rows = w.reshape(w.shape[0], -1) if per_channel and w.dim() >= 2 else w.reshape(1, -1)
    s = rows.abs().amax(1, keepdim=True) / top
    s = torch.where(s > 0, s, torch.ones_like(s)).to(torch.float32).to(w.dtype)       # stored as float32
    return (torch.clamp(torch.round(rows / s), -top, top) * s).reshape(w.shape)


def minmax(job: Job, bits: int, per_channel: bool = False) -> Outcome:
    """Post-training integer quantization of every weight with the min–max scale (:func:`minmax_grid`), stored as
    lc's affine grid (``lc.AffineQuantization``, symmetric; the grid is one of its own, so the projection keeps it:
    the row's ``chosen`` records the largest change it made)."""
    model = job.copy()
    t = time.perf_counter()
    tasks = job.family.tasks(model, bits)
    with torch.no_grad():
        for p in tasks:
            for name in p.targets:
                w = model.get_parameter(name)
                w.copy_(minmax_grid(w, bits, per_channel))
    compressed, change, _ = project(model, tasks)
    return Outcome(model, compressed, c_time=time.perf_counter() - t, chosen={"projection_change": change})
