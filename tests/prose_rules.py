"""What a reader may see in a chapter's text: the rules ``tests/test_prose.py`` enforces.

Three rules keep the prose true to the run beside it:

1. **Numbers are computed.** Every number in a markdown cell is a glued value
   (``{glue:text}`name```), or a constant the page cites: listed in the notebook's metadata
   ``lfd13.cited_numbers`` *and* on a paragraph that carries a citation role. Exempt are math,
   inline code, role targets, URLs, structural references (``Chapter 5``, ``slide 22``),
   digits inside names (``GPT-2``, ``MiniLM-L6``, ``JFT-300M``), list markers and section
   numbers, and years beside a citation.
2. **Verdicts are computed.** Words that judge a run ("clearly", "better than", "level with" …)
   appear literally only beside a citation (the paper's claim); otherwise they come from glued
   text that the code computes.
3. **No development language** in anything a reader sees: markdown, visible code, its outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

CITATION = re.compile(r"\{(?:foot)?cite(?::[a-z]+)?\}`[^`]*`")
ROLE = re.compile(r"\{[A-Za-z][\w:.-]*\}`[^`]*`")
INLINE_CODE = re.compile(r"`[^`\n]*`")
DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
INLINE_MATH = re.compile(r"\$[^$\n]+\$")
LINK_TARGET = re.compile(r"\]\([^)\s]*\)")
URL = re.compile(r"https?://\S+")
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
# "Chapter 5", "slides 8 and 9", "Exercise 2", "Table 7", "step 1" ... with lists of such numbers.
STRUCTURAL = re.compile(
    r"\b(?:Chapters?|chapters?|Sections?|sections?|Slides?|slides?|Exercises?|exercises?|Questions?|"
    r"questions?|Q|Tables?|tables?|Figures?|figures?|Lectures?|lecture|Steps?|step|steps|Eq\.|Equations?)"
    r"\s+\d+[a-z]?(?:(?:\s*[,–-]\s*|\s+(?:and|or|to)\s+)\d+[a-z]?)*"
)
LIST_MARKER = re.compile(r"^\s*(?:[-*+]\s+)?\d+[.)]\s", re.M)
HEADING_NUMBER = re.compile(r"^(#+\s*)\d+(?:\.\d+)*\.?", re.M)
# A number: digits (with , or . groups), optionally a count suffix (22M, 1B), %, or ×.
# Digits touching a letter, hyphen, slash or underscore on the left are part of a name.
NUMBER = re.compile(r"(?<![\w./\\-])(\d+(?:[.,]\d+)*)(?:[KMB](?![A-Za-z]))?(?:\s?%|×|x(?![A-Za-z]))?(?![\w])")
# Names that begin with a number.
NAMES = re.compile(r"\b20 Newsgroups\b")
YEAR = re.compile(r"^(?:19[5-9]\d|20[0-3]\d)$")

VERDICT_WORDS = (
    "clearly", "clear winner", "the winner", "beats", "beat", "outperforms", "outperform", "better than",
    "worse than", "higher than", "lower than", "above the", "below the", "level with", "within noise",
    "within the error bars", "matches", "decent", "sharply", "markedly", "far above", "far below",
    "well above", "well below", "at least as good", "no better", "as good as",
)
VERDICT = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in VERDICT_WORDS) + r")\b", re.I)

DEVELOPMENT = re.compile(
    r"\bgoals?\b(?! of clip)|\bthe issue\b|\bissue's\b|\breference run|\bnbval|\btest suite\b|\bunit tests?\b|"
    r"\btime budget|\bpage'?s budget|\bbudget of the page|\bin our trials\b|\bhonest(?:ly)?\b|"
    r"\bpreliminary runs?\b|\bcourse authors\b|\bTODO\b|\bFIXME\b|\bacceptance\b|\bset itself\b",
    re.I,
)


@dataclass(frozen=True)
class Finding:
    """One rule broken: where, which rule, and the text that broke it."""

    cell: int
    rule: str
    text: str
    context: str

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.rule}: {self.text!r} in {self.context!r}"


def units(markdown: str) -> Iterator[str]:
    """Paragraphs and list items, each a unit a citation covers.

    Code blocks (a fence with a language, such as ```` ```python ````) are code, not prose, and
    are dropped; directives (```` ```{dropdown} ````, ``:::``) keep their body, which readers
    see, and lose only their fence and option lines.
    """
    lines = []
    code_fence = None  # the fence that opened the code block we are in
    for line in HTML_COMMENT.sub(" ", markdown).split("\n"):
        fence = re.match(r"^\s*(`{3,}|~{3,})(.*)$", line)
        if code_fence is not None:
            if fence and fence.group(1) == code_fence and not fence.group(2).strip():
                code_fence = None
            continue
        if fence and fence.group(2).strip() and not fence.group(2).strip().startswith("{"):
            code_fence = fence.group(1)
            continue
        if not re.match(r"^\s*(?:```|~~~|:::|:[\w-]+:)", line):
            lines.append(NAMES.sub(" ", line))
    unit: list[str] = []
    for line in lines:
        starts_item = re.match(r"^\s*(?:[-*+]|\d+[.)])\s", line) is not None
        if not line.strip() or starts_item:
            if unit:
                yield "\n".join(unit)
            unit = [] if not line.strip() else [line]
        else:
            unit.append(line)
    if unit:
        yield "\n".join(unit)


def visible_text(unit: str) -> str:
    """A unit with everything the number rule does not read removed: math, code, roles, links."""
    text = DISPLAY_MATH.sub(" ", unit)
    text = INLINE_MATH.sub(" ", text)
    text = ROLE.sub(" ", text)
    text = INLINE_CODE.sub(" ", text)
    text = LINK_TARGET.sub("] ", text)
    return URL.sub(" ", text)


def number_findings(cell: int, markdown: str, cited: frozenset[str]) -> list[Finding]:
    """Numbers in one markdown cell that are neither glued nor cited constants."""
    found = []
    for unit in units(markdown):
        has_citation = CITATION.search(unit) is not None
        text = visible_text(unit)
        text = STRUCTURAL.sub(" ", text)
        text = LIST_MARKER.sub(" ", text)
        text = HEADING_NUMBER.sub(r"\1", text)
        for m in NUMBER.finditer(text):
            number = m.group(1)
            if has_citation and (number in cited or YEAR.match(number)):
                continue
            found.append(Finding(cell, "number not glued", m.group(0), _around(text, m.start())))
    return found


def verdict_findings(cell: int, markdown: str) -> list[Finding]:
    """Run-dependent verdict words typed into a markdown cell (outside a cited paragraph)."""
    found = []
    for unit in units(markdown):
        if CITATION.search(unit):
            continue
        text = visible_text(unit)
        for m in VERDICT.finditer(text):
            found.append(Finding(cell, "verdict not computed", m.group(0), _around(text, m.start())))
    return found


def development_findings(cell: int, text: str, where: str) -> list[Finding]:
    """Development language in reader-visible text (markdown, code or output)."""
    return [
        Finding(cell, f"development language in {where}", m.group(0), _around(text, m.start()))
        for m in DEVELOPMENT.finditer(text)
    ]


def _around(text: str, at: int, width: int = 50) -> str:
    return " ".join(text[max(0, at - width) : at + width].split())


def _output_text(output: dict) -> str:
    """What a reader sees of an output: its text, or the text a glue role puts into the prose."""
    if output.get("output_type") == "stream":
        parts = [output.get("text", "")]
    else:
        data = output.get("data", {})
        parts = [data.get("text/plain", ""), data.get("application/papermill.record/text/plain", "")]
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def check_notebook(nb: dict, *, numbers: bool = True) -> list[Finding]:
    """Every finding of the three rules in a notebook (``numbers=False``: only development language)."""
    cited = frozenset(str(n) for n in nb.get("metadata", {}).get("lfd13", {}).get("cited_numbers", []))
    found: list[Finding] = []
    for i, cell in enumerate(nb["cells"]):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "markdown":
            found += development_findings(i, source, "markdown")
            if numbers:
                found += number_findings(i, source, cited) + verdict_findings(i, source)
        elif cell["cell_type"] == "code" and "remove-cell" not in tags:
            if "remove-input" not in tags:
                found += development_findings(i, source, "code")
            if "remove-output" not in tags:
                for out in cell.get("outputs", []):
                    found += development_findings(i, _output_text(out), "output")
    return found
