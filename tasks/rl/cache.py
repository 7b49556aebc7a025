"""What the RL adapters' cached references share: the fields a reference depends on, the cache key made from them,
and the cache directory."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

__all__ = ["training_fields", "config_hash", "cache_dir"]


def training_fields(cfg) -> dict:
    """The fields the reference depends on (all but the L-step settings ``lc_*`` and ``distill_*``)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if not k.startswith(("lc_", "distill_"))}


def config_hash(cfg) -> str:
    """The cache key of cfg's reference: a hash of its class name and training fields."""
    spec = {"class": type(cfg).__name__, **training_fields(cfg)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir(kind: str) -> Path:
    """``$LC_CACHE/<kind>`` if LC_CACHE is set, else ``.cache/<kind>`` under the current directory."""
    return Path(os.environ.get("LC_CACHE", ".cache")) / kind
