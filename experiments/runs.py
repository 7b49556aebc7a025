"""An output directory that several processes may share: each run is claimed before it starts, so that every run is
done once and its row is in ``rows.jsonl`` exactly once, whichever process did it.

- ``.lock``: an exclusive lock (``fcntl.flock``) held while rows are read or written and while runs are claimed;
- ``claims/<run_id>``: created exclusively (``lc._io.write_text_atomic(..., replace=False)``: linked into place
  only if no file is there) by the process that does the run, holding its pid, host and process start time;
  removed once the run's row is written (or the run fails). While the run goes on, its process touches the file
  every :data:`HEARTBEAT` seconds. A claim whose process has died on this host (no such pid, or a pid reused by a
  process that started later) is taken over at once; a claim of another host (a cluster's other node, whose
  processes cannot be checked from here) is taken over once it has not been touched for :data:`STALE` seconds
  (that process, or its machine, is gone); any other claim is skipped;
- ``rows.jsonl``: the record, one JSON object per finished run, rewritten whole (``lc._io.write_text_atomic``)
  under the lock; a partial last line (an interrupted append by an older version, or by hand) is dropped with a
  warning, and that run is done again;
- ``rows.csv``: the same rows, rewritten from ``rows.jsonl`` under the lock;
- ``config.json``: what the results depend on; a directory holding results of another config is refused unless
  ``overwrite`` (then those results are discarded).
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from lc import CompressionError
from lc._io import writable_dir, write_text_atomic

__all__ = ["RunStore", "read_rows", "csv_text", "HEARTBEAT", "STALE"]

log = logging.getLogger(__name__)

HEARTBEAT = 60.0        # seconds between touches of a claim held by a live process
STALE = 900.0           # a claim of another host untouched this long is taken over


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a pid reused by another process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def csv_text(rows: list[dict], columns: Sequence[str] = ()) -> str:
    """``rows`` as CSV text: ``columns`` (default: every key of the rows, in order of appearance), a header line;
    a value that is a dict or a list (a row's ``chosen``) is written as JSON."""
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, list(columns) or list(dict.fromkeys(k for r in rows for k in r)), extrasaction="ignore")
    w.writeheader()
    w.writerows({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()} for r in rows)
    return text.getvalue()


def read_rows(path: Path) -> tuple[list[dict], int | None]:
    """The rows of a JSON-lines file and, if its last line is partial (not a whole JSON object: an interrupted
    write), the byte offset where that line starts (else None). A malformed line before the last is an error."""
    if not path.exists():
        return [], None
    data = path.read_bytes()
    rows, offset = [], 0
    for line in data.splitlines(keepends=True):
        end = offset + len(line)
        try:
            row = json.loads(line) if line.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            row = ...
        if row is ...:
            if end == len(data):
                return rows, offset
            raise CompressionError(f"{path}: line {len(rows) + 1} is not a JSON object; mend or remove that line")
        if row is not None:
            rows.append(row)
        offset = end
    return rows, None


