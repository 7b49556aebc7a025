"""experiments.cli: a typed config → flags + a TOML/JSON file; every mistake an lc.CompressionError before anything
runs (``error: …``, exit status 2 from the command line)."""
import json
import re
from dataclasses import dataclass

import pytest

import lc
from experiments import cli, plot, sweep, tradeoff
from experiments.cli import option
from experiments.rl import tradeoff as rl_tradeoff


@dataclass
class Small:
    steps: int = option(20, "LC steps")
    mu0: float = option(3e-3, "μ₀")
    names: list[str] = option(["a"], "names")
    values: dict[str, list[int | float]] = option({}, "values per name")
    flag: bool = option(True, "a switch")
    limit: int | None = option(None, "an optional integer")
    kind: str = option("x", "one of x, y", choices=("x", "y"))
    out: str = option("results", "output directory", directory=True)


def test_defaults_file_then_flags(tmp_path):
    assert cli.parse(Small, []) == Small()
    (tmp_path / "c.toml").write_text('steps = 7\nnames = ["b", "c"]\nmu0 = 1\n[values]\np = [0.1, 2]\n')
    c = cli.parse(Small, ["--config", str(tmp_path / "c.toml"), "--steps", "9", "--values", "q=1,0.5",
                          "--no-flag", "--limit", "3", "--kind", "y"])
    assert (c.steps, c.names, c.mu0, c.flag, c.limit, c.kind) == (9, ["b", "c"], 1, False, 3, "y")
    assert c.values == {"p": [0.1, 2], "q": [1, 0.5]} and isinstance(c.values["q"][0], int)   # numbers as written
    (tmp_path / "c.json").write_text(json.dumps({"limit": None, "names": []}))
    assert cli.parse(Small, ["--config", str(tmp_path / "c.json")]) == Small(names=[])


@pytest.mark.parametrize("text, match", [
    ('steps = "ten"\n', r"steps = 'ten': give an integer"),
    ("steps = 2.5\n", r"steps = 2.5: give an integer"),
    ('names = "a"\n', r"names = 'a': give a list of strings, e.g. names = \[\"a\"\]"),
    ("stepz = 3\n", r"unknown keys \['stepz'\]"),
    ("steps = 3\nmu0 = \n", r"not valid TOML: .*line 2"),
    ("[values]\np = [\"x\"]\n", r"values.p\[0\] = 'x': give a number"),
    ("flag = 1\n", r"flag = 1: give true or false"),
    ('kind = "z"\n', r"--kind z: choose among x, y"),
])
def test_config_file_mistakes(tmp_path, text, match):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(lc.CompressionError, match=match):
        cli.parse(Small, ["--config", str(tmp_path / "c.toml")])


def test_json_syntax_error_says_the_line(tmp_path):
    (tmp_path / "c.json").write_text('{"steps": 3,\n "mu0": }\n')
    with pytest.raises(lc.CompressionError, match="not valid JSON: Expecting value at line 2"):
        cli.parse(Small, ["--config", str(tmp_path / "c.json")])


@pytest.mark.parametrize("argv, match", [
    (["--steps", "ten"], "--steps ten: give an integer"),
    (["--steps", "2.5"], "--steps 2.5: give an integer"),
    (["--mu0", "x"], "--mu0 x: give a number"),
    (["--values", "p=abc"], "'abc' is not a number"),
    (["--values", "p=1,nan"], "'nan' is not a number"),
    (["--values", "p"], "write NAME=V1,V2"),
    (["--config", "missing.toml"], "config file missing.toml does not exist"),
])
def test_flag_mistakes(argv, match):
    with pytest.raises(lc.CompressionError, match=match):
        cli.parse(Small, argv)


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(lc.CompressionError, match="is a file: give a directory"):
        cli.parse(Small, ["--out", str(tmp_path / "f")])


@pytest.mark.parametrize("config, argv, match", [
    ('families = "pruning"\n', [], r"families = 'pruning': give a list"),
    ('steps = "ten"\n', [], r"steps = 'ten'"),
    ("[task]\nlr = \"fast\"\n", [], r"task.lr = 'fast': give a number"),
    ("[task]\nepochs_per_step = 1.5\n", [], r"task.epochs_per_step = 1.5: give an integer"),
    ("steps = 3\n", ["--values", "pruning=abc"], "not a number"),
    ("steps = [\n", [], "not valid TOML"),
])
def test_the_main_job_prints_the_error_and_runs_nothing(tmp_path, monkeypatch, capsys, config, argv, match):
    monkeypatch.setattr(sweep, "run", lambda *a: pytest.fail("ran"))
    (tmp_path / "c.toml").write_text(config)
    out = tmp_path / "out"
    assert tradeoff.main(["--config", str(tmp_path / "c.toml"), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(match, err) and not out.exists()
    (tmp_path / "file").write_text("")
    assert tradeoff.main(["--out", str(tmp_path / "file")]) == 2
    assert tradeoff.main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml does not exist" in capsys.readouterr().err


def test_every_script_takes_a_config_file_and_refuses_unknown_keys(tmp_path):
    (tmp_path / "c.toml").write_text("seedz = [0]\n")
    with pytest.raises(lc.CompressionError, match=r"unknown keys \['seedz'\]"):
        rl_tradeoff.main(["--config", str(tmp_path / "c.toml")])
    assert cli.console(rl_tradeoff.main, ["--config", str(tmp_path / "c.toml")]) == 2
    with pytest.raises(lc.CompressionError, match="does not exist"):
        plot.main([str(tmp_path / "rows.jsonl")])
    with pytest.raises(lc.CompressionError, match="give ROWS"):
        plot.main([])
