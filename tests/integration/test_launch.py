"""A chapter runs as a new reader gets it: the notebook alone, in a Python without lfd13.

The reader's path (Colab, a bare Jupyter, the download button) reproduced offline by
``benchmarks/launch.py``: build the wheel, make a venv that has the course's dependencies but
not lfd13 (checked), copy one chapter alone into an empty folder, and execute it with nbclient
on that venv's kernel, the setup cell installing lfd13 from the wheel
(``LFD13_INSTALL_SOURCE``). ``make launch-all`` does the same for every chapter.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest

from benchmarks.launch import bare_env, build_wheel, chapter_imports, check, kernel_env, launch, setup_cell

# What a chapter needs from the install, in three cells: the setup cell that installs lfd13, every import any
# chapter makes, and the loaders below. The chapters themselves are executed by the chapter checks.
# What the chapters load: the data files, every shipped checkpoint and result (each read back by the recreate row
# that writes it, hashes checked), the MiniLM encoder. Runs in an environment where lfd13 comes from the wheel.
LOADERS = """
import pathlib
import lfd13
from lfd13 import recreate, shipped
from lfd13.data import load_corpus, load_digits, load_newsgroups
from lfd13.pretrained import load_text_encoder

root = pathlib.Path(lfd13.__file__).parent
assert "site-packages" in root.parts, f"lfd13 imported from {root}, not from the installed wheel"
assert shipped.CHECKPOINT_DIR.is_relative_to(root) and shipped.RESULTS_DIR.is_relative_to(root)
load_digits(); load_corpus(); load_newsgroups()  # the shapes are generated: no files
files = sorted(p.name for d in (shipped.CHECKPOINT_DIR, shipped.RESULTS_DIR) for p in d.iterdir() if p.suffix != ".py")
claimed = sorted(n for row in recreate.ENTRIES for n in row.files(row.settings))
assert set(claimed) <= set(files), f"the wheel lacks {sorted(set(claimed) - set(files))}"
for row in recreate.ENTRIES:
    row.check(checkpoints=shipped.CHECKPOINT_DIR, results=shipped.RESULTS_DIR)
tokenizer, encoder = load_text_encoder(device="cpu")
print("ok", len(claimed), "shipped files", type(encoder).__name__)
"""


def reader_notebook(folder: Path) -> Path:
    """A three-cell notebook: the chapters' setup cell, their imports, the loaders."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(chapter_imports()), nbformat.v4.new_code_cell(LOADERS)]
    setup_cell.apply(nb)  # inserts the chapters' setup cell first
    assert len(nb.cells) == 3 and nb.cells[0].source.startswith("# Setup: installs the course package lfd13"), nb.cells[0].source[:200]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "reader.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_bare_environment_has_the_dependencies_but_not_lfd13(tmp_path):
    python = bare_env(tmp_path / "env")  # raises if `import lfd13` works there
    env = kernel_env({})
    fails = subprocess.run([str(python), "-c", "import lfd13"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert fails.returncode != 0 and "No module named 'lfd13'" in fails.stderr
    works = subprocess.run([str(python), "-c", "import torch, transformers, open_clip, peft, ipykernel"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert works.returncode == 0, works.stderr[-2000:]


@pytest.mark.slow
def test_the_chapters_setup_imports_and_loaders_run_where_lfd13_is_not_installed(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    result = launch(reader_notebook(tmp_path / "notebook"), tmp_path, wheel=wheel)
    problems = check(result, tmp_path / "env")
    assert not problems, "\n".join(problems)
    assert result.setup_output.startswith("Installing lfd13[notebooks] @ file://")
