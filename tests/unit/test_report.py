"""A comparison's numbers in one small table; glued values stay values, never sentences."""

from __future__ import annotations

import pytest

from lfd13.evaluation import compare
from lfd13.report import comparison_table, glue_values, score_table


def test_score_table_gives_mean_sd_and_runs():
    table = score_table({"probe": [0.90, 0.92, 0.94], "one run": [0.5]})
    assert table.loc["probe", "accuracy"] == "0.920 ± 0.020"
    assert table.loc["probe", "runs"] == 3
    assert table.loc["one run", "accuracy"] == "0.500"


def test_score_table_refuses_an_empty_arm():
    with pytest.raises(ValueError, match="'empty'.*non-empty"):
        score_table({"empty": []})


def test_comparison_table_reads_the_interval_and_verdict():
    up = compare([0.9, 0.91, 0.92], [0.8, 0.8, 0.81])
    level = compare([0.9, 0.8, 0.85], [0.85, 0.85, 0.86])
    table = comparison_table({"a − b": up, "c − d": level})
    assert table.loc["a − b", "verdict"] == "above"
    assert table.loc["c − d", "verdict"] == "level with"
    assert table.loc["a − b", "difference (points)"] == f"{100 * up.difference:+.1f}"
    assert table.loc["a − b", "runs"] == "3 paired"


@pytest.mark.parametrize("sentence", ["fine-tuning is above the probe at every budget", "above.", "a; b"])
def test_glue_values_refuses_a_sentence(sentence):
    with pytest.raises(ValueError, match="write it in the markdown"):
        glue_values("ft", finding=sentence)


def test_glue_values_glues_each_value_under_its_prefix(monkeypatch):
    glued = {}
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.update({name: (value, display)}))
    import numpy as np

    glue_values("ft", acc=np.float64(0.5), verdict="level with")
    assert glued == {"ft_acc": (0.5, False), "ft_verdict": ("level with", False)}
    assert type(glued["ft_acc"][0]) is float