class RunStore:
    """The rows of a sweep in ``out``, shared by processes (see the module's docstring)."""

    def __init__(self, out: Path, fields: dict | None, *, overwrite: bool = False, columns: Sequence[str] = (),
                 key: Callable[[dict], str] = lambda row: row["run_id"]):
        """``fields``: what the results depend on (None: the caller checks that itself); ``columns``: of rows.csv
        (default: every key of the rows, in order of appearance); ``key``: a row's run id."""
        self.out = writable_dir(Path(out), "the output directory")
        self.jsonl, self.csv, self.config_file = self.out / "rows.jsonl", self.out / "rows.csv", self.out / "config.json"
        self.claims = self.out / "claims"
        self.columns, self.key = list(columns), key
        self.host, self.pid = socket.gethostname(), os.getpid()
        if fields is None:
            return
        with self.locked():
            rows = self._read()
            theirs = json.loads(self.config_file.read_text()) if self.config_file.exists() else None
            if rows and theirs != json.loads(json.dumps(fields)):     # as read back: tuples are lists there
                if not overwrite:
                    raise CompressionError(f"{self.out} holds results of a different config (task, μ schedule or "
                                           "steps); give another --out, or --overwrite to discard them")
                for p in (self.jsonl, self.csv, self.config_file, self.out / "tradeoff.png"):
                    p.unlink(missing_ok=True)
                for d in ("checkpoints", "artifacts", "claims"):
                    shutil.rmtree(self.out / d, ignore_errors=True)
            write_text_atomic(self.config_file, json.dumps(fields, indent=1, sort_keys=True), what="the config")

    # ------------------------------------------------------------------------------------------ lock and rows
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's exclusive lock (blocks while another process holds it)."""
        with open(self.out / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> list[dict]:
        """The rows (under the lock); a partial last line is dropped from the file, with a warning."""
        rows, partial = read_rows(self.jsonl)
        if partial is not None:
            log.warning("%s: dropped a partial last line (an interrupted write); that run will be done again",
                        self.jsonl)
            self._write(rows)
        return rows

    def _write(self, rows: list[dict]) -> None:
        write_text_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows), what="the rows")
        self._write_csv(rows)

    def _write_csv(self, rows: list[dict]) -> None:
        write_text_atomic(self.csv, csv_text(rows, self.columns), what="the rows")

    def rows(self) -> list[dict]:
        with self.locked():
            return self._read()

    def done(self) -> set[str]:
        """The run ids of the rows written."""
        return {self.key(r) for r in self.rows()}

    def sync(self) -> list[dict]:
        """Rewrite rows.csv from rows.jsonl (with the current columns); returns the rows."""
        with self.locked():
            rows = self._read()
            self._write_csv(rows)
            return rows

    # ------------------------------------------------------------------------------------------ claims
    def _claim_file(self, run_id: str) -> Path:
        return self.claims / run_id

    def _owner(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None                        # unreadable: nobody's

    def _dead(self, owner: dict | None, path: Path | None = None) -> bool:
        if owner is None:
            return True
        if owner.get("host") != self.host:     # another machine's process: dead once its heartbeat has stopped
            try:
                return path is not None and time.time() - path.stat().st_mtime > STALE
            except OSError:
                return True
        pid = owner.get("pid")
        if not isinstance(pid, int) or not _alive(pid):
            return True
        started = owner.get("started")
        return started is not None and _start_time(pid) not in (None, started)   # the pid was reused

    def claim(self, run_id: str) -> bool:
        """Claim ``run_id`` for this process: False if its row is written or a live process holds it."""
        with self.locked():
            if any(self.key(r) == run_id for r in self._read()):
                return False
            self.claims.mkdir(exist_ok=True)
            path = self._claim_file(run_id)
            owner = {"pid": self.pid, "host": self.host, "started": _start_time(self.pid)}
            if path.exists():
                theirs = self._owner(path)
                if not self._dead(theirs, path):
                    if theirs != owner:
                        log.info("run %s is being done by pid %s on %s: skipped here", run_id,
                                 theirs.get("pid"), theirs.get("host"))
                    return theirs == owner
                log.warning("run %s: taking over the claim of pid %s on %s, which is no longer running", run_id,
                            (theirs or {}).get("pid"), (theirs or {}).get("host"))
                path.unlink()
            # created whole or not at all, and only if no file is there (a link, as exclusive as O_EXCL)
            if not write_text_atomic(path, json.dumps(owner), replace=False, what="the claim"):
                return False
            self._hold(path)
            return True

    def _hold(self, path: Path) -> None:
        """Keep touching ``path`` every :data:`HEARTBEAT` seconds (a daemon thread) until it is released."""
        if not hasattr(self, "_held"):
            self._held: set[Path] = set()
            self._held_lock = threading.Lock()
        with self._held_lock:
            self._held.add(path)
            if getattr(self, "_heart", None) is None:
                self._heart = threading.Thread(target=self._beat, name="claims-heartbeat", daemon=True)
                self._heart.start()

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT)
            with self._held_lock:
                held = list(self._held)
                if not held:
                    self._heart = None
                    return
            for path in held:
                try:
                    os.utime(path)
                except OSError:                # released meanwhile
                    pass

    def _unhold(self, path: Path) -> None:
        if hasattr(self, "_held"):
            with self._held_lock:
                self._held.discard(path)

    def release(self, run_id: str) -> None:
        """Give up the claim of ``run_id`` (the run failed or was interrupted)."""
        with self.locked():
            self._claim_file(run_id).unlink(missing_ok=True)
        self._unhold(self._claim_file(run_id))

    def add(self, row: dict) -> list[dict]:
        """Record the row of a claimed run (once: a row of the same run id already there is kept) and release the
        claim; returns all rows."""
        with self.locked():
            rows = self._read()
            if not any(self.key(r) == self.key(row) for r in rows):
                rows.append(row)
                self._write(rows)
            self._claim_file(self.key(row)).unlink(missing_ok=True)
        self._unhold(self._claim_file(self.key(row)))
        return rows
