"""The LC loop under ``torch.distributed``: the L step is the user's (DDP or FSDP over the ranks); the loop keeps the
ranks in step.

- the C step runs on rank 0 and its Θ is broadcast (every rank then holds the same Θ, Δ(Θ) and λ, whatever the
  float details of each rank's arithmetic); an error there reaches every rank, so that none waits forever;
- the decision to stop (callbacks, tolerance, the end of the schedule) is agreed: any rank's stop stops all;
- rank 0 alone writes checkpoints (with every rank's random-number streams, so that a resumed rank continues its own)
  and logs; every rank reads the checkpoint on resume (a file system the ranks share).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import torch
import torch.distributed as dist

from ._errors import CompressionError

__all__ = ["Ranks", "ranks_for"]

log = logging.getLogger(__name__)


def ranks_for(distributed: bool | None) -> "Ranks | None":
    """``None``: a :class:`Ranks` when a process group of more than one rank is initialised; ``True``: one (an error
    if no process group is); ``False``: none."""
    ready = dist.is_available() and dist.is_initialized()
    if distributed is True and not ready:
        raise CompressionError("lc.Algorithm(distributed=True) needs torch.distributed initialised first "
                               "(torch.distributed.init_process_group, e.g. under torchrun)")
    if distributed is False or not ready or dist.get_world_size() == 1:
        return None
    return Ranks()


class Ranks:
    """This process's place among the ranks, and the few collectives the loop needs."""

    def __init__(self, group=None):
        self.group = group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.timing: dict[str, float] = {}          # the last C step: seconds computing (rank 0) and broadcasting

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (any picklable object)."""
        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        out = [None] * self.world
        dist.all_gather_object(out, value, group=self.group)
        return out

    def agree(self, flag: bool) -> bool:
        """True on every rank if it is True on any."""
        t = torch.tensor([int(bool(flag))])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return bool(t.item())

    def states(self, compute: Callable[[], list], devices: list) -> list:
        """``compute()`` (the C step) on rank 0, its states broadcast and placed on ``devices`` (one per task) on every
        rank. An exception on rank 0 is raised there and, as a :class:`lc.CompressionError`, on the other ranks."""
        payload, t = None, time.perf_counter()
        if self.rank == 0:
            try:
                payload = ("ok", [s.to("cpu") for s in compute()])
            except BaseException as e:
                self.broadcast(("error", f"{type(e).__name__}: {e}"))
                raise
        computed = time.perf_counter()
        kind, value = self.broadcast(payload)
        self.timing = {"compute": computed - t, "broadcast": time.perf_counter() - computed}
        if kind == "error":
            raise CompressionError(f"the C step failed on rank 0 ({value}); every rank stops")
        return [s.to(d) for s, d in zip(value, devices)]
