"""lfd13 installs anywhere: its wheel holds the package, its data files and shipped checkpoints.

The wheel is built as ``make wheel`` and the launch test build it (``pip wheel --no-deps
--no-build-isolation``, from a clean copy of the package's files). Installed from that wheel
into an environment that has the course's dependencies but no clone, every chapter's imports
and the loaders the chapters call (data, shipped checkpoints, the MiniLM encoder) work.
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

from benchmarks.launch import bare_env, build_wheel, chapter_imports, kernel_env, requirement_lines

ROOT = Path(__file__).resolve().parents[2]

# What the chapters load, called as the chapters call it (module names as of the package's public
# API; keep them here, in one place). Runs in an environment where lfd13 comes from the wheel.
LOADERS = """
import json, pathlib
import lfd13
from lfd13 import clip, finetune, mae, mlm, peft_tools, pretext, sft, shipped
from lfd13.data import load_corpus, load_digits, load_newsgroups
from lfd13.pretrained import load_text_encoder

root = pathlib.Path(lfd13.__file__).parent
assert "site-packages" in root.parts, f"lfd13 imported from {root}, not from the installed wheel"
load_digits(); load_corpus(); load_newsgroups()  # the shapes are generated: no files
loaders = {"mae_": mae.load_checkpoint, "clip_": clip.load_trained_clip, "bert-": mlm.load_trained_bert, "gpt-": sft.load_checkpoint,
           "pretext_": pretext.load_checkpoint, "lora_": peft_tools.load_adapter,
           "transfer_": finetune.load_source_cnn}
records = {finetune.COMPARISON: finetune.load_comparison, pretext.BENEFITS: pretext.load_benefits}  # the JSON file alone
names = sorted(p.stem for p in (root / "checkpoints").glob("*.json"))
for name in names:
    if json.loads((root / "checkpoints" / f"{name}.json").read_text())["kind"] == "record":
        assert name in records, f"no loader known for the shipped record {name}: add one to LOADERS in tests/test_packaging.py"
        records[name](name)
        continue
    [load] = [f for prefix, f in loaders.items() if name.startswith(prefix)] or [None]
    assert load is not None, f"no loader known for the shipped checkpoint {name}: add one to LOADERS in tests/test_packaging.py"
    load(name, device="cpu")
tokenizer, encoder = load_text_encoder(device="cpu")
print("ok", len(names), "checkpoints", type(encoder).__name__)
"""


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


@pytest.mark.slow
def test_installed_wheel_works_without_a_clone(wheel, tmp_path):
    python = bare_env(tmp_path / "env")  # raises unless `import lfd13` fails there first
    env = kernel_env({"PIP_NO_INDEX": "1"})  # every dependency is already present: only lfd13 is installed
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"lfd13[notebooks] @ {wheel.as_uri()}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = chapter_imports() + "\n" + LOADERS
    run = subprocess.run([str(python), "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip().startswith("ok"), run.stdout[-2000:] + run.stderr[-4000:]
