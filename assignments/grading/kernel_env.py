"""The grader's kernel environment: torch, numpy, matplotlib and ipykernel, nothing else.

Instructor-only. Students' notebooks run in a Python environment that holds only the packages
the assignments need, so an answer cannot delegate to the libraries the hidden tests compare
with (transformers, open_clip, peft) or to ``lfd13``. Instead of installing torch a second time,
the environment is a folder of symbolic links to the distributions of the project's venv:

    <venv>/lfd13-kernel-env/
        pyvenv.cfg                          home = the base interpreter's bin/
        manifest.json                       the distributions and every linked path
        lib/python3.X/site-packages/<top>   -> <venv>/lib/python3.X/site-packages/<top>

The distributions are the closure of ``ROOTS`` under their declared requirements (markers
evaluated here). The sandbox (``kernel_launcher.py``) mounts exactly the linked targets, so the
kernel cannot reach anything else of the venv even by path.

    python assignments/grading/kernel_env.py build     # (re)build it; `make grader-env` does this
    python assignments/grading/kernel_env.py check     # print the manifest's packages
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOTS = ("torch", "numpy", "matplotlib", "ipykernel", "jupyter_client")
FORBIDDEN = ("transformers", "open_clip_torch", "peft", "lfd13", "timm", "accelerate", "huggingface_hub",
             "nbgrader")
VERSION = 3  # bump to force a rebuild when the layout changes


def default_path() -> Path:
    return Path(sys.prefix) / "lfd13-kernel-env"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots=ROOTS) -> dict[str, metadata.Distribution]:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment()
    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _norm(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement that is not installed
        found[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    bad = sorted(set(found) & {_norm(f) for f in FORBIDDEN})
    if bad:
        raise SystemExit(f"the kernel environment would contain {bad}: refusing to build it")
    return found


def top_level(dist: metadata.Distribution, site: Path) -> set[str]:
    """The first path component, under site-packages, of every file the distribution installed."""
    tops = set()
    for f in dist.files or []:
        parts = Path(f).parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(".pth"):
            continue
        if (site / parts[0]).exists():
            tops.add(parts[0])
    return tops


def private(path: Path) -> bool:
    """True when a folder above ``path`` cannot be searched by other users (e.g. /root)."""
    return any(not p.stat().st_mode & 0o001 for p in [*path.resolve().parents][::-1] if p != path)


def copy_interpreter(base: Path, exe: Path, pyver: str, dest: Path) -> Path:
    """A copy of the base interpreter (executable, libpython, standard library without its
    site-packages and tests), for when it lives where other users cannot reach it."""
    skip = shutil.ignore_patterns("site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo",
                                  "ensurepip", "lib2to3", "config-*")
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(exe, dest / "bin" / exe.name)
    (dest / "lib").mkdir()
    for lib in (base / "lib").glob("libpython*"):
        shutil.copy2(lib, dest / "lib" / lib.name, follow_symlinks=False)
    shutil.copytree(base / "lib" / pyver, dest / "lib" / pyver, ignore=skip, symlinks=True)
    return dest


def build(dest: Path | None = None) -> Path:
    dest = dest or default_path()
    site = Path(sysconfig.get_paths()["purelib"])
    dists = closure()
    tops = sorted({t for d in dists.values() for t in top_level(d, site)})
    if shutil.rmtree(dest, ignore_errors=True) or dest.exists():
        raise SystemExit(f"could not remove {dest}")
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target_site = dest / "lib" / pyver / "site-packages"
    target_site.mkdir(parents=True)
    base_exe = Path(sys._base_executable).resolve()  # noqa: SLF001 - the interpreter behind the venv
    (dest / "bin").mkdir()
    (dest / "bin" / "python").symlink_to(base_exe)
    (dest / "pyvenv.cfg").write_text(f"home = {base_exe.parent}\ninclude-system-site-packages = false\n"
                                     f"version = {sys.version.split()[0]}\n")
    links = {}
    for top in tops:
        (target_site / top).symlink_to(site / top)
        links[top] = str((site / top).resolve())
    base = Path(sys.base_prefix).resolve()
    # the sandbox binds the interpreter from here (a copy when other users cannot reach the original)
    source = copy_interpreter(base, base_exe, pyver, dest / "interpreter") if private(base) else base
    manifest = {"version": VERSION, "python": str(base_exe), "base_prefix": str(base),
                "interpreter_source": str(source),
                "pyver": pyver, "site": str(target_site), "links": links,
                "distributions": sorted(f"{d.metadata['Name']}=={d.version}" for d in dists.values())}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return dest


def load(dest: Path | None = None, *, rebuild: bool = True) -> dict:
    """The manifest of the kernel environment, building it first when missing or stale."""
    dest = dest or default_path()
    path = dest / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        stale = (manifest.get("version") != VERSION or not all(os.path.exists(t) for t in manifest["links"].values())
                 or not os.path.exists(manifest.get("interpreter_source", "")))
    except (OSError, ValueError, KeyError):
        stale = True
    if stale:
        if not rebuild:
            raise FileNotFoundError(f"no kernel environment at {dest}: run `make grader-env`")
        build(dest)
        manifest = json.loads(path.read_text())
    manifest["root"] = str(dest)
    return manifest


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "build":
        where = build()
        m = load(where, rebuild=False)
        print(f"kernel environment: {where} ({len(m['distributions'])} distributions, {len(m['links'])} links)")
    else:
        m = load(rebuild=False)
        print("\n".join(m["distributions"]))
