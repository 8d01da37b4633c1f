"""The book builds with no Sphinx warnings, from the outputs committed in the notebooks.

The chapter checks (collected from book/, conftest.py) execute every notebook once and check that it
reproduces its committed outputs; this build then renders those same outputs,
so no notebook is executed twice in one test run.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files.extend(s["file"] for s in ch.get("sections", []))
    return files


def test_toc_lists_only_pages_that_exist():
    for f in toc_files():
        assert any((ROOT / f"{f}{ext}").is_file() for ext in (".md", ".ipynb")), f"_toc.yml lists {f}, which does not exist"


def test_every_book_notebook_is_in_the_toc():
    listed = set(toc_files())
    for nb in (ROOT / "book").glob("*.ipynb"):
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


def test_book_notebooks_are_committed_with_outputs():
    import nbformat

    for nb_path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        assert code and all(c.get("execution_count") for c in code), f"{nb_path.name}: run it with benchmarks/notebooks.py --write"


def test_book_builds_without_warnings(built_book):
    assert (built_book / "index.html").is_file()


def test_every_toc_page_is_rendered_with_its_figures(built_book):
    for f in toc_files():
        page = built_book / f"{f}.html"
        assert page.is_file(), f"{page} missing"
    import nbformat

    for nb_path in (ROOT / "book").glob("*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        n_figs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        html = (built_book / "book" / f"{nb_path.stem}.html").read_text()
        assert html.count("<img") >= n_figs, f"{nb_path.name}: {n_figs} figures in the notebook, fewer in the page"


def test_glued_numbers_are_rendered(built_book):
    """Every {glue} reference in the prose is replaced by the value the notebook computed."""
    import nbformat

    from benchmarks.notebooks import glued_scalars

    nb = nbformat.read(ROOT / "book" / "01_label_bottleneck.ipynb", as_version=4)
    acc_1 = glued_scalars(nb)["ch1_acc_1"]
    html = (built_book / "book" / "01_label_bottleneck.html").read_text()
    assert f'network reaches <span class="pasted-text">{acc_1:.3f}</span>' in html
    for page in built_book.glob("book/*.html"):
        text = page.read_text()
        assert "{glue" not in text, f"unrendered glue role in {page.name}"


def _solution_lines() -> set[str]:
    """Distinctive code lines of the instructor's solutions and hidden tests."""
    import nbformat

    lines: set[str] = set()
    for src in (ROOT / "assignments" / "source").glob("*/*.ipynb"):
        nb = nbformat.read(src, as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not (meta.get("solution") or (meta.get("grade") and meta.get("locked"))):
                continue
            in_block = False
            for line in cell.source.splitlines():
                if "BEGIN SOLUTION" in line or "BEGIN HIDDEN TESTS" in line:
                    in_block = True
                    continue
                if "END SOLUTION" in line or "END HIDDEN TESTS" in line:
                    in_block = False
                    continue
                text = line.strip()
                if in_block and len(text) >= 30 and not text.startswith("#"):
                    lines.add(text)
    return lines


def test_no_solution_or_hidden_test_in_the_site(built_book):
    """Released notebooks are offered for download; solutions and hidden tests never appear."""
    secrets = _solution_lines()
    assert len(secrets) >= 10, "found too few solution lines to make this check meaningful"
    import nbformat

    leaks = []
    for path in built_book.rglob("*"):
        if path.suffix not in (".html", ".ipynb", ".txt", ".js", ".json", ".md", ".py") or not path.is_file():
            continue
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        else:
            text = path.read_text(errors="ignore")
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
            if marker in text:
                leaks.append(f"{path.relative_to(built_book)}: {marker}")
        present = {line.strip() for line in text.splitlines()}
        leaks.extend(f"{path.relative_to(built_book)}: {s[:60]}" for s in secrets & present)
    assert not leaks, "solutions or hidden tests leak into the book:\n" + "\n".join(leaks[:20])
    downloads = {p.name for p in built_book.rglob("_downloads/*/*.ipynb")}
    assert {"masking.ipynb", "contrastive.ipynb", "lora.ipynb"} <= downloads
