"""lfd13 installs anywhere: its wheel holds the package, its data files, shipped checkpoints and results.

The wheel is built as ``make wheel`` and the launch test build it (``pip wheel --no-deps
--no-build-isolation``, from a clean copy of the package's files). That an environment with the
course's dependencies but no clone runs every chapter's imports and loaders from the installed
wheel is the launch test's (``tests/integration/test_launch.py``).
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from benchmarks.launch import build_wheel, requirement_lines

ROOT = Path(__file__).resolve().parents[2]



def wheel_version() -> str:
    """``__version__`` as written in lfd13/__init__.py, read without importing it."""
    tree = ast.parse((ROOT / "lfd13" / "__init__.py").read_text())
    [value] = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in n.targets)]
    return value


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


def test_version_is_single_sourced(wheel):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml must not repeat the version: it reads lfd13.__version__"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lfd13.__version__"}
    version = wheel_version()
    with zipfile.ZipFile(wheel) as zf:
        meta = Parser().parsestr(zf.read(f"lfd13-{version}.dist-info/METADATA").decode())
    assert meta["Version"] == version and wheel.name.startswith(f"lfd13-{version}-")


def test_wheel_holds_every_tracked_file_of_the_package(wheel):
    tracked = subprocess.run(["git", "ls-files", "lfd13"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    tracked = [f for f in tracked if (ROOT / f).is_file()]  # a file deleted in the working tree is not in the wheel
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        missing = [f for f in tracked if f not in names]
        assert not missing, f"the wheel lacks {missing}: add them to [tool.setuptools.package-data] in pyproject.toml"
        for f in tracked:  # the bytes too: data files and checkpoints are checked by sha256 when loaded
            if not f.endswith(".py"):
                assert hashlib.sha256(zf.read(f)).digest() == hashlib.sha256((ROOT / f).read_bytes()).digest(), f
        outside = sorted({n.split("/")[0] for n in names} - {"lfd13", f"lfd13-{wheel_version()}.dist-info"})
    assert not outside, f"the wheel holds more than the package: {outside}"
    kinds = {"checkpoints": [f for f in tracked if f.startswith("lfd13/checkpoints/")],
             "results": [f for f in tracked if f.startswith("lfd13/results/") and f.endswith(".json")],
             "data files": [f for f in tracked if f.startswith("lfd13/data/files/")]}
    assert all(kinds.values()), kinds


def test_wheel_requires_what_requirements_txt_pins(wheel):
    """The package's dependency ranges are those of requirements.txt, so installing it never moves the course's versions."""
    course = {Requirement(ln).name.lower(): Requirement(ln).specifier for ln in requirement_lines(ROOT / "requirements.txt") if not ln.startswith("-")}
    with zipfile.ZipFile(wheel) as zf:
        meta = Parser().parsestr(zf.read(f"lfd13-{wheel_version()}.dist-info/METADATA").decode())
    for line in meta.get_all("Requires-Dist"):
        req = Requirement(line)
        if req.name.lower() in course:
            assert req.specifier == course[req.name.lower()], f"{req.name}: wheel {req.specifier}, requirements.txt {course[req.name.lower()]}"
        else:
            assert req.marker is not None and "extra" in str(req.marker), f"{req.name} is required by lfd13 but missing from requirements.txt"
