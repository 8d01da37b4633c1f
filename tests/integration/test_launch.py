"""A chapter runs as a new reader gets it: the notebook alone, in a Python without lfd13.

The reader's path (Colab, a bare Jupyter, the download button) reproduced offline by
``benchmarks/launch.py``: build the wheel, make a venv that has the course's dependencies but
not lfd13 (checked), copy one chapter alone into an empty folder, and execute it with nbclient
on that venv's kernel, the setup cell installing lfd13 from the wheel
(``LFD13_INSTALL_SOURCE``). ``make launch-all`` does the same for every chapter.
"""

from __future__ import annotations

import subprocess

import pytest

from benchmarks.launch import bare_env, build_wheel, check, kernel_env, launch, setup_cell

# Short, and it loads what a chapter can load: the corpus, a shipped checkpoint, the MiniLM encoder.
CHAPTER = setup_cell.ROOT / "book" / "02_bert.ipynb"


def test_the_bare_environment_has_the_dependencies_but_not_lfd13(tmp_path):
    python = bare_env(tmp_path / "env")  # raises if `import lfd13` works there
    env = kernel_env({})
    fails = subprocess.run([str(python), "-c", "import lfd13"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert fails.returncode != 0 and "No module named 'lfd13'" in fails.stderr
    works = subprocess.run([str(python), "-c", "import torch, transformers, open_clip, peft, ipykernel"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert works.returncode == 0, works.stderr[-2000:]


@pytest.mark.slow
def test_a_chapter_runs_alone_where_lfd13_is_not_installed(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    result = launch(CHAPTER, tmp_path, wheel=wheel)
    problems = check(result, tmp_path / "env")
    assert not problems, "\n".join(problems)
    assert result.setup_output.startswith("Installing lfd13[notebooks] @ file://")
