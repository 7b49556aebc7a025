"""One typed config per script: a dataclass whose fields carry their help text becomes the script's command line
(one flag per field) and the keys of a TOML or JSON file given with ``--config``; flags override the file, which
overrides the defaults.

    @dataclass
    class Config:
        steps: int = option(20, "LC steps")
        families: list[str] = option(["pruning"], "families to sweep")
        out: str = option("results/x", "output directory", directory=True)

    config = cli.parse(Config, argv, prog="python -m experiments.x", description=__doc__)

Field types: ``int``, ``float``, ``str``, ``bool`` (``--flag`` / ``--no-flag``), ``int | float`` (a number kept as
written: ``2`` stays an integer), ``X | None``, ``list[X]`` (several values after the flag; a list in a file),
``dict[str, X]`` and ``dict[str, list[X]]`` (``NAME=V`` / ``NAME=V1,V2`` after the flag; a table in a file), and a
nested dataclass (its fields are plain flags, and a table of that name in a file). A field without a default is
required. Every mistake — an unknown key, a value of the wrong type, a list written as a string, a file that does
not exist or does not parse (the line is said), an output directory that is a file, a value that is not a number —
is an :class:`lc.CompressionError` saying what to change, raised before anything runs; :func:`console` prints it
as ``error: …`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable

import lc
from lc import CompressionError

__all__ = ["option", "parse", "parser", "console"]

_NUMBER = int | float


def option(default=dataclasses.MISSING, help: str = "", *, flags: tuple[str, ...] | None = None,
           choices: tuple | None = None, metavar: str | None = None, directory: bool = False,
           positional: bool = False, hidden: bool = False, nargs: str = "+"):
    """A config field with its help text. ``flags`` replace the default ``--field-name``; ``choices`` restrict the
    value (each item of a list); ``directory``: an output directory, refused if it is an existing file;
    ``positional``: a positional argument; ``hidden``: not shown by ``--help``; ``nargs``: "+" or "*" for lists."""
    metadata = {"help": help, "flags": flags, "choices": choices, "metavar": metavar, "directory": directory,
                "positional": positional, "hidden": hidden, "nargs": nargs}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------- types
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _optional(tp):
    """``X | None`` → (X, True); anything else → (tp, False)."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            return (rest[0] if len(rest) == 1 else typing.Union[rest]), True
    return tp, False


def _nested(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _describe(tp) -> str:
    tp, _ = _optional(tp)
    if tp == _NUMBER or tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple):
        return f"a list of {_describe(args[0])[2:]}s"
    if origin is dict:
        return f"a table of {_describe(args[1])[2:]}s"
    return getattr(tp, "__name__", str(tp))


def _scalar(value, tp, where: str):
    """A value read from a file (or converted from text) checked against a scalar type."""
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float or tp == _NUMBER:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise CompressionError(f"{where} = {value!r}: give {_describe(tp)}")


