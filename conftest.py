"""Environment for every test run, and the chapter checks that execute the book's notebooks.

The chapters' kernels inherit this process's environment, so the settings here are what the
notebooks see too — the same as ``benchmarks/notebooks.py`` and the book build give them.

Each ``book/*.ipynb`` is collected as one test: executed top to bottom in a fresh kernel, its
outputs compared with the committed ones by ``tests/chapter_outputs.py`` (numbers within
their noise, words exactly; that module says why it is built so). The executed copy is kept in
``_build/executed/`` for a look at what differed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("LFD13_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
# A backend set in the environment (e.g. MPLBACKEND=Agg) replaces ipykernel's inline
# backend, and every figure cell would lose its output. Tests that draw choose Agg
# in-process (tests/conftest.py).
os.environ.pop("MPLBACKEND", None)

ROOT = Path(__file__).resolve().parent
BOOK = ROOT / "book"
EXECUTED = ROOT / "_build" / "executed"


def pytest_report_header(config) -> list[str]:
    from tests.chapter_outputs import numerical_path

    return [f"numerical path: {numerical_path()}"]


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".ipynb" and file_path.parent == BOOK:
        return ChapterFile.from_parent(parent, path=file_path)
    return None


class ChapterFile(pytest.File):
    def collect(self):
        yield ChapterItem.from_parent(self, name="outputs within noise")


class ChapterDiffers(Exception):
    pass


class ChapterItem(pytest.Item):
    """Execute one chapter and compare its outputs with the committed ones."""

    def runtest(self) -> None:
        import nbformat

        from tests.chapter_outputs import execute_and_compare

        kept = EXECUTED / self.path.name
        diffs = execute_and_compare(nbformat.read(self.path, as_version=4), cwd=self.path.parent,
                                    chapter=self.path.stem, keep=kept)
        if diffs:
            raise ChapterDiffers(
                f"{len(diffs)} output(s) differ from the committed ones beyond noise "
                f"(executed copy: {kept.relative_to(ROOT)}):\n" + "\n".join(f"- {d}" for d in diffs)
            )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ChapterDiffers):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}: outputs within noise"
