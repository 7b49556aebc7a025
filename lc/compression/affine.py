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
from ._primitives import F32_BITS, check_finite, code_dtype, round_f32, sorted_values

__all__ = ["AffineQuantization", "grid"]


def _rows(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """w as (rows, columns): one row per channel (the first axis), or a single row."""
    rows = w.shape[0] if per_channel and w.dim() >= 2 else 1
    return w.reshape(rows, -1)


def _affine_error(x: torch.Tensor, s: torch.Tensor, z: torch.Tensor, q: int) -> torch.Tensor:
    """Per row ‖x − s(q − z)‖² with the best codes q = clamp(round(x/s + z), 0, Q): the codes q − z are
    clamp(round(x/s), −z, Q − z) for an integer z."""
    m = torch.clamp(torch.round(x / s[:, None]), -z[:, None], q - z[:, None])
    return ((x - s[:, None] * m) ** 2).sum(1)


class _Moments:
    """Per row, what the least-squares fit of (S, Z) to the codes c of a grid needs: the count n, the means of c and
    x, Σ(c − c̄)² and Σ(c − c̄)(x − x̄), from which Σ m² and Σ x·m for m = c − Z follow for any Z."""

    def __init__(self, n, cm, xm, var, cov):
        self.n, self.cm, self.xm, self.var, self.cov = n, cm, xm, var, cov

    def sums(self, z):
        """(Σ m², Σ x·m) for m = c − z: Σ(c − z)² = var + n(c̄ − z)², Σ x(c − z) = cov + n·x̄·(c̄ − z)."""
        d = self.cm - z
        return self.var + self.n * d * d, self.cov + self.n * self.xm * d


class _Direct:
    """A grid evaluated on every value of the rows x (float64): O(N) per evaluation."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def error(self, s, z, q):
        return _affine_error(self.x, s, z, q)

    def moments(self, s, z, q) -> _Moments:
        x = self.x
        c = torch.clamp(torch.round(x / s[:, None]), -z[:, None], q - z[:, None]) + z[:, None]
        cm, xm = c.mean(1, keepdim=True), x.mean(1, keepdim=True)
        return _Moments(x.shape[1], cm[:, 0], xm[:, 0], ((c - cm) ** 2).sum(1), ((c - cm) * (x - xm)).sum(1))


def _at_least(b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The smallest value of ``dtype`` ≥ b (float64), so that a value v of ``dtype`` is < b exactly when v < it."""
    c = b.to(dtype)
    return torch.where(c.to(b.dtype) < b, torch.nextafter(c, torch.full_like(c, math.inf)), c)


class _Sorted:
    """A grid evaluated on the sorted rows v, through float64 prefix sums of v and v²: the values given code c are
    a run of each sorted row, found by ``searchsorted`` at the boundaries S(c − Z + ½), and the error and moments of
    the grid follow from each run's count, Σx and Σx²: O(levels · log C) per row and evaluation, whatever the
    length C of the rows. (A value exactly on a boundary costs the same with either neighbouring code.)"""

    def __init__(self, v: torch.Tensor):
        self.v = v                                                        # (rows, C), float32 or float64
        self.p1 = torch.cumsum(v, 1, dtype=torch.float64)                 # Σ_{t ≤ i} v_t
        self.p2 = v.to(torch.float64, copy=True).square_().cumsum_(1)    # Σ_{t ≤ i} v_t², squared in float64

    def _before(self, p, pos):
        """Σ over the first ``pos`` values of each row, from the inclusive prefix p."""
        return torch.where(pos > 0, p.gather(1, (pos - 1).clamp(min=0)), torch.zeros((), dtype=p.dtype, device=p.device))

    def levels(self, s, z, q):
        """Per row and code c = 0 … Q: (count, Σx, Σx²) of the values whose code is c, and the level S(c − Z)."""
        rows, n = self.v.shape
        c = torch.arange(q + 1, dtype=torch.float64, device=s.device)
        bounds = s[:, None] * (c[:-1] - z[:, None] + 0.5)                 # codes c and c + 1 meet here
        pos = torch.searchsorted(self.v, _at_least(bounds, self.v.dtype))  # values below each boundary
        pos = torch.cat([pos.new_zeros(rows, 1), pos, pos.new_full((rows, 1), n)], 1)
        cnt = torch.diff(pos, dim=1).to(torch.float64)
        s1, s2 = (torch.diff(self._before(p, pos), dim=1) for p in (self.p1, self.p2))
        return cnt, s1, s2, s[:, None] * (c - z[:, None])

    def error(self, s, z, q):
        cnt, s1, s2, level = self.levels(s, z, q)
        return (s2 - 2 * level * s1 + level * level * cnt).clamp(min=0).sum(1)   # Σ_c Σ (x − level_c)²

    def moments(self, s, z, q) -> _Moments:
        cnt, s1, _, _ = self.levels(s, z, q)
        n = self.v.shape[1]
        c = torch.arange(q + 1, dtype=torch.float64, device=s.device)
        cm, xm = (cnt * c).sum(1) / n, s1.sum(1) / n
        d = c - cm[:, None]
        return _Moments(n, cm, xm, (cnt * d * d).sum(1), (d * (s1 - cnt * xm[:, None])).sum(1))


class _Best:
    """The best (S, Z) per row found so far, and its error, by an evaluator of grids."""

    def __init__(self, ev, q, s, z):
        self.ev, self.q = ev, q
        self.s, self.z, self.error = s, z, ev.error(s, z, q)

    def consider(self, s, z):
        e = self.ev.error(s, z, self.q)
        better = e < self.error
        self.error = torch.where(better, e, self.error)
        self.s = torch.where(better, s, self.s)
        self.z = torch.where(better, z, self.z)


EXACT_BUDGET = 1 << 21   # breakpoints allowed for the exact minimisation over the scale (entries of float64 arrays)
SEARCH_SIZE = 1 << 15    # larger inputs are searched on order statistics of each row, then refined on the full rows
CODES_BLOCK = 1 << 20    # values whose codes are computed at once (a float64 block)


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
    weights: at most 0.55% above the full search at 8 bits, below it when asymmetric); the full rows are sorted
    once, and each of those ~30 grids is evaluated on them through float64 prefix sums of w and w², in
    O(2^bits · log C) per row of C weights (when 4·2^bits ≤ C; else by a pass over the row). Cost about 200 passes
    over at most 2¹⁵ values, plus O(P log P) for a sweep over P breakpoints, plus (large inputs) a sort of each row
    and about 4 O(N) passes; extra memory about 20 bytes per weight. Storage N·bits + 32 bits per scale
    (+ ``bits`` per zero point when asymmetric).
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
        rows = _rows(w.detach(), self.per_channel)
        sample = max(256, SEARCH_SIZE // rows.shape[0])
        if rows.numel() <= SEARCH_SIZE or rows.shape[1] <= sample:
            s, z = self._search(rows.to(torch.float64))
        else:
            s, z = self._search_large(rows, sample)
        s = round_f32(s, torch.float64)                                       # stored as float32
        q, _ = self._levels()
        codes = _codes(rows, s, z, q).reshape(-1)
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

    def _search_large(self, rows, sample):
        """Large inputs: search on ``sample`` evenly spaced order statistics of each row (its minimum and maximum
        included, so its min–max grid is the row's), then alternate on the full rows; keep the best of that and
        min–max, on the full rows. The full rows are evaluated sorted, through prefix sums (:class:`_Sorted`),
        unless the codes outnumber a quarter of each row's values (then on every value, :class:`_Direct`)."""
        q, _ = self._levels()
        v = sorted_values(rows if rows.dtype in (torch.float32, torch.float64) else rows.float())
        pick = torch.round(torch.linspace(0, v.shape[1] - 1, sample, dtype=torch.float64, device=v.device)).long()
        picked = v[:, pick].to(torch.float64)
        ev = _Sorted(v) if 4 * (q + 1) <= v.shape[1] else _Direct(v.to(torch.float64))
        best = _Best(ev, q, *self._search(picked, minmax_only=True))   # min–max of the sample: the rows' own
        best.consider(*self._search(picked))
        center = best.s
        for f in torch.linspace(0.95, 1.05, 21, dtype=torch.float64).tolist():    # the scale, on the full rows
            best.consider(center * f, best.z)
        self._alternate(best, steps=3)
        return best.s, best.z

    def _search(self, x, minmax_only=False):
        q, half = self._levels()
        lo = torch.clamp(x.min(1).values, max=0)
        hi = torch.clamp(x.max(1).values, min=0)
        if self.symmetric:
            s0 = torch.maximum(-lo / half, hi / max(half - 1, 1))
        else:
            s0 = (hi - lo) / q
        s0 = torch.where(s0 > 0, s0, torch.ones_like(s0))                 # an all-zero row: any scale
        z0 = self._zero_points(x, s0, lo, hi)[0]
        if minmax_only:
            return s0, z0
        best = _Best(_Direct(x), q, s0, z0)

        def around(s):
            for z in self._zero_points(x, s, lo, hi):
                best.consider(s, z)

        # the finest lattice step of each row (with 0 on the lattice): exact for a row already on a grid
        v = torch.sort(torch.cat([x, x.new_zeros(x.shape[0], 1)], 1), 1).values
        gap = torch.diff(v, dim=1)
        lattice = torch.where(gap > 0, gap, torch.full_like(gap, math.inf)).min(1).values
        for t in torch.logspace(math.log10(0.02), 0, 48, dtype=torch.float64).tolist():
            around(s0 * t)
        for d in (1, 2):
            around(torch.where(torch.isfinite(lattice), lattice / d, s0))
        self._alternate(best)
        # exact over S for given zero points where the breakpoints are few enough
        half_span = half * x.shape[1] * x.shape[0]
        if self.symmetric and half_span <= EXACT_BUDGET:
            best.consider(_best_scale(x, best.z, q), best.z)
        elif not self.symmetric and 2 * half_span * (q + 1) <= EXACT_BUDGET:
            for z in range(q + 1):
                zz = torch.full_like(best.z, float(z))
                best.consider(_best_scale(x, zz, q), zz)
        elif not self.symmetric and 2 * half_span * 3 <= EXACT_BUDGET:
            for dz in (-1, 0, 1):
                zz = torch.clamp(best.z + dz, 0, q)
                best.consider(_best_scale(x, zz, q), zz)
        step = 10 ** (math.log10(50) / 47)                                # ratio of neighbouring scales above
        for _ in range(3):                                                # zoom in around the best, 3 times
            center = best.s
            for f in torch.linspace(1 / step, step, 41, dtype=torch.float64).tolist():
                around(center * f)
            self._alternate(best)
            step = step ** (1 / 20)
        return best.s, best.z

    def _alternate(self, best: _Best, steps=8):
        """Alternate codes given (S, Z) and least-squares (S, Z) given codes, from the current best."""
        q, _ = self._levels()
        for _ in range(steps):
            s, z = best.s, best.z
            mo = best.ev.moments(s, z, q)
            if not self.symmetric:                                       # w ≈ S·code + β, then Z = −β/S rounded
                slope = mo.cov / mo.var.clamp(min=1e-300)
                beta = mo.xm - slope * mo.cm
                ok = (mo.var > 0) & (slope > 0)
                z = torch.where(ok, torch.clamp(torch.round(-beta / slope.clamp(min=1e-300)), 0, q), z)
            mm, xm = mo.sums(z)                                          # Σ m², Σ x·m for m = code − Z
            s_new = torch.where(mm > 0, xm / mm.clamp(min=1e-300), s)
            best.consider(torch.where(s_new > 0, s_new, s), z)


def _codes(rows: torch.Tensor, s: torch.Tensor, z: torch.Tensor, q: int) -> torch.Tensor:
    """clamp(round(x/S) + Z, 0, Q) of every value, computed in float64 by blocks of columns (a float64 copy of a
    block at a time, not of the whole tensor), stored in the smallest integer dtype."""
    out = torch.empty(rows.shape, dtype=code_dtype(q + 1), device=rows.device)
    step = max(1, CODES_BLOCK // rows.shape[0])
    lo, hi = -z[:, None], q - z[:, None]
    for j in range(0, rows.shape[1], step):
        m = rows[:, j:j + step].to(torch.float64, copy=True).div_(s[:, None]).round_()
        out[:, j:j + step] = torch.clamp(m, lo, hi).add_(z[:, None])
    return out


def grid(state: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The integer grid of an affine state, as a layer's integer kernel reads it: ``(codes, scale, zero_point)``
    with codes (rows, columns) integers in [0, 2^bits − 1], scale (rows,) and zero point (rows,), so that
    Δ = scale[:, None] · (codes − zero_point[:, None]) (rows: 1 per tensor, or one per channel)."""
    s = state.tensors["scale"]
    z = state.tensors.get("zero_point")
    z = torch.full(s.shape, 1 << (state.meta["bits"] - 1), dtype=torch.int64, device=s.device) if z is None \
        else z.to(torch.int64)
    return state.tensors["codes"].to(torch.int64).reshape(s.numel(), -1), s, z
