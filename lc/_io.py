"""Files that appear whole or not at all: the one way lc, its adapters and its experiments write a file.

A kill, Ctrl-C or a full disk at any moment leaves either the previous file or the new one, never a part of one,
and never a stray temporary file once the writer has returned or raised. ``replace=False`` never overwrites what
is there (another process may have written the same file meanwhile: its file is kept)."""
from __future__ import annotations

import errno
import os
import secrets
import threading
from pathlib import Path
from typing import BinaryIO, Callable

from ._errors import CompressionError

__all__ = ["write_atomic", "write_atomic_background", "PendingWrite", "write_bytes_atomic", "write_text_atomic",
           "writable_dir"]


def _os_error(path: Path, what: str, e: OSError) -> CompressionError:
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EROFS: "the file system is read-only"}.get(e.errno, e.strerror or str(e))
    return CompressionError(f"cannot write {what} {path}: {reason}; free space or choose another path "
                            "(nothing was written there)")


def writable_dir(path: Path, what: str) -> Path:
    """``path`` as a directory that exists (created with its parents) and that this process may write in; any
    other case is a :class:`CompressionError` saying what to change."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CompressionError(f"{what} {path} is a file, not a directory: give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(path, what, e) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CompressionError(f"{what} {path} is not writable: give a directory this process may write in")
    return path


def write_atomic(path, write: Callable[[BinaryIO], None], *, replace: bool = True, what: str = "the file") -> bool:
    """Write ``path`` through ``write(f)`` on a temporary file in the same directory, fsync it, then move it into
    place: rename over ``path`` (``replace=True``), or link it there only if ``path`` does not exist
    (``replace=False``; returns False and keeps the existing file if it does). Returns True once the file is
    in place. The parent directory must exist; OS errors become :class:`CompressionError` naming ``what``."""
    f, tmp = _write_temp(path, write, what)
    return _commit(f, tmp, Path(path), replace, what)


class PendingWrite:
    """The second half of :func:`write_atomic_background`, in a thread: fsync the written file, rename it into
    place. ``wait()`` returns once it is there, or raises what went wrong."""

    def __init__(self, f, tmp: str, path: Path, what: str):
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(f, tmp, path, what), name="lc-write")
        self._thread.start()

    def _run(self, f, tmp, path, what):
        try:
            _commit(f, tmp, path, True, what)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            self._error = e

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def write_atomic_background(path, write: Callable[[BinaryIO], None], *, what: str = "the file") -> PendingWrite:
    """:func:`write_atomic` (``replace=True``) whose slow half runs in the background: ``write(f)`` fills the
    temporary file here (into the OS's page cache: the caller may change its objects once this returns), then a
    thread fsyncs it and renames it over ``path``. Until then ``path`` holds the previous file; a kill at any moment
    leaves one of the two whole."""
    f, tmp = _write_temp(path, write, what)
    return PendingWrite(f, tmp, Path(path), what)


def _write_temp(path, write, what: str):
    """A temporary file beside ``path`` holding what ``write(f)`` wrote, flushed, still open: (file, its name)."""
    path = Path(path)
    if path.is_dir():
        raise CompressionError(f"{what} {path} is a directory: give a file name")
    if not path.parent.is_dir():
        raise CompressionError(f"cannot write {what} {path}: its directory {path.parent} does not exist; create "
                               "it first or choose another path")
    tmp = f = None
    try:
        fd, tmp = _create_temp(path)
        f = os.fdopen(fd, "wb")
        write(f)
        f.flush()
        return f, tmp
    except BaseException as e:
        _discard(f, tmp)
        if isinstance(e, OSError):
            raise _os_error(path, what, e) from None
        raise


def _commit(f, tmp: str, path: Path, replace: bool, what: str) -> bool:
    """fsync and close the temporary file, then rename it over ``path`` (or link it there if ``path`` does not
    exist, ``replace=False``: False if it does); the temporary file is gone afterwards, whatever happens."""
    try:
        os.fsync(f.fileno())
        f.close()
        if replace:
            os.replace(tmp, path)
            tmp = None
        else:
            try:
                os.link(tmp, path)                            # fails if path exists: never overwritten
            except FileExistsError:
                return False
        _fsync_dir(path.parent)
        return True
    except OSError as e:
        raise _os_error(path, what, e) from None
    finally:
        _discard(f, tmp)


def _discard(f, tmp) -> None:
    if f is not None:
        try:
            f.close()
        except OSError:
            pass
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _create_temp(path: Path) -> tuple[int, str]:
    """A new, unique temporary file beside ``path``, with the permissions the umask gives new files (0644 under
    the usual umask, as a plain open would; ``tempfile.mkstemp`` would make it 0600)."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue


def write_bytes_atomic(path, data: bytes, **kwargs) -> bool:
    return write_atomic(path, lambda f: f.write(data), **kwargs)


def write_text_atomic(path, text: str, **kwargs) -> bool:
    return write_atomic(path, lambda f: f.write(text.encode()), **kwargs)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
