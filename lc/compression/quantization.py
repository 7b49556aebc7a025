"""Quantization C steps: adaptive codebooks (1-D k-means), binary and ternary codes, affine integer grids
(Carreira-Perpiñán & Idelbayev, "Model compression as constrained optimization, with application to neural nets.
Part II: quantization", 2017).

Every one is a constraint form: the C step is the projection argmin_Θ ‖w − Δ(Θ)‖², whatever μ. Codes are stored
packed (``"uint:b"``), real numbers (codebooks, scales) as float32; the codebook and scales a state holds are
rounded to float32 already, so that Δ(Θ) is exactly what the artifact stores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._errors import CompressionError
from ._base import Compression, State
from ._kmeans1d import kmeans

__all__ = ["AdaptiveQuantization", "BinaryQuantization", "ScaledBinaryQuantization", "ScaledTernaryQuantization",
           "AffineQuantization"]

FLOAT_BITS = 32


def _f32(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` rounded to float32 (how it is stored), in ``dtype``."""
    return x.to(torch.float32).to(dtype)


def _code_dtype(levels: int) -> torch.dtype:
    return torch.uint8 if levels <= 256 else torch.int32


def _code_bits(levels: int) -> int:
    """⌈log₂ levels⌉: the bits of one code (0 when there is a single level: nothing to store)."""
    return max(levels - 1, 0).bit_length()


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name.removeprefix("torch."))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_finite(w: torch.Tensor, who: str):
    if not bool(torch.isfinite(w).all()):
        raise CompressionError(f"{who}: the weights hold NaN or inf; quantize finite weights only")


