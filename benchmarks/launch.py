"""Run chapters as a new reader would: one notebook alone, in a Python without lfd13.

Opened on Colab, in a bare Jupyter or from the download button, a chapter notebook has no
clone and no ``.venv`` beside it; its setup cell (``book/_ext/setup_cell.py``) installs
``lfd13``. This script reproduces that here, offline:

1. build the ``lfd13`` wheel from the working tree (``pip wheel --no-build-isolation``: the
   project venv's setuptools, no network);
2. make a *bare* environment: a fresh venv whose ``.pth`` file puts the project venv's
   site-packages on ``sys.path`` — the course's dependencies are there, but a path listed in a
   ``.pth`` file is not scanned for ``.pth`` files itself, so the editable install's hook
   never runs and ``import lfd13`` fails (checked before anything else);
3. copy one chapter notebook, alone, into an empty folder, with the setup cell as its first cell;
4. execute it with nbclient on a kernel of the bare environment, with ``LFD13_INSTALL_SOURCE``
   pointing at the wheel (as a ``file://`` URL) and pip kept off the network
   (``PIP_NO_INDEX=1``: every dependency is already present, only lfd13 is installed).

The chapter must run to the end, its setup cell must report installing lfd13, and lfd13 must
then be imported from the bare environment, not from the clone.

Usage::

    python benchmarks/launch.py                      # every chapter; records "launch" in benchmarks/results.json
    python benchmarks/launch.py book/02_bert.ipynb   # some chapters (merged into the record; --no-record: not at all)

``tests/integration/test_launch.py`` runs one chapter this way as part of ``make test``;
``make launch-all`` runs them all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import RESULTS, update_results  # noqa: E402
sys.path.insert(0, str(ROOT / "book" / "_ext"))
sys.path.insert(0, str(ROOT))
import setup_cell  # noqa: E402  (book/_ext/setup_cell.py: the cell and its install-source variable)
from benchmarks.notebooks import ENV as NOTEBOOK_ENV  # noqa: E402

KERNEL_NAME = "lfd13-bare"
CELL_TIMEOUT_S = int(os.environ.get("LFD13_CELL_TIMEOUT", "600"))
#: What the book build, the chapter checks and benchmarks/notebooks.py give every kernel (defined there, once).
OFFLINE_ENV = NOTEBOOK_ENV


def source_files(root: Path = ROOT) -> list[str]:
    """What a clone of the working tree holds for the package: pyproject.toml, README.md and lfd13/ (tracked or new, not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "pyproject.toml", "README.md", "lfd13"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    return sorted(f for f in out if f and (root / f).is_file())


def requirement_lines(path: Path) -> list[str]:
    """The requirements and options of a requirements file, comments and blank lines dropped."""
    lines = (ln.split("#", 1)[0].strip() for ln in Path(path).read_text().splitlines())
    return [ln for ln in lines if ln]


def chapter_imports(root: Path = ROOT) -> str:
    """Every top-level import statement of every chapter notebook, as one script."""
    import ast

    import nbformat

    found: list[str] = []
    for nb_path in sorted((root / "book").glob("[0-9]*.ipynb")):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:  # IPython magics: no import there anyway
                continue
            found += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(dict.fromkeys(found))


def build_wheel(out_dir: Path, *, root: Path = ROOT) -> Path:
    """Build the lfd13 wheel from a clean copy of the package's files into ``out_dir``; returns the wheel's path.

    The copy keeps setuptools' ``build/`` and ``*.egg-info`` out of the working tree and stale
    files out of the wheel. ``--no-build-isolation`` uses this environment's setuptools, so the
    build needs no network (``python -m build --no-isolation`` is equivalent).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lfd13-src-") as src:
        for f in source_files(root):
            (Path(src) / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / f, Path(src) / f)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out_dir)],
            capture_output=True, text=True,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"building the wheel failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    wheels = sorted(out_dir.glob("lfd13-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one lfd13 wheel in {out_dir}, found {[w.name for w in wheels]}")
    return wheels[0]


def _site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


def bare_env(path: Path) -> Path:
    """A venv at ``path`` that sees this environment's packages but not lfd13; returns its python.

    Raises:
        RuntimeError: when ``import lfd13`` works there anyway (the check that makes the launch meaningful).
    """
    path = Path(path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (_site_packages(path) / "_course_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    probe = subprocess.run([str(python), "-c", "import lfd13"], cwd=path, env=kernel_env({}), capture_output=True, text=True)
    if probe.returncode == 0 or "No module named 'lfd13'" not in probe.stderr:
        raise RuntimeError(f"`import lfd13` must fail in the bare environment {path}, got rc={probe.returncode}: {probe.stderr[-500:]}")
    return python


def kernel_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a bare kernel: offline, nothing pointing into the clone."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    return {**env, **OFFLINE_ENV, **extra}


def kernelspec(python: Path, kernels_dir: Path) -> Path:
    """Write a kernelspec named ``lfd13-bare`` that starts ``python``'s ipykernel; returns its folder."""
    spec_dir = Path(kernels_dir) / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (no lfd13)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


@dataclass
class LaunchResult:
    """One chapter run alone in a bare environment."""

    notebook: str  # file name
    seconds: float | None  # wall time of the whole notebook, setup cell included
    setup_seconds: float | None  # wall time of the setup cell (the install)
    setup_output: str  # what the setup cell printed
    lfd13_file: str | None  # where lfd13 was imported from afterwards (inside the bare env)
    error: str | None  # the failing cell's error, or None


def launch(notebook: Path, workdir: Path, *, wheel: Path) -> LaunchResult:
    """Run ``notebook`` alone in ``workdir`` on a fresh bare environment, installing lfd13 from ``wheel``."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from traitlets import default

    workdir = Path(workdir)
    python = bare_env(workdir / "env")
    kernels_dir = str(kernelspec(python, workdir / "kernels").parent)

    class BareKernelManager(AsyncKernelManager):
        """Finds the bare environment's kernelspec; nbclient owns it, so it shuts the kernel down."""

        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[kernels_dir])

    folder = workdir / "reader"
    folder.mkdir()
    nb = nbformat.read(notebook, as_version=4)
    setup_cell.apply(nb)  # a no-op once the chapter holds the current cell
    copy = folder / Path(notebook).name
    nbformat.write(nb, copy)
    assert sorted(p.name for p in folder.iterdir()) == [copy.name]

    env = kernel_env({setup_cell.SOURCE_VARIABLE: Path(wheel).resolve().as_uri(), "PIP_NO_INDEX": "1"})
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, kernel_manager_class=BareKernelManager, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(folder)}}, record_timing=True)
    error = None
    start = time.perf_counter()
    try:
        client.execute(env=env)  # nbclient starts the kernel in resources["metadata"]["path"]
    except Exception as err:  # reported in the result, not hidden
        error = f"{type(err).__name__}: {str(err).strip()[-3000:] or repr(err)}"
    seconds = time.perf_counter() - start
    nbformat.write(nb, copy)  # the executed copy, for inspection

    first = nb.cells[0]
    output = "".join(o.get("text", "") for o in first.get("outputs", []) if o.get("output_type") == "stream")
    setup_seconds = None
    timing = first.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
        from datetime import datetime

        t0, t1 = (datetime.fromisoformat(timing[k].replace("Z", "+00:00")) for k in ("iopub.execute_input", "shell.execute_reply"))
        setup_seconds = round((t1 - t0).total_seconds(), 1)
    where = subprocess.run([str(python), "-c", "import lfd13; print(lfd13.__file__)"], cwd=folder, env=env, capture_output=True, text=True)
    return LaunchResult(
        notebook=Path(notebook).name, seconds=round(seconds, 1), setup_seconds=setup_seconds, setup_output=output.strip(),
        lfd13_file=where.stdout.strip() or None, error=error,
    )


