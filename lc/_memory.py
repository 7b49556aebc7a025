"""The process's memory: handing freed memory back to the system, so that resident memory measures what is live."""
from __future__ import annotations

import ctypes
import sys

__all__ = ["release_freed_memory"]


def release_freed_memory() -> None:
    """Hand freed memory back to the system (glibc keeps freed blocks of up to 32 MB in its heap, where they count
    as the process's resident memory until reused; ``malloc_trim``); nothing where the C library is not glibc."""
    if _libc is not None:
        _libc.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_libc = _glibc() if sys.platform.startswith("linux") else None
