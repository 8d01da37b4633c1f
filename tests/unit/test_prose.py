"""The chapters' prose is true to their runs and reads as a lesson.

The rules and their exemptions are in ``tests/prose_rules.py``. The number and verdict rules
cover the chapters in ``NUMBERS_CHECKED``; the development-language rule covers every chapter
and the book's other reader pages; the chapter form (no tooling on the main path, a few glued
values per paragraph, no nested parentheses, no sentence built in code, solutions answered in
words, one collapsed "Reproduce this chapter" block) covers every chapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.prose_rules import (
    MAX_MAIN_PATH_MINUTES,
    REPRODUCE_TITLE,
    TOOLING,
    blocks,
    check_notebook,
    development_findings,
    form_findings,
    measure_reading,
    reproduce_blocks,
)

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
CHAPTERS = sorted(p.stem for p in BOOK.glob("[0-9]*.ipynb"))
NUMBERS_CHECKED = ["01_label_bottleneck", "01_pretext_tasks", "02_bert", "03_mae", "04_clip", "05_finetuning", "05a_layers", "05b_sft", "06_peft"]
READER_PAGES = ["intro.md", "assignments.md"]


def _read(stem: str) -> dict:
    return json.loads((BOOK / f"{stem}.ipynb").read_text())


@pytest.mark.parametrize("stem", NUMBERS_CHECKED)
def test_numbers_and_verdicts_are_computed(stem):
    findings = [f for f in check_notebook(_read(stem)) if not f.rule.startswith("development")]
    assert not findings, "\n".join(map(str, findings)) + (
        "\nGlue the value ({glue:text}`name`) from the code cell that computes it, or, for a constant a "
        "paper states, cite it in the same paragraph and list it in the notebook metadata lfd13.cited_numbers."
    )


@pytest.mark.parametrize("stem", CHAPTERS)
def test_no_development_language_in_chapters(stem):
    findings = check_notebook(_read(stem), numbers=False)
    assert not findings, "\n".join(map(str, findings))


@pytest.mark.parametrize("page", READER_PAGES)
def test_no_development_language_in_pages(page):
    findings = development_findings(0, (BOOK / page).read_text(), "page")
    assert not findings, "\n".join(map(str, findings))


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_form(stem):
    findings = form_findings(_read(stem))
    assert not findings, "\n".join(map(str, findings)) + (
        "\nTooling words belong in the collapsed 'Reproduce this chapter' or 'How this was measured' blocks; a "
        "comparison's numbers in one table (lfd13.report), the prose quoting a few values; glue values, not sentences "
        "(lfd13.report.glue_values); a solution ends by printing its answer in a sentence."
    )


@pytest.mark.parametrize("stem", CHAPTERS)
def test_one_reproduce_block_per_chapter(stem):
    assert reproduce_blocks(_read(stem)) == 1, f"{stem}: give the chapter exactly one collapsed '{REPRODUCE_TITLE}' block"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_main_path_reads_in_half_an_hour(stem):
    reading = measure_reading(_read(stem))
    assert reading["minutes"] <= MAX_MAIN_PATH_MINUTES, (
        f"{stem}: the main path takes about {reading['minutes']} minutes to read ({reading}); move analyses beyond the "
        f"slide into collapsed 'Going further' blocks (python benchmarks/reading.py measures it)"
    )


@pytest.mark.parametrize("page", READER_PAGES)
def test_no_tooling_on_reader_pages(page):
    hits = [
        m.group(0)
        for b in blocks((BOOK / page).read_text())
        if not b.collapsed
        for m in TOOLING.finditer(b.text)
    ]
    assert not hits, f"{page} speaks of {hits} outside a collapsed block"


def test_cited_numbers_are_lists_of_strings():
    for stem in CHAPTERS:
        cited = _read(stem).get("metadata", {}).get("lfd13", {}).get("cited_numbers", [])
        assert isinstance(cited, list) and all(isinstance(n, str) for n in cited), stem


def _nb(*cells, cited=()):
    return {"metadata": {"lfd13": {"cited_numbers": list(cited)}}, "cells": list(cells)}


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(source, output="", tags=()):
    outs = [{"output_type": "stream", "name": "stdout", "text": output}] if output else []
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": outs}


def test_checker_flags_typed_numbers_and_passes_glued_ones():
    typed = check_notebook(_nb(_md("The probe reaches 0.92 after 60 steps, 3× faster and 12 % better.")))
    assert sorted(f.text for f in typed) == sorted(["0.92", "60", "3×", "12 %"])
    glued = check_notebook(_nb(_md("The probe reaches {glue:text}`acc:.3f` after {glue:text}`steps` steps.")))
    assert glued == []


def test_checker_exemptions():
    text = (
        "## 2. Masking\n\nSee Chapter 5, slides 8 and 9 and Exercise 2. GPT-2, MiniLM-L6 and JFT-300M "
        "are names; $W_0 + BA$ with $r = 8$ is math, `max_length=64` is code, {doc}`05b_sft` a role, "
        "[link](https://x.org/a1), 20 Newsgroups.\n\n1. first item\n2. second\n\n"
        "```python\nmodel = build(layers=12)\n```\n"
    )
    assert check_notebook(_nb(_md(text))) == []


def test_directive_bodies_are_prose():
    found = check_notebook(_nb(_md("```{dropdown} Answer\nIt took 12 steps.\n```")))
    assert [f.text for f in found] == ["12"]


def test_cited_constants_need_their_citation_in_the_paragraph():
    cited = check_notebook(_nb(_md("BERT masks 80/10/10 {footcite}`devlin2018bert` (2019)."), cited=["80", "10"]))
    assert cited == []
    uncited = check_notebook(_nb(_md("BERT masks 80/10/10."), cited=["80", "10"]))
    assert [f.text for f in uncited] == ["80"]  # "10" after a slash is not read as a separate number
    not_listed = check_notebook(_nb(_md("BERT-base has 12 layers {footcite}`devlin2018bert`.")))
    assert [f.text for f in not_listed] == ["12"]


def test_checker_flags_typed_verdicts_but_not_cited_claims():
    typed = check_notebook(_nb(_md("Fine-tuning is clearly better than the probe.")))
    assert sorted(f.text for f in typed) == ["better than", "clearly"]
    assert check_notebook(_nb(_md("LoRA matches full fine-tuning {footcite}`hu2021lora`."))) == []
    assert check_notebook(_nb(_md("Fine-tuning is {glue:text}`ft_verdict` the probe."))) == []


def test_checker_flags_development_language_where_readers_see_it():
    nb = _nb(
        _md("This meets the goal of 0.95; the issue's reference run. The Goal of CLIP is a heading."),
        _code("# NBVAL_IGNORE_OUTPUT\nx = 1", output="goal met\n"),
        _code("# goal", tags=["remove-cell"]),
    )
    found = check_notebook(nb, numbers=False)
    assert sorted((f.cell, f.text.lower()) for f in found) == [
        (0, "goal"), (0, "reference run"), (0, "the issue"), (1, "goal"), (1, "nbval"),
    ]


def _glued(name, value):
    return {"output_type": "display_data", "metadata": {"scrapbook": {"name": name}},
            "data": {"application/papermill.record/text/plain": repr(value)}}


def test_form_flags_tooling_on_the_main_path_only():
    nb = _nb(
        _md("The runs were recorded and ship as JSON.\n\n```{dropdown} Reproduce this chapter\n"
            "`python -m lfd13.recreate mae` writes the JSON record.\n```"),
        _code("from myst_nb import glue", output="recorded on two CPU cores\n"),
        _code("glue('x', 1)  # recorded", tags=["hide-cell"]),
    )
    found = form_findings(nb)
    assert sorted((f.cell, f.rule, f.text) for f in found) == [
        (0, "tooling on the main path", "JSON"), (0, "tooling on the main path", "recorded"),
        (0, "tooling on the main path", "ship"), (1, "tooling in a visible output", "CPU cores"),
        (1, "tooling in a visible output", "recorded"), (1, "tooling in visible code", "glue"),
    ]
    assert reproduce_blocks(nb) == 1


def test_form_counts_glue_roles_per_paragraph_main_and_collapsed():
    five = " ".join(f"{{glue:text}}`v{i}`" for i in range(5))
    assert [f.rule for f in form_findings(_nb(_md(five)))] == ["5 glue roles in one paragraph (at most 4)"]
    assert form_findings(_nb(_md(f":::{{admonition}} How this was measured\n:class: dropdown\n{five}\n:::"))) == []


def test_form_flags_nested_parentheses_with_glued_values_substituted():
    cell = _code("glue_values('ft', d=...)")
    cell["outputs"] = [_glued("ft_d", "+3.1 (n=3)")]
    found = form_findings(_nb(_md("above the CNN ({glue:text}`ft_d`)"), cell))
    assert [f.rule for f in found] == ["nested parentheses"]
    assert form_findings(_nb(_md("above the CNN ({glue:text}`ft_d`), see $f(x)$ and (a) (b)"), _code("x"))) == []


def test_form_flags_a_glued_sentence_but_not_a_verdict_word():
    cell = _code("x")
    cell["outputs"] = [_glued("a", "level with"), _glued("b", "At this budget all of it comes from pre-training."),
                       _glued("c", 0.25)]
    assert [(f.rule, f.text) for f in form_findings(_nb(cell))] == [("glued text is a sentence", "b")]


def test_form_wants_a_solution_to_end_in_words():
    terse = _code("# Solution\nprint(acc)", output="0.91\n", tags=["hide-cell"])
    worded = _code("# Solution\nprint(acc)", output="0.91\nThe [CLS] probe is below the mean-pooled probe here.\n",
                   tags=["hide-cell"])
    assert [f.rule for f in form_findings(_nb(terse))] == ["a solution whose last printed line is not an answer in words"]
    assert form_findings(_nb(worded)) == []


def test_reading_time_counts_only_the_main_path():
    words = " ".join(["word"] * 400)
    open_nb = _nb(_md(words), _code("a = 1\nb = 2\n# a comment"))
    closed_nb = _nb(_md(f"```{{dropdown}} Going further\n{words}\n```"), _code("a = 1", tags=["hide-cell"]))
    assert measure_reading(open_nb) == {"words": 400, "code_lines": 2, "figures_and_tables": 0, "minutes": 2.1}
    assert measure_reading(closed_nb)["minutes"] == 0