def check(result: LaunchResult, env_root: Path) -> list[str]:
    """What is wrong with a launch: an error, no install reported, lfd13 found outside the bare environment."""
    problems = []
    if result.error:
        problems.append(f"the notebook failed: {result.error}")
    if "Installed:" not in result.setup_output or "lfd13 " not in result.setup_output:
        problems.append(f"the setup cell did not report installing lfd13: {result.setup_output!r}")
    if not result.lfd13_file or not Path(result.lfd13_file).resolve().is_relative_to(Path(env_root).resolve()):
        problems.append(f"lfd13 was imported from {result.lfd13_file}, not from the bare environment {env_root}")
    return problems


def save_results(records: dict[str, dict]) -> None:
    """Read-modify-write the ``"launch"`` key of benchmarks/results.json only (merged per chapter, so a partial run adds to it)."""
    def merged(data: dict) -> dict:
        notebooks = {**data.get("launch", {}).get("notebooks", {}), **records}
        return {
            "notebooks": notebooks,
            "all_ok": all(r["ok"] for r in notebooks.values()),
            "complete": sorted(notebooks) == sorted(p.stem for p in setup_cell.chapters()),
            "how": "each chapter alone in an empty folder, kernel in a venv without lfd13; its setup cell installs the wheel",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
            "total_seconds": round(sum(r["seconds"] or 0.0 for r in notebooks.values()), 1),
        }

    update_results("launch", merged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters to run (default: every book/[0-9]*.ipynb)")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/results.json")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or setup_cell.chapters()
    records: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="lfd13-launch-") as tmp:
        wheel = build_wheel(Path(tmp) / "dist")
        print(f"built {wheel.name}")
        print(f"{'notebook':26} {'total (s)':>9} {'setup (s)':>9}  status", flush=True)
        for path in paths:
            workdir = Path(tmp) / path.stem
            workdir.mkdir()
            result = launch(path, workdir, wheel=wheel)
            problems = check(result, workdir / "env")
            records[path.stem] = {**asdict(result), "ok": not problems, "problems": problems}
            status = "ok" if not problems else "FAILED: " + "; ".join(problems)[:400]
            if problems:  # keep the executed copy for a look: _build/launch/<chapter>.ipynb
                kept = ROOT / "_build" / "launch" / path.name
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(workdir / "reader" / path.name, kept)
                status += f" (executed copy: {kept.relative_to(ROOT)})"
            print(f"{path.stem:26} {result.seconds or 0:9.1f} {result.setup_seconds or 0:9.1f}  {status}", flush=True)
            shutil.rmtree(workdir, ignore_errors=True)
            if not args.no_record:  # after every chapter: a long run that is stopped keeps what it measured
                save_results({path.stem: records[path.stem]})
    if not args.no_record:
        print(f"wrote the \"launch\" key of {RESULTS.relative_to(ROOT)}")
    return 0 if all(r["ok"] for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
