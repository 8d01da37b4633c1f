"""The setup cell that opens every chapter notebook, rendered from ``_config.yml``.

A chapter runs wherever its notebook is opened: in this repository's ``.venv``, on Binder
(whose image installs ``lfd13``), on Colab or in a bare Jupyter (where nothing has). Its first
cell therefore installs ``lfd13`` where it is missing and does nothing where it is found. The
install source is the project's repository as ``_config.yml`` configures it
(``repository.url`` and ``repository.branch``, the same settings the launch buttons use);
the environment variable ``LFD13_INSTALL_SOURCE`` replaces it (a fork, a local wheel as a
``file://`` URL).

The cell carries the tag ``remove-cell``: the rendered page shows no trace of it (there is
nothing to install on a web page), while the notebook that Colab, Binder and the download
button hand out starts with it.

Usage::

    python book/_ext/setup_cell.py            # print the cell
    python book/_ext/setup_cell.py --write    # insert or update it as the first cell of every chapter
    python book/_ext/setup_cell.py --check    # exit 1 if a chapter's first cell is not the current cell
"""

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "_config.yml"
#: Cell id of the setup cell (nbformat >= 4.5 ids: letters, digits, ``-`` and ``_``).
CELL_ID = "lfd13-setup"
#: Tags that hide it in the rendered book (myst-nb / Jupyter Book 1.x).
TAGS = ["remove-cell"]
#: Environment variable that replaces the install source.
SOURCE_VARIABLE = "LFD13_INSTALL_SOURCE"

# The cell itself: standard library only, reader-facing, at most 15 lines.
TEMPLATE = string.Template('''\
# Setup: installs the course package lfd13 where it is missing (Colab, a bare Jupyter); elsewhere it does nothing.
import importlib.util, json, os, subprocess, sys, tempfile

if importlib.util.find_spec("lfd13") is None:
    source = os.environ.get("$variable", "git+$url@$branch")
    requirement = f"lfd13[notebooks] @ {source}"
    print(f"Installing {requirement} and what it needs; this takes a minute or two...")
    report = os.path.join(tempfile.mkdtemp(), "installed.json")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--report", report, requirement],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip could not install {requirement}:\\n{pip.stderr[-3000:]}")
    installed = [f"{p['metadata']['name']} {p['metadata']['version']}" for p in json.load(open(report))["install"]]
    print("Installed:", ", ".join(installed) or "nothing new")
    importlib.invalidate_caches()''')

MARKER = "# Setup: installs the course package lfd13"


def repository(config_path: Path = CONFIG) -> tuple[str, str]:
    """``(url, branch)`` of the ``repository`` section of ``_config.yml``."""
    import yaml

    repo = (yaml.safe_load(config_path.read_text()) or {}).get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch")
    if not url or not branch:
        raise ValueError(f"{config_path}: the repository section needs `url` and `branch` (found {repo!r})")
    return str(url).rstrip("/"), str(branch)


def render(config_path: Path = CONFIG) -> str:
    """The setup cell's source for the repository that ``config_path`` configures."""
    url, branch = repository(config_path)
    return TEMPLATE.substitute(url=url, branch=branch, variable=SOURCE_VARIABLE)


def is_setup_cell(cell: Any) -> bool:
    """Whether ``cell`` is a setup cell (of this or an earlier version of the template)."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return cell.get("cell_type") == "code" and (cell.get("id") == CELL_ID or source.startswith(MARKER))


def setup_cell(source: str) -> Any:
    """A fresh nbformat code cell holding ``source``, tagged, with no outputs."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source=source, metadata={"tags": list(TAGS)})
    cell["id"] = CELL_ID
    return cell


def apply(nb: Any, source: str | None = None) -> bool:
    """Make ``nb``'s first cell the setup cell (inserted, or updated in place). Returns whether ``nb`` changed."""
    source = render() if source is None else source
    cells = nb["cells"]
    old = [i for i, c in enumerate(cells) if is_setup_cell(c)]
    if old == [0] and cells[0]["source"] == source and cells[0].get("metadata", {}).get("tags") == TAGS and not cells[0].get("outputs"):
        return False
    for i in reversed(old):  # a stale copy anywhere goes; the current one goes first
        del cells[i]
    cells.insert(0, setup_cell(source))
    if nb.get("nbformat_minor", 5) < 5:  # ids need nbformat 4.5
        nb["nbformat_minor"] = 5
    return True


def chapters(root: Path = ROOT) -> list[Path]:
    """The chapter notebooks: ``book/[0-9]*.ipynb``."""
    return sorted((root / "book").glob("[0-9]*.ipynb"))


def write(paths: list[Path], source: str | None = None) -> list[Path]:
    """Apply the setup cell to each notebook file; returns those that changed."""
    import nbformat

    source = render() if source is None else source
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if apply(nb, source):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def stale(paths: list[Path], source: str | None = None) -> list[Path]:
    """The notebooks whose first cell is not the current setup cell."""
    import nbformat

    source = render() if source is None else source
    return [p for p in paths if apply(nbformat.read(p, as_version=4), source)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: every book/[0-9]*.ipynb)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="insert or update the cell as each notebook's first cell")
    group.add_argument("--check", action="store_true", help="exit 1 if a notebook's first cell is not the current cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or chapters()
    if args.write:
        for path in write(paths):
            print(f"updated {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return 0
    if args.check:
        bad = stale(paths)
        for path in bad:
            print(f"{path}: first cell is not the current setup cell; run python book/_ext/setup_cell.py --write", file=sys.stderr)
        return 1 if bad else 0
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
