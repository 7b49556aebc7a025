"""Progress of the scripts of ``experiments/``: tqdm bars on a terminal, plain lines where stderr is not one (a CI
log, ``2> log``), so that a file gets readable lines and no escape codes.

    runs = bar(items, desc="runs", enabled=config.progress)
    for item in runs:
        runs.set_postfix_str(f"{item}")          # a terminal: the bar's text; a file: one line "runs 3/12: …"
    runs.close()

Only what the scripts use of tqdm's interface: iteration, ``update``, ``set_postfix``, ``set_postfix_str``,
``close``. Without a terminal a line is written whenever the text changes (``set_postfix*``), never by ``update``
alone.
"""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm.auto import tqdm

__all__ = ["bar", "Lines"]


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", enabled: bool = True,
        leave: bool = True):
    """A tqdm bar when stderr is a terminal, else :class:`Lines`; silent when not ``enabled``."""
    if enabled and sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)
    return Lines(iterable, total=total, desc=desc, enabled=enabled)


class Lines:
    """tqdm's interface as plain lines on stderr: ``desc n/total: postfix``, one per change of the postfix."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 enabled: bool = True):
        self.iterable, self.desc, self.enabled, self.n = iterable, desc, enabled, 0
        self.total = total if total is not None or iterable is None else _len(iterable)

    def __iter__(self):
        for i, item in enumerate(self.iterable):
            self.n = i + 1                            # the item in progress counts, as "run 3 of 12"
            yield item

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str = "") -> None:
        if self.enabled:
            count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
            print(f"{self.desc} {count}" + (f": {text}" if text else ""), file=sys.stderr, flush=True)

    def set_postfix(self, values: dict | None = None, **kw) -> None:
        self.set_postfix_str(" ".join(f"{k}={v}" for k, v in {**(values or {}), **kw}.items()))

    def close(self) -> None:
        pass


def _len(iterable) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None
