"""Storage accounting for the positions of the nonzeros of a sparse tensor.

Two standard codings, the cheaper one is used:

- **bitmap**: one bit per entry, ``n`` bits;
- **gap coding with a fixed width b** (1 ≤ b ≤ 32): the nonzeros are visited in increasing position
  p_0 < p_1 < …; each is preceded by a gap g_i = p_i − p_{i−1} − 1 (with p_{−1} = −1), the number of zeros
  skipped. With M = 2^b − 1, the code M is an escape that means "skip M positions, no value here", so a gap g
  is written as ⌊g / M⌋ escapes then the code g mod M. The cost is b · Σ_i (⌊g_i / M⌋ + 1) bits; the best b is
  chosen. Positions after the last nonzero need no code (the length n is known).

The artifact writer (``lc.save``) writes exactly these codes, so nominal and realised sizes agree.
"""
from __future__ import annotations

import torch

MAX_GAP_WIDTH = 32


def gaps(indices: torch.Tensor) -> torch.Tensor:
    """Gaps g_i = p_i − p_{i−1} − 1 between sorted positions (p_{−1} = −1), as int64."""
    idx = indices.to(torch.int64)
    return torch.diff(idx, prepend=idx.new_full((1,), -1)).sub_(1)


def gap_code_bits(indices: torch.Tensor) -> tuple[int, int]:
    """The cheapest fixed width b for gap coding of sorted ``indices``: returns ``(bits, b)`` (the smallest b
    among equals). The cost of width b is b·(n + Σ_i ⌊g_i / M_b⌋), and only the gaps g ≥ M_b add to the sum; as b
    grows, M_b grows, so each width sums over the gaps the previous width kept that still reach M_b, and the widths
    stop at the first whose M_b exceeds every gap (any wider costs more). O(n) memory; the work is n times the number
    of widths that most gaps reach (about log₂ of the mean gap), not 32·n."""
    g = gaps(indices)
    n = g.numel()
    if n == 0:
        return 0, 1
    best = None
    for b in range(1, MAX_GAP_WIDTH + 1):
        m = (1 << b) - 1
        g = g[g >= m]                                                 # the gaps that need escapes at this width
        cost = b * (n + int((g // m).sum()))                          # b · Σ_i (⌊g_i/M⌋ + 1)
        if best is None or cost < best[0]:
            best = (cost, b)
        if g.numel() == 0:                                            # every gap fits: wider widths cost more
            break
    return best


def position_bits(indices: torch.Tensor, n: int) -> tuple[int, str, int]:
    """Bits to store the sorted nonzero positions of a length-``n`` tensor: ``(bits, coding, width)``, where
    ``coding`` is ``"bitmap"`` (width 1) or ``"gap"`` (fixed width ``width``)."""
    gap_bits, width = gap_code_bits(indices)
    if n <= gap_bits:
        return n, "bitmap", 1
    return gap_bits, "gap", width