def _check(value, tp, where: str):
    """``value`` from a config file, checked (recursively) against the field type ``tp``."""
    tp, optional = _optional(tp)
    if value is None:
        if optional:
            return None
        raise CompressionError(f"{where} = null: give {_describe(tp)}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple):
        if not isinstance(value, list):
            key = where.rpartition(": ")[2].rpartition(".")[2]
            raise CompressionError(f"{where} = {value!r}: give {_describe(tp)}, e.g. {key} = "
                                   f"{json.dumps([value] if not isinstance(value, dict) else [])}")
        return [_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise CompressionError(f"{where} = {value!r}: give {_describe(tp)} ([{where}] in TOML, an object in "
                                   "JSON)")
        return {str(k): _check(v, args[1], f"{where}.{k}") for k, v in value.items()}
    return _scalar(value, tp, where)


def _number(text: str, where: str):
    """A number as written (``2`` an integer, ``0.05`` a float), finite."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise CompressionError(f"{where}: {text!r} is not a number")
    return value


def _from_text(text: str, tp, where: str):
    """A flag's text converted to the scalar type ``tp``."""
    tp, optional = _optional(tp)
    if tp is str:
        return text
    if tp == _NUMBER:
        return _number(text, where)
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise CompressionError(f"{where} {text}: give an integer") from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise CompressionError(f"{where} {text}: give a number")
        return value
    return text


def _items(texts: list[str], tp, where: str) -> dict:
    """``NAME=V`` (or ``NAME=V1,V2`` for a dict of lists) items of a dict flag."""
    value_type = typing.get_args(tp)[1]
    is_list = typing.get_origin(value_type) in (list, tuple)
    out = {}
    for item in texts:
        name, _, text = item.partition("=")
        if not name or not text:
            example = "NAME=V1,V2 (e.g. pruning=0.05,0.1)" if is_list else "NAME=VALUE (e.g. rank=1e-3)"
            raise CompressionError(f"{where} {item!r}: write {example}")
        if is_list:
            out[name] = [_from_text(v, typing.get_args(value_type)[0], f"{where} {item}") for v in text.split(",")]
        else:
            out[name] = _from_text(text, value_type, f"{where} {item}")
    return out


# ---------------------------------------------------------------------------------------------- the parser
def _flags(f: dataclasses.Field) -> list[str]:
    if f.metadata.get("positional"):
        return [f.name]
    return list(f.metadata.get("flags") or ["--" + f.name.replace("_", "-")])


def _add(group, f: dataclasses.Field, tp) -> None:
    meta = f.metadata
    help = meta.get("help", "")
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if default is not dataclasses.MISSING and default not in (None, [], {}) and "default" not in help:
        help += f" (default: {' '.join(map(str, default)) if isinstance(default, (list, tuple)) else default})"
    help = argparse.SUPPRESS if meta.get("hidden") else help.replace("%", "%%")
    kwargs: dict[str, Any] = {"help": help, "default": None}
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    base, _ = _optional(tp)
    origin = typing.get_origin(base)
    if meta.get("positional"):
        kwargs["nargs"] = "?"
    elif not meta.get("positional"):
        kwargs["dest"] = f.name
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin in (list, tuple, dict):
        kwargs["nargs"] = meta.get("nargs", "+")
        if origin is dict and "metavar" not in kwargs:
            kwargs["metavar"] = "NAME=V1,V2" if typing.get_origin(typing.get_args(base)[1]) in (list, tuple) \
                else "NAME=VALUE"
    if meta.get("choices") and "metavar" not in kwargs:
        kwargs["metavar"] = "{" + ",".join(map(str, meta["choices"])) + "}"
    group.add_argument(*_flags(f), **kwargs)


def parser(cls, *, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of ``cls``: ``--config FILE`` and one flag per field (a nested dataclass's fields in a
    group of their own). Every flag's value is checked by :func:`parse`, not by argparse."""
    ap = argparse.ArgumentParser(prog=prog, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", metavar="FILE", help="a TOML or JSON file of these fields (flags override it)")
    hints = _hints(cls)
    nested = []
    for f in dataclasses.fields(cls):
        if _nested(hints[f.name]):
            nested.append(f)
        else:
            _add(ap, f, hints[f.name])
    for f in nested:
        group = ap.add_argument_group(f.name, f.metadata.get("help"))
        sub = _hints(hints[f.name])
        for g in dataclasses.fields(hints[f.name]):
            _add(group, g, sub[g.name])
    return ap


def _read(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CompressionError(f"config file {path} does not exist" if not p.exists() else
                               f"config file {path} is not a file")
    text = p.read_text()
    try:
        raw = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CompressionError(f"config file {path} is not valid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise CompressionError(f"config file {path} is not valid JSON: {e.msg} at line {e.lineno}, "
                               f"column {e.colno}") from None
    if not isinstance(raw, dict):
        raise CompressionError(f"config file {path} must hold a table of fields (a JSON object), not "
                               f"{type(raw).__name__}")
    return raw


def _values(cls, raw: dict, args: dict, where: str, prefix: str = "") -> dict:
    """The values of ``cls``'s fields given by the file (``raw``, checked) and the flags (``args``, text)."""
    hints, out = _hints(cls), {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _nested(tp):
            out[f.name] = _values(tp, raw.get(f.name, {}), args, where, f"{prefix}{f.name}.")
            continue
        if f.name in raw:
            out[f.name] = _check(raw[f.name], tp, f"{where}: {prefix}{f.name}" if where else f.name)
        text = args.get(f.name)
        if text is None:
            continue
        flag = _flags(f)[-1]
        base, _ = _optional(tp)
        origin = typing.get_origin(base)
        if origin is dict:
            out[f.name] = {**out.get(f.name, {}), **_items(text, base, flag)}
        elif origin in (list, tuple):
            out[f.name] = [_from_text(t, typing.get_args(base)[0], flag) for t in text]
        elif base is bool:
            out[f.name] = text
        else:
            out[f.name] = _from_text(text, tp, flag)
    return out


def _build(cls, values: dict, default=None):
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if _nested(hints[f.name]):
            if f.default_factory is not dataclasses.MISSING:
                inner = f.default_factory()
            elif f.default is not dataclasses.MISSING:
                inner = f.default
            else:
                inner = hints[f.name]()
            kwargs[f.name] = dataclasses.replace(inner, **values.get(f.name, {}))
        elif f.name in values:
            kwargs[f.name] = values[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise CompressionError(f"give {_flags(f)[-1].upper() if f.metadata.get('positional') else _flags(f)[-1]}"
                                   f" ({f.metadata.get('help', '')})")
    return cls(**kwargs)


def _validate(cls, config) -> None:
    """Choices and output directories."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(config, f.name)
        if _nested(hints[f.name]):
            _validate(hints[f.name], value)
            continue
        choices = f.metadata.get("choices")
        if choices and value is not None:
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                if v not in choices:
                    raise CompressionError(f"{_flags(f)[-1]} {v}: choose among {', '.join(map(str, choices))}")
        if f.metadata.get("directory") and value is not None and Path(value).exists() and not Path(value).is_dir():
            raise CompressionError(f"{_flags(f)[-1]} {value} is a file: give a directory (it is created if "
                                   "missing)")


def parse(cls, argv=None, *, prog: str | None = None, description: str | None = None):
    """An instance of ``cls`` from the defaults, then ``--config FILE``, then the flags of ``argv``."""
    args = vars(parser(cls, prog=prog, description=description).parse_args(argv))
    path = args.pop("config")
    raw = _read(path) if path else {}
    known = {f.name for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    unknown = sorted(set(raw) - known)
    for f in dataclasses.fields(cls):
        if _nested(hints[f.name]) and f.name in raw:
            if not isinstance(raw[f.name], dict):
                raise CompressionError(f"config file {path}: {f.name} = {raw[f.name]!r}: give a table ([{f.name}]"
                                       " in TOML)")
            inner = {g.name for g in dataclasses.fields(hints[f.name])}
            unknown += sorted(f"{f.name}.{k}" for k in set(raw[f.name]) - inner)
    if unknown:
        raise CompressionError(f"config file {path}: unknown keys {unknown}; see {prog or 'the script'} --help")
    config = _build(cls, _values(cls, raw, args, f"config file {path}" if path else ""))
    _validate(cls, config)
    return config


def console(main: Callable[[list[str] | None], Any], argv=None) -> int:
    """Run a script's ``main(argv)`` from the command line: a :class:`lc.CompressionError` is printed as
    ``error: …`` and gives exit status 2; anything ``main`` returns that is an int is the status, else 0."""
    try:
        status = main(argv)
    except lc.CompressionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0
