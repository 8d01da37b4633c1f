"""Shared fixtures; the offline, quiet environment is set in the root conftest.py."""

import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

torch.set_num_threads(2)
matplotlib.use("Agg")  # in this process only: tests draw figures without a display

# Notebooks that tests write into temporary folders (e.g. assignment submissions)
# are data, not chapters; the book's notebooks are collected from book/ (conftest.py at the root).
collect_ignore_glob = ["**/*.ipynb"]

ROOT = Path(__file__).resolve().parents[1]
BOOK_OUT = ROOT / "_build" / "test-book"


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the whole site once, as `make book` does (committed outputs), failing on any warning.

    ``LFD13_BUILT_BOOK=_build/html`` reuses an existing build instead (for iterating on the browser tests).
    """
    reuse = os.environ.get("LFD13_BUILT_BOOK")
    if reuse:
        return Path(reuse).resolve()
    config = BOOK_OUT / "_config_noexec.yml"
    BOOK_OUT.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "_config.yml").read_text()
    assert 'execute_notebooks: "off"' in text, "the book renders the committed outputs; the chapter checks prove them current"
    # the copy lives elsewhere, so paths relative to _config.yml become absolute
    config.write_text(text.replace("dedupe_assets: book/_ext", f"dedupe_assets: {ROOT / 'book' / '_ext'}"))
    cmd = [
        str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--builder", "html",
        "--config", str(config), "--path-output", str(BOOK_OUT), "-W", "-n", "--keep-going", "--all",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    log = proc.stdout + proc.stderr
    (BOOK_OUT / "build.log").write_text(log)
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR)\b", line)]
    assert proc.returncode == 0 and not warnings, "book build failed or warned:\n" + "\n".join(warnings or log.splitlines()[-40:])
    return BOOK_OUT / "_build" / "html"


