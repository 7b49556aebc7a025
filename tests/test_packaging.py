"""A plain (non-editable) install must carry every subpackage: build the wheel and look inside."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _packages(root: Path, top: str) -> set[str]:
    return {str(p.parent.relative_to(root)).replace("/", ".") for p in (root / top).rglob("__init__.py")}


def test_wheel_contains_every_subpackage(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (whl,) = tmp_path.glob("lc-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    in_wheel = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("__init__.py")}
    expected = set().union(*(_packages(ROOT, top) for top in ("lc", "tasks", "experiments")))
    assert expected <= in_wheel, expected - in_wheel
    assert not any(n.startswith("tests/") for n in names)
