"""Atomic checkpoints: a kill at any moment leaves either the previous checkpoint or the new one, never a
broken file. Only tensors, numbers, strings, lists and dicts are written, so loading runs no code."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ._errors import CompressionError
from ._io import write_atomic

FILENAME = "lc_checkpoint.pt"


def save_atomic(obj, path: Path) -> None:
    """Write to a temporary file in the same directory, fsync it, then rename it over ``path``."""
    write_atomic(path, lambda f: torch.save(obj, f), what="the checkpoint")


def load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise CompressionError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it was not written by "
                               "this version of lc or was damaged — move it away to start the run afresh") from e


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
             "python": _to_lists(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
