"""Affine (uniform) quantization: integer codes on a grid S·(q − Z), per tensor or per channel (Jacob et al.,
"Quantization and training of neural networks for efficient integer-arithmetic-only inference", CVPR 2018), the
form integer hardware executes.

A constraint form, as every quantization (:mod:`lc.compression.quantization`): the C step is the projection
argmin_Θ ‖w − Δ(Θ)‖², whatever μ. Codes are stored packed (``"uint:bits"``), scales as float32 (``"f32"``): the
scales a state holds are rounded to float32 already, so that Δ(Θ) is exactly what the artifact stores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._errors import CompressionError
from ._base import Compression, State
from ._constraints import Boolean, Integer
from ._primitives import F32_BITS, check_finite, code_dtype, round_f32

__all__ = ["AffineQuantization", "grid"]


def _rows(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """w as (rows, columns) in float64: one row per channel (the first axis), or a single row."""
    rows = w.shape[0] if per_channel and w.dim() >= 2 else 1
    return w.reshape(rows, -1).to(torch.float64)


def _affine_error(x: torch.Tensor, s: torch.Tensor, z: torch.Tensor, q: int) -> torch.Tensor:
    """Per row ‖x − s(q − z)‖² with the best codes q = clamp(round(x/s + z), 0, Q): the codes q − z are
    clamp(round(x/s), −z, Q − z) for an integer z."""
    m = torch.clamp(torch.round(x / s[:, None]), -z[:, None], q - z[:, None])
    return ((x - s[:, None] * m) ** 2).sum(1)


EXACT_BUDGET = 1 << 21   # breakpoints allowed for the exact minimisation over the scale (entries of float64 arrays)
SEARCH_SIZE = 1 << 15    # larger inputs are searched on order statistics of each row, then refined on the full rows


def _best_scale(x: torch.Tensor, z: torch.Tensor, q: int) -> torch.Tensor:
    """Per row, the exact argmin over S > 0 of min_codes ‖x − S(q − z)‖² for the integer zero point z.

    As S decreases from ∞ the code of x_i (for x_i > 0) steps from j to j + 1 at S = x_i/(j + ½), up to Q − z
    (down to −z for x_i < 0). Between two breakpoints the codes m are fixed and the error is ‖x‖² − 2S⟨x, m⟩ +
    S²‖m‖², minimised at ⟨x, m⟩/‖m‖² clipped to the piece. Sorting the breakpoints and accumulating ⟨x, m⟩ and
    ‖m‖² gives every piece: O(P log P) for P = Σ_i (levels on x_i's side) breakpoints."""
    rows = x.shape[0]
    a = x.abs()
    levels = torch.where(x > 0, (q - z)[:, None], torch.where(x < 0, z[:, None], torch.zeros_like(x)))
    top = max(int(levels.max()), 1)
    j = torch.arange(top, device=x.device, dtype=x.dtype)
    live = j < levels[..., None]                                             # (rows, C, top)
    brk = torch.where(live, a[..., None] / (j + 0.5), torch.zeros_like(live, dtype=x.dtype)).reshape(rows, -1)
    d_b = torch.where(live, a[..., None], torch.zeros_like(brk.view(live.shape))).reshape(rows, -1)
    d_c = torch.where(live, 2 * j + 1, torch.zeros_like(d_b.view(live.shape))).reshape(rows, -1)
    brk, order = torch.sort(brk, dim=1, descending=True)
    b = torch.cumsum(torch.gather(d_b, 1, order), 1)                          # ⟨x, m⟩ below each breakpoint
    c = torch.cumsum(torch.gather(d_c, 1, order), 1)                          # ‖m‖²
    upper = brk
    lower = torch.cat([brk[:, 1:], torch.zeros_like(brk[:, :1])], 1)
    s = torch.minimum(torch.maximum(b / c.clamp(min=1e-300), lower * (1 + 1e-12)), upper * (1 - 1e-12))
    err = torch.where((c > 0) & (upper > 0) & (s > 0), s * s * c - 2 * s * b, torch.full_like(s, math.inf))
    best = torch.argmin(err, 1, keepdim=True)
    out = torch.gather(s, 1, best)[:, 0]
    return torch.where(torch.isfinite(torch.gather(err, 1, best)[:, 0]) & (out > 0), out, torch.ones_like(out))


@dataclass(frozen=True)
class AffineQuantization(Compression):
    """Solves min_{S, Z, q} ‖w − S(q − Z)‖² over scales S > 0, zero points Z and integer codes q ∈ [0, 2^bits − 1]
    (Jacob et al., CVPR 2018), per tensor or per channel, by a search (not proved optimal).

    ``symmetric=True``: Z = 2^(bits−1) is fixed (not stored): levels S·{−2^(bits−1), …, 2^(bits−1) − 1}, what
    signed integer hardware executes. ``symmetric=False``: Z is an integer in [0, 2^bits − 1] (so that 0 is exactly
    representable), stored at ``bits`` bits. ``per_channel=True``: one (S, Z) per row of the matrix the view
    gives (per output channel for ``AsIs``; a vector is one row).

    For codes given, S (and Z) have closed forms, and for S, Z given the best codes are clamp(round(w/S + Z)).
    Per row, the C step evaluates the min–max grid (the smallest S that clips nothing), 48 scales S₀·t for t from
    0.02 to 1 (clipping the tails) and the finest lattice step of the row (so that a row already on a grid is kept
    exactly), each with three zero points when asymmetric (grid started at the row's minimum, ended at its
    maximum, or centred); alternates least-squares (S, Z) and code updates from the best; minimises over S
    exactly for the best Z (:func:`_best_scale`, a sweep over the breakpoints of the piecewise-quadratic error)
    when the breakpoints are few (symmetric: N·2^(bits−1) ≤ 2²¹; asymmetric: every Z when 2^bits·N·2^bits ≤ 2²¹,
    else Z ± 1); then zooms in on S around the best. The best of everything is kept, so it is never worse than
    min–max, and **exact** (global over S, and over Z when every Z is swept) within those sizes. Beyond them it is
    a search: measured against the exact sweep on Gaussian, Laplacian and mixture weights (200 to 20,000), equal
    at 3–4 bits and at most 0.6% above at 8 bits (``tests/lc/compression/test_quantization.py``). Inputs of more
    than 2¹⁵ weights are searched on evenly spaced order statistics of each row (max(256, 2¹⁵/rows) of them, the
    extremes included), then the scale is scanned ±5% and alternated on the full rows (measured on 200,000
    weights: at most 0.55% above the full search at 8 bits, below it when asymmetric). Cost about 200 passes
    over at most 2¹⁵ values, plus about 30 O(N) passes, plus O(P log P) for a sweep over P breakpoints. Storage
    N·bits + 32 bits per scale (+ ``bits`` per zero point when asymmetric).
    """

    bits: int
    symmetric: bool = True
    per_channel: bool = False

    constraints = {"bits": (Integer(1, 16), "is the width of one code: 2^bits levels"),
                   "symmetric": (Boolean(), "fixes the zero point at 2^(bits−1): signed integer levels"),
                   "per_channel": (Boolean(), "gives each row of the view's matrix its own scale and zero point")}

    def check(self, shape):
        super().check(shape)
        if self.symmetric and self.bits == 1:
            raise CompressionError("AffineQuantization(bits=1, symmetric=True) has the levels {−S, 0} only; use "
                                   "ScaledBinaryQuantization() for {−a, +a}, or symmetric=False")

    def _levels(self):
        """(Q, 2^(bits−1)): the largest code, and the fixed zero point of the symmetric grid."""
        bits = int(self.bits)
        return (1 << bits) - 1, 1 << (bits - 1)

    def compress(self, w, mu, previous=None):
        check_finite(w, repr(self))
        x = _rows(w.detach(), self.per_channel)
        sample = max(256, SEARCH_SIZE // x.shape[0])
        s, z = self._search(x) if x.numel() <= SEARCH_SIZE or x.shape[1] <= sample else self._search_large(x, sample)
        s = round_f32(s, torch.float64)                                       # stored as float32
        q, _ = self._levels()
        codes = (torch.clamp(torch.round(x / s[:, None]), -z[:, None], q - z[:, None]) + z[:, None]).reshape(-1)
        bits = int(self.bits)
        tensors = {"codes": codes.to(code_dtype(q + 1)), "scale": s.to(w.dtype)}
        encoding = {"codes": f"uint:{bits}", "scale": "f32"}
        side = F32_BITS * s.numel()
        if not self.symmetric:
            tensors["zero_point"] = z.to(code_dtype(q + 1))
            encoding["zero_point"] = f"uint:{bits}"
            side += bits * z.numel()
        return State(tensors=tensors, meta={"shape": list(w.shape), "bits": bits, "encoding": encoding},
                     bits=w.numel() * bits + side)

    def decompress(self, state):
        s = state.tensors["scale"]
        z = state.tensors["zero_point"].to(s.dtype) if "zero_point" in state.tensors else (
            s.new_full(s.shape, float(1 << (state.meta["bits"] - 1))))              # symmetric: Z = 2^(bits−1)
        codes = state.tensors["codes"].to(s.dtype).reshape(s.numel(), -1)
        return (s[:, None] * (codes - z[:, None])).reshape(state.meta["shape"])

    def _zero_points(self, x, s, lo, hi):
        """Candidate zero points for scales s: the fixed one, or the grid started at lo, ended at hi, centred."""
        q, half = self._levels()
        if self.symmetric:
            return [torch.full_like(s, float(half))]
        return [torch.clamp(torch.round(z), 0, q) for z in (-lo / s, q - hi / s, (q - (lo + hi) / s) / 2)]

    def _search_large(self, x, sample):
        """Large inputs: search on ``sample`` evenly spaced order statistics of each row (its minimum and maximum
        included, so its min–max grid is the row's), then alternate on the full rows; keep the best of that and
        min–max, on the full rows."""
        q, _ = self._levels()
        order = torch.sort(x, 1).values
        pick = torch.round(torch.linspace(0, x.shape[1] - 1, sample, device=x.device)).long()
        s, z = self._search(order[:, pick])
        s0, z0 = self._search(x, minmax_only=True)
        e, e0 = _affine_error(x, s, z, q), _affine_error(x, s0, z0, q)
        best_s, best_z, best = torch.where(e < e0, s, s0), torch.where(e < e0, z, z0), torch.minimum(e, e0)

        def consider(s, z):
            nonlocal best_s, best_z, best
            e = _affine_error(x, s, z, q)
            better = e < best
            best, best_s, best_z = torch.where(better, e, best), torch.where(better, s, best_s), \
                torch.where(better, z, best_z)

        center = best_s
        for f in torch.linspace(0.95, 1.05, 21, dtype=torch.float64).tolist():    # the scale, on the full rows
            consider(center * f, best_z)
        self._alternate(x, consider, lambda: (best_s, best_z), steps=3)
        return best_s, best_z

    def _search(self, x, minmax_only=False):
        q, half = self._levels()
        lo = torch.clamp(x.min(1).values, max=0)
        hi = torch.clamp(x.max(1).values, min=0)
        if self.symmetric:
            s0 = torch.maximum(-lo / half, hi / max(half - 1, 1))
        else:
            s0 = (hi - lo) / q
        s0 = torch.where(s0 > 0, s0, torch.ones_like(s0))                 # an all-zero row: any scale
        best_s, best_z = s0, self._zero_points(x, s0, lo, hi)[0]
        if minmax_only:
            return best_s, best_z
        best = _affine_error(x, best_s, best_z, q)

        def consider(s, z):
            nonlocal best_s, best_z, best
            e = _affine_error(x, s, z, q)
            better = e < best
            best = torch.where(better, e, best)
            best_s = torch.where(better, s, best_s)
            best_z = torch.where(better, z, best_z)

        def around(s):
            for z in self._zero_points(x, s, lo, hi):
                consider(s, z)

        # the finest lattice step of each row (with 0 on the lattice): exact for a row already on a grid
        v = torch.sort(torch.cat([x, x.new_zeros(x.shape[0], 1)], 1), 1).values
        gap = torch.diff(v, dim=1)
        lattice = torch.where(gap > 0, gap, torch.full_like(gap, math.inf)).min(1).values
        for t in torch.logspace(math.log10(0.02), 0, 48, dtype=torch.float64).tolist():
            around(s0 * t)
        for d in (1, 2):
            around(torch.where(torch.isfinite(lattice), lattice / d, s0))
        self._alternate(x, consider, lambda: (best_s, best_z))
        # exact over S for given zero points where the breakpoints are few enough
        half_span = half * x.shape[1] * x.shape[0]
        if self.symmetric and half_span <= EXACT_BUDGET:
            consider(_best_scale(x, best_z, q), best_z)
        elif not self.symmetric and 2 * half_span * (q + 1) <= EXACT_BUDGET:
            for z in range(q + 1):
                zz = torch.full_like(best_z, float(z))
                consider(_best_scale(x, zz, q), zz)
        elif not self.symmetric and 2 * half_span * 3 <= EXACT_BUDGET:
            for dz in (-1, 0, 1):
                zz = torch.clamp(best_z + dz, 0, q)
                consider(_best_scale(x, zz, q), zz)
        step = 10 ** (math.log10(50) / 47)                                # ratio of neighbouring scales above
        for _ in range(3):                                                # zoom in around the best, 3 times
            center = best_s
            for f in torch.linspace(1 / step, step, 41, dtype=torch.float64).tolist():
                around(center * f)
            self._alternate(x, consider, lambda: (best_s, best_z))
            step = step ** (1 / 20)
        return best_s, best_z

    def _alternate(self, x, consider, current, steps=8):
        """Alternate codes given (S, Z) and least-squares (S, Z) given codes, from the current best."""
        q, _ = self._levels()
        for _ in range(steps):
            s, z = current()
            m = torch.clamp(torch.round(x / s[:, None]), -z[:, None], q - z[:, None])
            if not self.symmetric:                                       # w ≈ S·code + β, then Z = −β/S rounded
                c = m + z[:, None]
                cm, xm = c.mean(1, keepdim=True), x.mean(1, keepdim=True)
                var = ((c - cm) ** 2).sum(1)
                slope = ((c - cm) * (x - xm)).sum(1) / var.clamp(min=1e-300)
                beta = xm[:, 0] - slope * cm[:, 0]
                ok = (var > 0) & (slope > 0)
                z = torch.where(ok, torch.clamp(torch.round(-beta / slope.clamp(min=1e-300)), 0, q), z)
                m = c - z[:, None]
            mm = (m * m).sum(1)
            s_new = torch.where(mm > 0, (x * m).sum(1) / mm.clamp(min=1e-300), s)
            consider(torch.where(s_new > 0, s_new, s), z)


def grid(state: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The integer grid of an affine state, as a layer's integer kernel reads it: ``(codes, scale, zero_point)``
    with codes (rows, columns) integers in [0, 2^bits − 1], scale (rows,) and zero point (rows,), so that
    Δ = scale[:, None] · (codes − zero_point[:, None]) (rows: 1 per tensor, or one per channel)."""
    s = state.tensors["scale"]
    z = state.tensors.get("zero_point")
    z = torch.full(s.shape, 1 << (state.meta["bits"] - 1), dtype=torch.int64, device=s.device) if z is None \
        else z.to(torch.int64)
    return state.tensors["codes"].to(torch.int64).reshape(s.numel(), -1), s, z
