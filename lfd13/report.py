"""Results on a page: one small table per comparison, and the few values its prose quotes.

A chapter shows a comparison's numbers once, in a table the code makes: each arm's mean ± sd
over independent runs (:func:`score_table`), and each difference with its 95 % interval and the
verdict computed from it (:func:`comparison_table`). The prose then names the finding in a
sentence, quoting at most a few values; :func:`glue_values` hands those values to the page in
one call, so a code cell shows the experiment rather than a column of ``glue`` lines::

    table = score_table({"probe": probe_accs, "fine-tuning": ft_accs})
    diffs = comparison_table({"fine-tuning − probe": compare(ft_accs, probe_accs)})
    glue_values("ft", probe=np.mean(probe_accs), verdict=diffs.loc["fine-tuning − probe", "verdict"])

Glued values are numbers or single words (a verdict, a name): a sentence is written in the
markdown, never assembled in code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # only its attributes are read
    from lfd13.evaluation import Comparison

__all__ = ["comparison_table", "glue_values", "score_table"]

# A glued text value is a value or a word or two ("above", "level with", "rank 8"), never a sentence.
MAX_GLUED_WORDS = 4


def glue_values(prefix: str, /, **values: Any) -> None:
    """Hand values to the page's prose: each ``key=value`` is glued under the name ``prefix_key``.

    Args:
        prefix: the chapter's prefix (``"mae"``, ``"ft"``), so names stay unique across the book.
        **values: numbers (the prose's glue role gives their format, e.g. ``mae_acc:.3f``) or
            short words (a verdict, a chosen setting's name).

    Raises:
        ValueError: a text value is a sentence (more than a few words, or sentence punctuation):
            write the sentence in the markdown and glue only the value or verdict word it needs.
    """
    from myst_nb import glue  # the notebook's dependency, imported only where a page is built

    for key, value in values.items():
        if isinstance(value, str):
            words = value.split()
            if len(words) > MAX_GLUED_WORDS or any(p in value for p in (". ", ";", "\n")) or value.endswith("."):
                raise ValueError(
                    f"{prefix}_{key} = {value!r} is a sentence: write it in the markdown and glue only a value or "
                    f"a verdict word (at most {MAX_GLUED_WORDS} words)"
                )
        elif isinstance(value, (np.floating, np.integer)):
            value = value.item()
        glue(f"{prefix}_{key}", value, display=False)


def score_table(scores: Mapping[str, Sequence[float]], *, digits: int = 3, column: str = "accuracy") -> pd.DataFrame:
    """Each arm's mean ± standard deviation over its independent runs, and how many runs.

    Args:
        scores: arm name -> one score per independent run (a fraction, e.g. test accuracy).
        digits: decimals printed.
        column: what the scores are, the header of the first column.

    Returns:
        A table indexed by arm, with columns ``column`` ("0.912 ± 0.013") and ``runs``.
    """
    rows = {}
    for arm, values in scores.items():
        v = np.asarray(values, dtype=float)
        if v.ndim != 1 or len(v) == 0:
            raise ValueError(f"{arm!r}: give a non-empty list of scores, one per run, got shape {v.shape}")
        cell = f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")
        rows[arm] = {column: cell, "runs": len(v)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "arm"
    return table


def comparison_table(comparisons: Mapping[str, Comparison]) -> pd.DataFrame:
    """Each difference in percentage points, its 95 % interval, the runs behind it, and the verdict.

    Args:
        comparisons: a label ("fine-tuning − probe") -> the :class:`~lfd13.evaluation.Comparison`
            of the two arms.

    Returns:
        A table indexed by label, columns ``difference (points)``, ``95 % interval``, ``runs``
        ("3 paired" or "1 each") and ``verdict`` ("above", "below", "level with").
    """
    rows = {
        label: {
            "difference (points)": f"{100 * c.difference:+.1f}",
            "95 % interval": f"{100 * c.low:+.1f} to {100 * c.high:+.1f}",
            "runs": f"{c.n} paired" if c.n > 1 else "1 each",
            "verdict": c.verdict,
        }
        for label, c in comparisons.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "comparison"
    return table
