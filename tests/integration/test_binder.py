"""Binder's configuration (binder/) installs a CPU torch and the course, and every chapter imports.

Binder itself (mybinder.org, repo2docker) cannot be reached from here, nor can PyTorch's CPU
index. What is checked:

- statically: the files Binder reads sit in ``binder/`` at the repository root; torch and
  torchvision come from PyTorch's CPU index only, with the ranges of
  ``requirements.txt``; ``postBuild`` installs the checkout as ``.[notebooks]`` (not editable);
  the Python version is one ``pyproject.toml`` allows;
- by a real install into a fresh, empty venv (``slow``): ``binder/requirements.txt`` with its
  CPU index swapped for the CPU build of torch that lies on this machine's disk
  (``LFD13_TORCH_CPU_WHEELS``, default ``/opt/wheels``; the test is skipped where there is none),
  then ``binder/postBuild`` itself, run in the root of a copy of the repository (what a clone
  holds of pyproject.toml, README.md, lfd13/ and binder/), as repo2docker runs it. The
  environment must end with a CPU torch, no CUDA libraries, lfd13 imported from site-packages
  with its data and checkpoints, and — where a CPU build of torchvision stands in too (PyPI's
  torchvision is built against CUDA torch and cannot load its operators on a CPU one) — every
  chapter's import statements working.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from benchmarks.launch import chapter_imports, requirement_lines, source_files

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def specifiers(lines: list[str]) -> dict[str, str]:
    reqs = [Requirement(ln) for ln in lines if not ln.startswith("-")]
    return {r.name.lower(): str(r.specifier) for r in reqs}


def test_binder_files_are_at_the_repository_root():
    for name in ("requirements.txt", "postBuild", "runtime.txt"):
        assert (BINDER / name).is_file(), f"binder/{name} is missing"
    assert os.access(BINDER / "postBuild", os.X_OK), "binder/postBuild must be executable (git update-index --chmod=+x)"
    mode = subprocess.run(["git", "ls-files", "-s", "binder/postBuild"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not mode or mode[0] == "100755", f"binder/postBuild is committed without its executable bit: {mode}"


def test_torch_comes_from_the_cpu_index_with_the_course_ranges():
    lines = requirement_lines(BINDER / "requirements.txt")
    options = [ln for ln in lines if ln.startswith("-")]
    assert options == [f"--index-url {CPU_INDEX}"], f"binder/requirements.txt must take torch from PyTorch's CPU index only, got {options}"
    binder = specifiers(lines)
    course = specifiers(requirement_lines(ROOT / "requirements.txt"))
    assert set(binder) == {"torch", "torchvision"}, f"binder/requirements.txt holds the CPU builds only, got {sorted(binder)}"
    for name, spec in binder.items():
        assert spec == course[name], f"{name}: binder/requirements.txt has {spec!r}, requirements.txt has {course[name]!r}"


def test_post_build_installs_this_checkout_with_the_notebook_extras():
    script = (BINDER / "postBuild").read_text()
    assert script.startswith("#!/bin/bash") and "set -euo pipefail" in script
    installs = re.findall(r"^pip install (.*)$", script, flags=re.M)
    assert installs == ['--no-cache-dir ".[notebooks]"'], installs
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "notebooks" in extras


def test_runtime_is_a_python_the_package_supports():
    from packaging.specifiers import SpecifierSet

    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
    allowed = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert runtime.removeprefix("python-") + ".0" in allowed


def local_cpu_torch() -> list[Path]:
    folder = Path(os.environ.get("LFD13_TORCH_CPU_WHEELS", "/opt/wheels"))
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return sorted(folder.glob(f"torch-*+cpu-{tag}-*.whl")) if folder.is_dir() else []


@pytest.mark.slow
def test_binder_configuration_installs_in_a_fresh_environment(tmp_path):
    wheels = local_cpu_torch()
    if not wheels:
        pytest.skip("no CPU build of torch on this machine's disk to stand in for PyTorch's CPU index (set LFD13_TORCH_CPU_WHEELS)")
    venv = tmp_path / "binder-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv), PIP_DISABLE_PIP_VERSION_CHECK="1")

    # 1. binder/requirements.txt, its CPU index replaced by the CPU wheels on this disk: a
    #    constraint lets pip choose among those builds of torch only, as the CPU index would.
    reqs = (BINDER / "requirements.txt").read_text().replace(f"--index-url {CPU_INDEX}", f"--find-links {wheels[0].parent}")
    (tmp_path / "requirements.txt").write_text(reqs)
    cpu_versions = sorted({w.name.split("-")[1] for w in wheels})
    (tmp_path / "cpu-only.txt").write_text(f"torch=={cpu_versions[-1]}\n")
    step1 = subprocess.run(
        ["pip", "install", "--quiet", "-r", str(tmp_path / "requirements.txt"), "-c", str(tmp_path / "cpu-only.txt")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert step1.returncode == 0, step1.stderr[-4000:]

    # 2. binder/postBuild itself, in the root of a copy of the repository, as repo2docker runs it.
    clone = tmp_path / "repo"
    for f in [*source_files(), *(str(p.relative_to(ROOT)) for p in BINDER.iterdir())]:
        (clone / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, clone / f)
    step2 = subprocess.run(["bash", "binder/postBuild"], cwd=clone, env=env, capture_output=True, text=True)
    assert step2.returncode == 0, step2.stdout[-2000:] + step2.stderr[-4000:]

    # 3. The result: a CPU torch, no CUDA libraries, lfd13 from site-packages, every chapter's imports.
    freeze = subprocess.run(["pip", "list", "--format", "json"], env=env, capture_output=True, text=True, check=True)
    installed = {d["name"].lower(): d["version"] for d in json.loads(freeze.stdout)}
    assert installed["torch"].endswith("+cpu"), installed["torch"]
    assert not [n for n in installed if n.startswith("nvidia")], sorted(n for n in installed if n.startswith("nvidia"))
    assert "lfd13" in installed
    # Chapter imports need a torchvision built for the CPU torch (the CPU index has one, "+cpu");
    # PyPI's torchvision is built against CUDA and fails to load its operators on a CPU torch.
    matching_torchvision = installed.get("torchvision", "").endswith("+cpu")
    probe = f"""
import lfd13, lfd13.data, pathlib
root = pathlib.Path(lfd13.__file__).parent
assert "site-packages" in root.parts, root
assert (root / "checkpoints").is_dir() and any((root / "checkpoints").iterdir()), "no shipped checkpoints"
assert (root / "data" / "files").is_dir() and any((root / "data" / "files").iterdir()), "no data files"
lfd13.data.load_corpus()
{chapter_imports() if matching_torchvision else ""}
import torch; print("ok", lfd13.__version__, torch.__version__)
"""
    book = tmp_path / "book"  # Binder opens a chapter in book/: not the repository root, where ./lfd13 would shadow the install
    book.mkdir()
    run = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=book, env={**env, "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stdout[-2000:] + run.stderr[-4000:]
    size_mb = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) / 2**20
    print(f"binder environment: {size_mb:.0f} MB, torch {installed['torch']}, torchvision {installed.get('torchvision')}, "
          f"lfd13 {installed['lfd13']}; chapter imports " + ("checked" if matching_torchvision else
          "not checked: no CPU build of torchvision on this disk to stand in for the CPU index's"))
    shutil.rmtree(venv, ignore_errors=True)
