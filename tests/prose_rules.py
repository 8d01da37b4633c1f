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


# ---------------------------------------------------------------------------------------------
# The chapter form (DESIGN.md, "Chapter form"): a lesson on the main path, the evidence beside it.
#
# 4. **No tooling on the main path.** Outside collapsed blocks (dropdowns, toggles, cells tagged
#    ``hide-cell``), readers meet no record files, shipping, JSON, hashes, ``python -m``, CPU cores,
#    nbval or glue; those belong in the one collapsed "Reproduce this chapter" block.
# 5. **Sentences people write.** At most a few glue roles per paragraph; no nested parentheses in
#    the rendered prose; a glued text value is a value or a word or two, never a sentence.
# 6. **Exercises close the loop.** A solution's last printed line answers the question in words.
# ---------------------------------------------------------------------------------------------

TOOLING = re.compile(
    r"python -m\b|\brecord(?:s|ed|ing)?\b|\bship(?:s|ped|ping)?\b|\bJSON\b|\bsha256\b|\bhash(?:es)?\b|"
    r"\bCPU cores?\b|\b(?:two|2|16) cores\b|\bnbval\b|\bglue\b|\bpytest\b|\bcommands?\b|\btest markers?\b",
    re.I,
)
GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`:]+)(?::[^`]*)?`")
MAX_GLUE_MAIN = 4  # "at most a few glued values" in a paragraph a student reads
MAX_GLUE_COLLAPSED = 8  # a "How this was measured" block lists seeds, budgets and grids
MAX_GLUED_WORDS = 4  # a value, a verdict word or a name: never a sentence (lfd13.report.glue_values)
MIN_ANSWER_WORDS = 6
REPRODUCE_TITLE = "Reproduce this chapter"
COLLAPSED_DIRECTIVES = ("dropdown", "toggle")
COLLAPSED_TAGS = {"hide-cell"}
REMOVED_TAGS = {"remove-cell"}
_OPEN = re.compile(r"^\s*(`{3,}|:{3,})\s*\{([\w-]+)\}(.*)$")
_CLOSE = re.compile(r"^\s*(`{3,}|:{3,})\s*$")
_CODE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})\s*[\w+-]+\s*$")


@dataclass(frozen=True)
class Block:
    """A run of markdown lines: on the main path, or inside a collapsed block (with its title)."""

    text: str
    collapsed: bool
    title: str = ""


def blocks(markdown: str) -> list[Block]:
    """Split a markdown cell into main-path text and collapsed blocks; code fences are dropped.

    A block is collapsed when it is a ``dropdown`` or ``toggle`` directive, or any directive with
    ``:class: dropdown``, or lies inside one.
    """
    lines = HTML_COMMENT.sub(" ", markdown).split("\n")
    stack: list[tuple[str, bool, str]] = []  # (fence, collapsed, title) of each open directive
    out: list[Block] = []
    current: list[str] = []
    code_fence = None

    def flush() -> None:
        if current:
            collapsed = any(c for _, c, _ in stack)
            title = next((t for _, c, t in reversed(stack) if c), "")
            out.append(Block("\n".join(current), collapsed, title))
            current.clear()

    for i, line in enumerate(lines):
        if code_fence is not None:
            if line.strip() == code_fence:
                code_fence = None
            continue
        if _CODE_OPEN.match(line):
            code_fence = re.match(r"\s*(`{3,}|~{3,})", line).group(1)
            continue
        opened = _OPEN.match(line)
        if opened:
            flush()
            options = []
            for nxt in lines[i + 1 :]:
                if not re.match(r"^\s*:[\w-]+:", nxt):
                    break
                options.append(nxt)
            collapsed = opened.group(2) in COLLAPSED_DIRECTIVES or any(
                re.match(r"^\s*:class:.*\bdropdown\b", o) for o in options
            )
            stack.append((opened.group(1), collapsed, opened.group(3).strip()))
            continue
        closed = _CLOSE.match(line)
        if closed and stack and closed.group(1)[0] == stack[-1][0][0] and len(closed.group(1)) >= len(stack[-1][0]):
            flush()
            stack.pop()
            continue
        if re.match(r"^\s*:[\w-]+:", line) and stack and not current:
            continue  # a directive's option line
        current.append(line)
    flush()
    return out


def glued_values(nb: dict) -> dict[str, str]:
    """Every glued name and the text a ``{glue:text}`` role renders (strings without their quotes)."""
    values = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            text = out.get("data", {}).get("application/papermill.record/text/plain")
            if name and text is not None:
                text = text if isinstance(text, str) else "".join(text)
                if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
                    text = text[1:-1]
                values[name] = text
    return values


def _rendered(unit: str, values: dict[str, str]) -> str:
    """A unit as a reader sees its words: glue roles replaced by their values; math, code, other roles and links out."""
    return visible_text(GLUE_ROLE.sub(lambda m: values.get(m.group(1), "0"), unit))


def _nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
    return deepest


def _stdout(cell: dict) -> str:
    return "".join(
        o["text"] if isinstance(o["text"], str) else "".join(o["text"])
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stdout"
    )