def _nearest(w: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of the sorted ``codebook`` for each weight (ties to the larger). O(N log k)."""
    return torch.bucketize(w.reshape(-1), (codebook[1:] + codebook[:-1]) / 2, right=True, out_int32=True)


def _codebook_state(w: torch.Tensor, codebook: torch.Tensor, codes: torch.Tensor) -> State:
    """Θ of a codebook (one row of d entries, or one per row of w) and one code per weight: the codes at
    ⌈log₂ d⌉ bits each, every entry as float32."""
    d = codebook.shape[-1]
    b = _code_bits(d)
    return State(tensors={"codebook": codebook, "codes": codes.to(_code_dtype(d))},
                 meta={"shape": list(w.shape), "encoding": {"codebook": "f32", "codes": f"uint:{b}"}},
                 bits=w.numel() * b + FLOAT_BITS * codebook.numel())


@dataclass(frozen=True)
class AdaptiveQuantization(Compression):
    """Solves min_{c, z} Σ_i (w_i − c_{z_i})² over codebooks c ∈ ℝᵏ and assignments z_i ∈ {1…k}: 1-D k-means,
    the global optimum (quantization paper above, §4; exact 1-D solver: Grønlund et al. 2017).

    Sort once (O(N log N)), then :mod:`lc.compression._kmeans1d`: below 4096 distinct values the exact dynamic
    programme; above, a fast path (an exact DP on a summary, Lloyd iterations in O(k log N) each, exact DP over
    cuts near the current ones) that the tests check against the exact DP; ``exact=True`` forces the DP on all
    distinct values (O(kN log N) time, O(kN) memory). ``previous`` (the last codebook) is a second start of the fast
    path; the better result is kept, so a warm start never makes the answer worse (it does not make it faster:
    the sort dominates).

    If w has d ≤ k distinct values, the optimum is w itself: the codebook holds those d values (no empty cluster,
    zero distortion) and the state is charged for d. Storage: N·⌈log₂ d⌉ + 32·d bits (d = k normally).

    ``per_channel=True``: one codebook of k entries per row of the matrix the view gives (per output channel for
    ``AsIs``; a vector is one row), each row's k-means solved as above: the problem separates over rows. Rows
    with fewer than k distinct values repeat their largest entry, so that the codebook is a (rows, d) matrix
    with d the most entries any row needs. Storage: N·⌈log₂ d⌉ + 32·rows·d bits.
    """

    k: int
    exact: bool = False
    per_channel: bool = False

    def check(self, shape):
        if not _is_int(self.k) or self.k < 1:
            raise CompressionError(f"AdaptiveQuantization(k={self.k!r}): k is the number of codebook entries and must "
                                   "be an integer ≥ 1 (e.g. k=2 for one bit per weight)")
        if not isinstance(self.exact, bool) or not isinstance(self.per_channel, bool):
            raise CompressionError(f"{self!r}: exact and per_channel must be True or False")

    def compress(self, w, mu, previous=None):
        if self.per_channel and w.dim() >= 2:
            return self._compress_rows(w, previous)
        init = previous.tensors.get("codebook") if previous is not None else None
        centroids = kmeans(w.detach(), self.k, init=init, exact=self.exact)
        _check_finite(centroids, repr(self))                 # a NaN or inf weight makes a centroid NaN or inf
        codebook = _f32(centroids, w.dtype)
        # nearest stored entry: never worse than the clusters the solver found, given float32 rounding
        codes = _nearest(w, codebook)
        used = torch.bincount(codes, minlength=codebook.numel()) > 0
        if not bool(used.all()):                      # float32 rounding merged two clusters: drop the empty one
            codebook = codebook[used]
            codes = _nearest(w, codebook)
        return _codebook_state(w, codebook, codes)

    def _compress_rows(self, w, previous):
        x = w.detach().reshape(w.shape[0], -1)
        init = previous.tensors.get("codebook") if previous is not None else None
        if init is None or init.dim() != 2 or init.shape[0] != x.shape[0]:
            init = None
        books = [_f32(kmeans(r, self.k, init=None if init is None else init[i], exact=self.exact), w.dtype)
                 for i, r in enumerate(x)]
        d = max(c.numel() for c in books)
        codebook = torch.stack([torch.cat([c, c[-1:].expand(d - c.numel())]) for c in books])
        _check_finite(codebook, repr(self))
        # nearest stored entry per row (a repeated entry is never chosen over its equal: same value either way)
        codes = torch.stack([_nearest(r, c) for r, c in zip(x, codebook)]).reshape(-1)
        return _codebook_state(w, codebook, codes)

    def decompress(self, state):
        codebook, codes = state.tensors["codebook"], state.tensors["codes"].long()
        if codebook.dim() == 2:                                     # per_channel: one codebook per row
            return codebook.gather(1, codes.reshape(codebook.shape[0], -1)).reshape(state.meta["shape"])
        return codebook[codes].reshape(state.meta["shape"])


def _sign_codes(w: torch.Tensor) -> torch.Tensor:
    """1 where w ≥ 0, else 0 (a zero weight goes to +1 or +a: either is optimal)."""
    return (w.reshape(-1) >= 0).to(torch.uint8)


@dataclass(frozen=True)
class BinaryQuantization(Compression):
    """Solves min_θ ‖w − θ‖² s.t. θ_i ∈ {−1, +1}: θ = sign(w) (sign(0) = +1). O(N). Storage N bits (code 1 ↔ +1)."""

    def compress(self, w, mu, previous=None):
        _check_finite(w, repr(self))
        return State(tensors={"codes": _sign_codes(w)},
                     meta={"shape": list(w.shape), "dtype": str(w.dtype), "encoding": {"codes": "uint:1"}},
                     bits=w.numel())

    def decompress(self, state):
        codes = state.tensors["codes"]
        return (2 * codes.to(_dtype(state.meta["dtype"])) - 1).reshape(state.meta["shape"])


@dataclass(frozen=True)
class ScaledBinaryQuantization(Compression):
    """Solves min_{a, θ} ‖w − θ‖² s.t. θ_i ∈ {−a, +a}: θ = a·sign(w) with a = mean |w_i| (for any sign pattern
    s the best a is ⟨w, s⟩/N, largest for s = sign(w)). O(N). Storage N + 32 bits."""

    def compress(self, w, mu, previous=None):
        _check_finite(w, repr(self))
        a = _f32(w.abs().mean() if w.numel() else w.new_zeros(()), w.dtype)
        return State(tensors={"codes": _sign_codes(w), "scale": a.reshape(1)},
                     meta={"shape": list(w.shape), "encoding": {"codes": "uint:1", "scale": "f32"}},
                     bits=w.numel() + FLOAT_BITS)

    def decompress(self, state):
        a = state.tensors["scale"]
        return (a * (2 * state.tensors["codes"].to(a.dtype) - 1)).reshape(state.meta["shape"])


@dataclass(frozen=True)
class ScaledTernaryQuantization(Compression):
    """Solves min_{a, θ} ‖w − θ‖² s.t. θ_i ∈ {−a, 0, +a}, exactly. For a support of j weights the best choice is
    the j largest |w_i| with their signs and a = their mean |w|, reducing ‖w‖² by (Σ_{top j} |w_i|)²/j; so sort |w|
    once and take the j maximising that (j = 0: θ = 0). O(N log N). Storage 2N + 32 bits: codes 0, 1, 2 ↔ −a, 0, +a
    packed at 2 bits (``uint:2``)."""

    def compress(self, w, mu, previous=None):
        _check_finite(w, repr(self))
        flat = w.reshape(-1)
        u, order = torch.sort(flat.abs().to(torch.float64), descending=True, stable=True)
        s = torch.cumsum(u, 0)
        j = torch.arange(1, u.numel() + 1, device=w.device, dtype=torch.float64)
        gain = torch.cat([s.new_zeros(1), s * s / j])                 # (Σ_{top j}|w|)²/j, j = 0 … N
        top = int(torch.argmax(gain))
        a = _f32(s[top - 1] / top if top else s.new_zeros(()), w.dtype)
        codes = torch.ones(flat.numel(), dtype=torch.uint8, device=w.device)
        keep = order[:top]
        codes[keep] = (1 + torch.sign(flat[keep])).to(torch.uint8)   # −a → 0, +a → 2
        return State(tensors={"codes": codes, "scale": a.reshape(1)},
                     meta={"shape": list(w.shape), "encoding": {"codes": "uint:2", "scale": "f32"}},
                     bits=2 * flat.numel() + FLOAT_BITS)

    def decompress(self, state):
        a = state.tensors["scale"]
        return (a * (state.tensors["codes"].to(a.dtype) - 1)).reshape(state.meta["shape"])


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
    over at most 2¹⁵ values, plus about 30 O(N) passes, plus O(P log P) for a sweep over P breakpoints. Storage N·bits + 32 bits per scale (+ ``bits``
    per zero point when asymmetric).
    """

    bits: int
    symmetric: bool = True
    per_channel: bool = False

    def check(self, shape):
        if not _is_int(self.bits) or not 1 <= self.bits <= 16:
            raise CompressionError(f"AffineQuantization(bits={self.bits!r}): bits must be an integer from 1 to 16")
        if not isinstance(self.symmetric, bool) or not isinstance(self.per_channel, bool):
            raise CompressionError(f"{self!r}: symmetric and per_channel must be True or False")
        if self.symmetric and self.bits == 1:
            raise CompressionError("AffineQuantization(bits=1, symmetric=True) has the levels {−S, 0} only; use "
                                   "ScaledBinaryQuantization() for {−a, +a}, or symmetric=False")

    def _levels(self):
        q = (1 << self.bits) - 1
        return q, (1 << (self.bits - 1))

    def compress(self, w, mu, previous=None):
        _check_finite(w, repr(self))
        x = _rows(w.detach(), self.per_channel)
        sample = max(256, SEARCH_SIZE // x.shape[0])
        s, z = self._search(x) if x.numel() <= SEARCH_SIZE or x.shape[1] <= sample else self._search_large(x, sample)
        s = _f32(s, torch.float64)                                       # stored as float32
        q, _ = self._levels()
        codes = (torch.clamp(torch.round(x / s[:, None]), -z[:, None], q - z[:, None]) + z[:, None]).reshape(-1)
        tensors = {"codes": codes.to(_code_dtype(q + 1)), "scale": s.to(w.dtype)}
        encoding = {"codes": f"uint:{self.bits}", "scale": "f32"}
        side = FLOAT_BITS * s.numel()
        if not self.symmetric:
            tensors["zero_point"] = z.to(_code_dtype(q + 1))
            encoding["zero_point"] = f"uint:{self.bits}"
            side += self.bits * z.numel()
        return State(tensors=tensors, meta={"shape": list(w.shape), "bits": self.bits, "encoding": encoding},
                     bits=w.numel() * self.bits + side)

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
        half_span = (1 << (self.bits - 1)) * x.shape[1] * x.shape[0]
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
