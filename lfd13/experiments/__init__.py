"""The book's experiments: each chapter comparison is one module here, apart from the concepts it uses.

A concept module (:mod:`lfd13.mae`, :mod:`lfd13.peft_tools`, …) holds what a reader of the paper
expects to find; an experiment module holds one measurement a chapter shows, in one form:

- ``Settings``: a frozen dataclass with a comment per field (seeds, budgets, grids), and
  ``SETTINGS`` (the run the book shows) and ``TINY`` (the same run in seconds, for the tests);
- ``run(settings, *, device, progress) -> Result``: the measurement itself;
- ``load(directory=None) -> Result``: what the shipped run measured, read from its own file in
  ``lfd13/results`` (never from inside a model checkpoint);
- ``ENTRY``: its row in the table of :mod:`lfd13.recreate`, the command that recreates every shipped file.

Notebooks import an experiment's ``SETTINGS`` and its result object, not loose constants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One row of :data:`lfd13.recreate.ENTRIES`: a command that recreates shipped files.

    ``python -m lfd13.recreate <name>`` calls ``write(settings, checkpoints=…, results=…)``;
    ``make unit`` calls it on ``tiny`` into a temporary folder, then ``check`` on that folder.
    Entries run in table order, so an entry may read what an earlier one wrote (e.g. the MAE
    fine-tuning reads the MAE checkpoint).
    """

    name: str  # the command's argument, e.g. "mae"
    doc: str  # one line: what it trains or measures, and what it writes
    settings: Any  # the frozen settings of the shipped run
    tiny: Any  # the same settings, small enough to run in a few seconds
    files: Callable[[Any], tuple[str, ...]]  # settings -> the file names it writes (checkpoints and results)
    write: Callable[..., Any]  # write(settings, *, checkpoints: Path, results: Path, device, progress) -> None
    check: Callable[..., Any]  # check(*, checkpoints: Path, results: Path) -> loads everything it wrote

    @property
    def command(self) -> str:
        """The command that recreates this entry's files."""
        return command(self.name)


def command(name: str) -> str:
    """``python -m lfd13.recreate <name>``: the command written into every file an entry saves."""
    return f"python -m lfd13.recreate {name}"


def best_learning_rate(scores: Mapping[float, float]) -> float:
    """The learning rate with the highest validation score; a tie goes to the smaller rate.

    How every experiment chooses an arm's rate: ``scores`` maps each rate of its grid to a
    validation score (never a test score).
    """
    if not scores:
        raise ValueError("scores is empty: pass {learning_rate: validation_score, ...}")
    return min(scores, key=lambda lr: (-scores[lr], lr))


__all__ = ["Entry", "best_learning_rate", "command"]