def form_findings(nb: dict) -> list[Finding]:
    """Every break of the chapter form (rules 4–6) in a chapter notebook."""
    values = glued_values(nb)
    found: list[Finding] = []
    for name, value in values.items():
        if not re.fullmatch(r"[-+]?[\d.eE+-]+|True|False|None", value) and (
            len(value.split()) > MAX_GLUED_WORDS or re.search(r"\.\s|;|\n", value) or value.endswith(".")
        ):
            found.append(Finding(-1, "glued text is a sentence", name, value[:100]))
    for i, cell in enumerate(nb["cells"]):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "markdown":
            for block in blocks(source):
                for unit in units(block.text):
                    if not block.collapsed:
                        for m in TOOLING.finditer(visible_text(unit)):
                            found.append(Finding(i, "tooling on the main path", m.group(0), _around(unit, m.start())))
                    roles = len(GLUE_ROLE.findall(unit))
                    limit = MAX_GLUE_COLLAPSED if block.collapsed else MAX_GLUE_MAIN
                    if roles > limit:
                        found.append(Finding(i, f"{roles} glue roles in one paragraph (at most {limit})", "", unit[:100]))
                    if _nesting(_rendered(unit, values)) > 1:
                        found.append(Finding(i, "nested parentheses", "", _rendered(unit, values)[:160]))
        elif cell["cell_type"] == "code" and not tags & (REMOVED_TAGS | COLLAPSED_TAGS):
            if not tags & {"remove-input", "hide-input"}:
                for m in TOOLING.finditer(source):
                    found.append(Finding(i, "tooling in visible code", m.group(0), _around(source, m.start())))
            if not tags & {"remove-output", "hide-output"}:
                for out in cell.get("outputs", []):
                    text = _output_text(out) if "scrapbook" not in out.get("metadata", {}) else ""
                    for m in TOOLING.finditer(text):
                        found.append(Finding(i, "tooling in a visible output", m.group(0), _around(text, m.start())))
        if cell["cell_type"] == "code" and source.lstrip().startswith("# Solution"):
            lines = [ln for ln in _stdout(cell).splitlines() if ln.strip()]
            words = re.findall(r"[A-Za-z][a-z'-]+", lines[-1]) if lines else []
            if len(words) < MIN_ANSWER_WORDS:
                found.append(Finding(i, "a solution whose last printed line is not an answer in words",
                                     lines[-1] if lines else "(prints nothing)", source[:60]))
    return found


def reproduce_blocks(nb: dict) -> int:
    """How many collapsed blocks are titled "Reproduce this chapter"."""
    return sum(
        1
        for cell in nb["cells"]
        if cell["cell_type"] == "markdown"
        for b in blocks(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]))
        if b.collapsed and REPRODUCE_TITLE.lower() in b.title.lower()
    )


# 7. **A main path read in 20–30 minutes**: prose, visible code, figures and tables at plain reading rates.
WORDS_PER_MINUTE = 200  # careful reading of technical prose
CODE_LINES_PER_MINUTE = 15  # reading code to understand it, not to type it
MINUTES_PER_FIGURE = 0.5  # a figure or a small table, looked at and compared with the sentence beside it
MAX_MAIN_PATH_MINUTES = 30  # DESIGN.md: "a student reads the main path of a chapter in 20–30 minutes"


def _source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _code_block_lines(markdown: str) -> int:
    """Lines inside code blocks (```python …```) of the prose that sit outside collapsed blocks."""
    n, fence, depth = 0, None, 0
    for line in markdown.split("\n"):
        if fence is not None:
            if line.strip() == fence:
                fence = None
            elif not depth:
                n += bool(line.strip())
            continue
        if _CODE_OPEN.match(line):
            fence = re.match(r"\s*(`{3,}|~{3,})", line).group(1)
        elif re.match(r"^\s*(`{3,}|:{3,})\s*\{(dropdown|toggle)\}", line) or ":class: dropdown" in line:
            depth += 1
        elif depth and re.match(r"^\s*(`{3,}|:{3,})\s*$", line):
            depth -= 1
    return n


def measure_reading(nb: dict) -> dict:
    """Main-path words, visible code lines, figures/tables and the reading minutes they add up to."""
    values = glued_values(nb)
    words = code = visuals = 0
    for cell in nb["cells"]:
        source, tags = _source(cell), set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "markdown":
            for block in blocks(source):
                if not block.collapsed:
                    text = GLUE_ROLE.sub(lambda m: values.get(m.group(1), "0"), block.text)
                    words += len(re.findall(r"[\w'’.,%+-]*\w", re.sub(r"\{[\w:-]+\}`[^`]*`", "x", text)))
            code += _code_block_lines(source)
        elif cell["cell_type"] == "code" and not tags & (REMOVED_TAGS | COLLAPSED_TAGS):
            if not tags & {"remove-input", "hide-input"}:
                code += sum(1 for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#"))
            if not tags & {"remove-output", "hide-output"}:
                for out in cell.get("outputs", []):
                    data = out.get("data", {})
                    if "scrapbook" not in out.get("metadata", {}) and ("image/png" in data or "text/html" in data):
                        visuals += 1
    minutes = words / WORDS_PER_MINUTE + code / CODE_LINES_PER_MINUTE + visuals * MINUTES_PER_FIGURE
    return {"words": words, "code_lines": code, "figures_and_tables": visuals, "minutes": round(minutes, 1)}
