"""Text for language models: byte-level tokens of a corpus of files, split into training, validation and test by
file, deterministically; the default corpus is the Python standard library's own source, which every machine with
Python has.

    tokens = stdlib_corpus()                       # ~12 MB of .py files, tests left out
    tokens = text_corpus(["notes/", "book.txt"])   # your own text files (directories are walked)

A file's split is fixed by a hash of its name (relative to the root it was found under), so adding or removing
other files never moves it. :attr:`Tokens.sha256` hashes every file's split, name and content: it is what results
depend on, recorded in every row of a study, and :attr:`Tokens.files` lists the names of each split.
"""
from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from lc import CompressionError

__all__ = ["Tokens", "stdlib_corpus", "text_corpus", "split_of", "SPLITS"]

SPLITS = ("train", "validation", "test")
LEFT_OUT = ("site-packages", "test", "tests", "__pycache__")     # directory names the stdlib corpus skips


@dataclass(frozen=True, eq=False)
class Tokens:
    """Token ids of each split (1-D integer tensors; bytes are uint8), the vocabulary size, a description, the
    names of each split's files and a sha256 of the whole corpus (split, name and content of every file)."""

    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    vocab: int
    name: str
    sha256: str
    files: dict = field(default_factory=dict)

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise CompressionError(f"unknown split {name!r}; choose among {', '.join(SPLITS)}")
        return getattr(self, name)

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {len(self.split(s)):,} tokens ({len(self.files.get(s, []))} files)" for s in SPLITS)
        return f"{self.name}: {sizes}; sha256 {self.sha256[:12]}"

    @classmethod
    def from_ids(cls, train, validation, test, vocab: int, name: str = "your tokens") -> "Tokens":
        """Token ids you made (with your own tokenizer): three 1-D integer tensors of ids below ``vocab``."""
        parts = []
        for split, ids in zip(SPLITS, (train, validation, test)):
            ids = torch.as_tensor(ids)
            if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool or not len(ids):
                raise CompressionError(f"Tokens.from_ids: {split} must be a non-empty 1-D tensor of integer token "
                                       f"ids, got {ids.dtype} of shape {tuple(ids.shape)}")
            if int(ids.min()) < 0 or int(ids.max()) >= vocab:
                raise CompressionError(f"Tokens.from_ids: {split} holds ids outside 0 … {vocab - 1} (vocab={vocab})")
            parts.append(ids)
        h = hashlib.sha256(str(vocab).encode())
        for ids in parts:
            h.update(ids.to(torch.int64).numpy().tobytes())
        return cls(*parts, vocab=vocab, name=name, sha256=h.hexdigest())


def split_of(name: str, validation: float, test: float) -> str:
    """The split of the file ``name``: a uniform number in [0, 1) from the sha256 of the name decides."""
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2 ** 64
    return "validation" if u < validation else "test" if u < validation + test else "train"


def _files(paths: Iterable[str | Path], suffixes: tuple[str, ...] | None, skip: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(name, path) of every file: a file given as itself (its name), a directory walked (names relative to it)."""
    out = []
    for p in map(Path, paths):
        if p.is_file():
            out.append((p.name, p))
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and not any(part in skip for part in rel.parts[:-1]) and (
                        suffixes is None or f.suffix in suffixes):
                    out.append((rel.as_posix(), f))
        else:
            raise CompressionError(f"text corpus: {p} is neither a file nor a directory")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise CompressionError(f"text corpus: several files are named {dup}; give directories whose files have "
                               "distinct relative names (the name decides the split)")
    return sorted(out)


def text_corpus(paths: Iterable[str | Path], *, suffixes: Iterable[str] | None = None, validation: float = 0.05,
                test: float = 0.05, name: str | None = None, skip: tuple[str, ...] = ("__pycache__",)) -> Tokens:
    """Byte-level tokens (vocabulary 256) of text files: ``paths`` are files or directories (walked; with
    ``suffixes``, e.g. ``[".py"]``, only files ending so), split by file (:func:`split_of`) into about
    ``validation`` and ``test`` of the files each, the rest training. Every split must get a file."""
    if not (0 < validation and 0 < test and validation + test < 1):
        raise CompressionError(f"text corpus: validation={validation} and test={test} must be > 0 with a sum < 1")
    paths = list(paths)
    files = _files(paths, tuple(suffixes) if suffixes is not None else None, skip)
    if not files:
        raise CompressionError(f"text corpus: no files found under {[str(p) for p in paths]}")
    data = {s: [] for s in SPLITS}
    names = {s: [] for s in SPLITS}
    h = hashlib.sha256()
    for fname, path in files:
        content = path.read_bytes()
        split = split_of(fname, validation, test)
        data[split].append(content)
        names[split].append(fname)
        h.update(f"{split}\t{fname}\t{hashlib.sha256(content).hexdigest()}\n".encode())
    empty = [s for s in SPLITS if not data[s]]
    if empty:
        raise CompressionError(f"text corpus: {len(files)} files leave the {' and '.join(empty)} split empty; give "
                               "more files, or larger validation/test fractions")
    tensors = [torch.frombuffer(bytearray(b"".join(data[s])), dtype=torch.uint8) for s in SPLITS]
    return Tokens(*tensors, vocab=256, name=name or ", ".join(str(p) for p in paths), sha256=h.hexdigest(),
                  files=names)


def stdlib_corpus(validation: float = 0.05, test: float = 0.05) -> Tokens:
    """The Python standard library's ``.py`` files (``sysconfig.get_paths()["stdlib"]``), without its test suites
    and site-packages: about 12 MB on CPython 3.11. Which files, and so :attr:`Tokens.sha256`, depend on the
    Python version: rows record the hash."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return text_corpus([root], suffixes=[".py"], validation=validation, test=test, skip=LEFT_OUT,
                       name=f"python{sys.version_info.major}.{sys.version_info.minor} stdlib")
