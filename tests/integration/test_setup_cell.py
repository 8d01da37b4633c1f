"""Every chapter opens with the setup cell, rendered from ``_config.yml`` (book/_ext/setup_cell.py).

The cell must do nothing where lfd13 is importable, install ``lfd13[notebooks]`` from the
configured repository elsewhere (or from ``LFD13_INSTALL_SOURCE``), say what it installed, and
stay short, standard-library only and hidden in the rendered book.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import setup_cell  # noqa: E402


def run_cell(source: str, *, lfd13_found: bool, monkeypatch, report: list[dict] | None = None) -> tuple[str, list[list[str]]]:
    """Execute the cell's source with ``find_spec("lfd13")`` and pip faked; returns (stdout, pip commands)."""
    calls: list[list[str]] = []
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "lfd13":
            return real_find_spec("lfd13") if lfd13_found else None
        return real_find_spec(name, *args, **kwargs)

    def fake_run(cmd, **kwargs):
        calls.append(list(cmd))
        path = cmd[cmd.index("--report") + 1]
        Path(path).write_text(json.dumps({"install": report or []}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(subprocess, "run", fake_run)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<setup cell>", "exec"), {})
    return out.getvalue(), calls


def test_cell_installs_from_the_configured_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    source = setup_cell.render()
    assert f'"git+{config["url"].rstrip("/")}@{config["branch"]}"' in source
    assert setup_cell.SOURCE_VARIABLE in source


def test_cell_follows_the_configuration(tmp_path):
    cfg = tmp_path / "_config.yml"
    cfg.write_text("title: x\nrepository:\n  url: https://example.org/someone/fork/\n  branch: spring-2027\n")
    assert '"git+https://example.org/someone/fork@spring-2027"' in setup_cell.render(cfg)
    cfg.write_text("title: x\n")
    with pytest.raises(ValueError, match="repository"):
        setup_cell.render(cfg)


def test_cell_is_short_plain_python_from_the_standard_library():
    source = setup_cell.render()
    assert len(source.splitlines()) <= 15
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert "test" not in source.lower()


def test_cell_does_nothing_where_lfd13_is_installed(monkeypatch):
    out, calls = run_cell(setup_cell.render(), lfd13_found=True, monkeypatch=monkeypatch)
    assert out == "" and calls == []


def test_cell_installs_lfd13_where_it_is_missing_and_says_what_it_installed(monkeypatch):
    monkeypatch.delenv(setup_cell.SOURCE_VARIABLE, raising=False)
    report = [{"metadata": {"name": "lfd13", "version": "0.1.0"}}, {"metadata": {"name": "open_clip_torch", "version": "3.2.0"}}]
    out, calls = run_cell(setup_cell.render(), lfd13_found=False, monkeypatch=monkeypatch, report=report)
    url, branch = setup_cell.repository()
    assert len(calls) == 1 and calls[0][:4] == [sys.executable, "-m", "pip", "install"]
    assert calls[0][-1] == f"lfd13[notebooks] @ git+{url}@{branch}"
    assert "Installed: lfd13 0.1.0, open_clip_torch 3.2.0" in out


def test_the_install_source_can_be_overridden(monkeypatch):
    monkeypatch.setenv(setup_cell.SOURCE_VARIABLE, "file:///wheels/lfd13-0.1.0-py3-none-any.whl")
    out, calls = run_cell(setup_cell.render(), lfd13_found=False, monkeypatch=monkeypatch)
    assert calls[0][-1] == "lfd13[notebooks] @ file:///wheels/lfd13-0.1.0-py3-none-any.whl"
    assert "Installed: nothing new" in out


def test_write_inserts_the_cell_first_and_is_idempotent(tmp_path):
    chapter = sorted((ROOT / "book").glob("[0-9]*.ipynb"))[0]
    copy = tmp_path / chapter.name
    nb = nbformat.read(chapter, as_version=4)
    for cell in list(nb.cells):  # the chapter as it was before any setup cell
        if setup_cell.is_setup_cell(cell):
            nb.cells.remove(cell)
    n_cells = len(nb.cells)
    nbformat.write(nb, copy)
    assert setup_cell.main(["--check", str(copy)]) == 1
    assert setup_cell.write([copy]) == [copy]
    nb = nbformat.read(copy, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert len(nb.cells) == n_cells + 1
    assert first.cell_type == "code" and first.source == setup_cell.render() and first.outputs == []
    assert first.metadata["tags"] == setup_cell.TAGS and first.id == setup_cell.CELL_ID
    assert setup_cell.write([copy]) == []  # nothing to change the second time
    assert setup_cell.main(["--check", str(copy)]) == 0

    # an older version of the cell (say, after a change of repository) is replaced, not duplicated
    nb.cells[0].source = nb.cells[0].source.replace("lfd-course/lfd13", "old-home/lfd13")
    nbformat.write(nb, copy)
    assert setup_cell.write([copy]) == [copy]
    nb = nbformat.read(copy, as_version=4)
    assert len(nb.cells) == n_cells + 1 and nb.cells[0].source == setup_cell.render()


def test_the_tag_hides_the_cell_in_the_rendered_book(built_book):
    """The rendered chapters show no line of the setup cell (myst-nb drops cells tagged remove-cell)."""
    assert setup_cell.TAGS == ["remove-cell"]
    pages = {path: (built_book / path.with_suffix(".html").relative_to(ROOT)).read_text(encoding="utf-8")
             for path in setup_cell.chapters()}
    assert len(pages) >= 9
    for path, html in pages.items():
        for marker in ("LFD13_INSTALL_SOURCE", "find_spec(&quot;lfd13&quot;)", 'find_spec("lfd13")', "Installing lfd13"):
            assert marker not in html, f"{path.name}: the rendered page shows the setup cell ({marker!r})"


def test_every_chapter_starts_with_the_current_setup_cell():
    """Run `python book/_ext/setup_cell.py --write` (then re-execute the chapters) when this fails."""
    stale = setup_cell.stale(setup_cell.chapters())
    assert not stale, f"first cell is not the current setup cell in {[p.name for p in stale]}: run python book/_ext/setup_cell.py --write"
    for path in setup_cell.chapters():
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.source == setup_cell.render() and first.metadata.get("tags") == setup_cell.TAGS and not first.outputs
