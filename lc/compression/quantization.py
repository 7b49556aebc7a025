"""Quantization C steps with a codebook: adaptive codebooks (1-D k-means), binary and ternary codes
(Carreira-Perpiñán & Idelbayev, "Model compression as constrained optimization, with application to neural nets.
Part II: quantization", 2017). Affine integer grids are in :mod:`lc.compression.affine`.

Every one is a constraint form: the C step is the projection argmin_Θ ‖w − Δ(Θ)‖², whatever μ. Codes are stored
packed (``"uint:b"``), real numbers (codebooks, scales) as float32 (``"f32"``); the codebook and scales a state holds
are rounded to float32 already, so that Δ(Θ) is exactly what the artifact stores.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._base import Compression, State
from ._constraints import Boolean, Integer
from ._kmeans1d import kmeans
from ._kmeans_rows import kmeans_rows
from ._primitives import F32_BITS, check_finite, code_bits, code_dtype, nearest, round_f32, sorted_values

__all__ = ["AdaptiveQuantization", "BinaryQuantization", "ScaledBinaryQuantization", "ScaledTernaryQuantization",
           "codebook"]


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name.removeprefix("torch."))


def _codebook_state(w: torch.Tensor, codebook: torch.Tensor, codes: torch.Tensor) -> State:
    """Θ of a codebook (one row of d entries, or one per row of w) and one code per weight: the codes at
    ⌈log₂ d⌉ bits each, every entry as float32."""
    d = codebook.shape[-1]
    b = code_bits(d)
    return State(tensors={"codebook": codebook, "codes": codes.to(code_dtype(d))},
                 meta={"shape": list(w.shape), "encoding": {"codebook": "f32", "codes": f"uint:{b}"}},
                 bits=w.numel() * b + F32_BITS * codebook.numel())


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
    ``AsIs``; a vector is one row): the problem separates over rows, and all rows are solved at once
    (:mod:`lc.compression._kmeans_rows`, no loop over rows): exactly where that is cheap (rows·n·log₂n·k ≤ 2²²,
    or ``exact=True``), else by an exact programme on 64 chunks per row and Lloyd on the full rows (measured on
    rows of 3,000: k = 16 at most 4% above each row's optimum, 0.6% on average; k ≤ 4 within 0.3%). Rows with
    fewer than k distinct values repeat their largest entry, so that the codebook is a (rows, d) matrix with d
    the most entries any row needs. Storage: N·⌈log₂ d⌉ + 32·rows·d bits.
    """

    k: int
    exact: bool = False
    per_channel: bool = False
    constraints = {"k": (Integer(1), "is the number of codebook entries (e.g. k=2 for one bit per weight)"),
                   "exact": (Boolean(), "forces the exact dynamic programme on all distinct values"),
                   "per_channel": (Boolean(), "gives each row of the view's matrix its own codebook")}

    def compress(self, w, mu, previous=None):
        if self.per_channel and w.dim() >= 2:
            return self._compress_rows(w, previous)
        init = previous.tensors.get("codebook") if previous is not None else None
        return self._state(w, kmeans(w.detach(), int(self.k), init=init, exact=self.exact))

    def _state(self, w, centroids):
        """Θ of the sorted ``centroids`` (float64): the codebook rounded to float32, each weight's nearest entry."""
        check_finite(centroids, repr(self))                 # a NaN or inf weight makes a centroid NaN or inf
        codebook = round_f32(centroids, w.dtype)
        # nearest stored entry: never worse than the clusters the solver found, given float32 rounding
        codes = nearest(w, codebook)
        used = torch.bincount(codes, minlength=codebook.numel()) > 0
        if not bool(used.all()):                      # float32 rounding merged two clusters: drop the empty one
            codebook = codebook[used]
            codes = nearest(w, codebook)
        return _codebook_state(w, codebook, codes)

    def _compress_rows(self, w, previous):
        x = w.detach().reshape(w.shape[0], -1)
        init = previous.tensors.get("codebook") if previous is not None else None
        return self._rows_state(w, kmeans_rows(x, int(self.k), exact=self.exact,
                                               init=init if init is not None and init.dim() == 2 else None))

    def _rows_state(self, w, centroids):
        """Θ of one codebook per row (``centroids`` (rows, d), sorted per row): rounded to float32, each weight's
        nearest entry of its row's codebook."""
        x = w.detach().reshape(w.shape[0], -1)
        codebook = round_f32(centroids, w.dtype)
        check_finite(codebook, repr(self))
        # nearest stored entry per row (a repeated entry is never chosen over its equal: same value either way)
        mid = (codebook[:, 1:] + codebook[:, :-1]) / 2
        codes = torch.searchsorted(mid, x.contiguous(), right=True, out_int32=True).reshape(-1)
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
        check_finite(w, repr(self))
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
        check_finite(w, repr(self))
        a = round_f32(w.abs().mean() if w.numel() else w.new_zeros(()), w.dtype)
        return State(tensors={"codes": _sign_codes(w), "scale": a.reshape(1)},
                     meta={"shape": list(w.shape), "encoding": {"codes": "uint:1", "scale": "f32"}},
                     bits=w.numel() + F32_BITS)

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
        check_finite(w, repr(self))
        flat = w.reshape(-1)
        mag = flat.abs()
        u = sorted_values(mag).flip(0)                                 # |w| in decreasing order
        s = torch.cumsum(u, 0, dtype=torch.float64)                   # Σ_{top j}|w|, j = 1 … N
        gain = torch.arange(1, u.numel() + 1, device=w.device, dtype=torch.float64)
        gain = torch.square(s).div_(gain)                             # (Σ_{top j}|w|)²/j
        top = int(torch.argmax(gain)) + 1 if gain.numel() and float(gain.max()) > 0 else 0   # the first best j
        a = round_f32(s[top - 1] / top if top else s.new_zeros(()), w.dtype)
        codes = torch.ones(flat.numel(), dtype=torch.uint8, device=w.device)
        if top:                                                       # the j largest |w|; ties at the threshold
            t = u[top - 1]                                            # by position, as a stable sort orders them
            keep = mag > t
            ties = top - int(keep.sum())
            if ties:
                keep[torch.nonzero(mag == t)[:ties, 0]] = True
            codes.masked_fill_(keep & (flat > 0), 2)                  # +a → 2
            codes.masked_fill_(keep & (flat < 0), 0)                  # −a → 0
        return State(tensors={"codes": codes, "scale": a.reshape(1)},
                     meta={"shape": list(w.shape), "encoding": {"codes": "uint:2", "scale": "f32"}},
                     bits=2 * flat.numel() + F32_BITS)

    def decompress(self, state):
        a = state.tensors["scale"]
        return (a * (state.tensors["codes"].to(a.dtype) - 1)).reshape(state.meta["shape"])


def codebook(state: State) -> tuple[torch.Tensor, torch.Tensor]:
    """A codebook state as a look-up layer reads it: ``(entries, codes)`` with entries (d,) or, per channel,
    (rows, d), and codes (the flat index of each weight into its row's entries), so that Δ = entries[codes]."""
    return state.tensors["codebook"], state.tensors["codes"]
