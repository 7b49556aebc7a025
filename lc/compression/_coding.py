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
    prev = torch.cat([idx.new_full((1,), -1), idx[:-1]])
    return idx - prev - 1


def gap_code_bits(indices: torch.Tensor) -> tuple[int, int]:
    """The cheapest fixed width b for gap coding of sorted ``indices``: returns ``(bits, b)``."""
    g = gaps(indices)
    if g.numel() == 0:
        return 0, 1
    widths = torch.arange(1, MAX_GAP_WIDTH + 1, device=g.device, dtype=torch.int64)
    m = (1 << widths) - 1                                             # escape code per width
    codes = (g[None, :] // m[:, None]).sum(dim=1) + g.numel()         # Σ(⌊g/M⌋ + 1) per width
    cost = codes * widths
    best = int(torch.argmin(cost))
    return int(cost[best]), int(widths[best])


def position_bits(indices: torch.Tensor, n: int) -> tuple[int, str, int]:
    """Bits to store the sorted nonzero positions of a length-``n`` tensor: ``(bits, coding, width)``, where
    ``coding`` is ``"bitmap"`` (width 1) or ``"gap"`` (fixed width ``width``)."""
    gap_bits, width = gap_code_bits(indices)
    if n <= gap_bits:
        return n, "bitmap", 1
    return gap_bits, "gap", width
