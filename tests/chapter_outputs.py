"""Does a chapter, re-run here, show the book's results? Numbers within their noise, words exactly.

The book renders the outputs committed in its notebooks. ``make test`` executes every chapter
top to bottom and compares what it prints and glues with those committed outputs. An exact
comparison (what nbval does) holds on one CPU family only: PyTorch's CPU kernels choose their
code path by instruction set (AVX-512, AVX2, NEON, a GPU), and thread counts change the order
of reductions, so a trained number moves in its last digits from one machine to the next.
What a reader anywhere must get is the same *conclusions* with numbers *within noise*. So each
output is split into its words and its numbers:

- **Words exactly.** Everything that is not a number — verdict words ("above", "level with"),
  rankings, chosen settings by name, sentences, table layouts, figure sizes — must be equal,
  character for character.
- **Numbers within a tolerance for their kind** (``Rule``; the kind is read from how the page
  prints the number, see ``rule_for``):

  ========================  ==========================================  =====================
  kind                      how it is recognised                        tolerance
  ========================  ==========================================  =====================
  integer                   no decimal point (counts, sizes, steps,     exact
                            seeds, chosen ranks, "95 %")
  floating-point error      scientific notation below 1e-3              same order of
                            (|merged − unmerged| = 3.9e-07)             magnitude (×/÷ 10)
  percentage points         followed by "%" or "points", printed with   ±1.0 point
                            a "+", or a bound of such a 95 % interval
                            or any signed number of a comparison table
  fraction (0 to 1)         other numbers within [-1, 1]: accuracies,   ±0.01: a few test
                            NMI, cosines, rates                         examples (the test
                                                                        sets hold 300-540)
  other real number         losses, ratios, norms, slopes               ±2 % relative
  ========================  ==========================================  =====================

  Every tolerance is at least one unit of the number's last printed digit (it was rounded),
  and never wider than the spread the page prints beside it: a number printed as
  ``x ± s`` is compared within ``min(tolerance, s)``, and an estimate printed with its 95 %
  interval, and the interval's bounds, within ``min(tolerance, half the interval's width)``.
- **Not compared**: images (a figure's pixels follow its numbers, which are compared), the
  outputs of cells tagged ``nbval-ignore-output`` (wall-clock timings only), and what
  ``VOLATILE`` removes (wall-clock seconds, progress bars, memory addresses).

A few quantities are noisier than their kind's rule: a single short training run shown live
beside the results computed once (Chapter 4's 600-step CLIP model, Chapter 6's prompt tuning run). ``WIDER`` lists each; its
tolerance is a spread the page itself prints for that quantity, read from the committed page.

Why a small checker on nbclient rather than nbval: nbval compares text exactly, after regular
expression sanitisers; it has no notion of a number's tolerance, so on a second CPU family it
either fails on the last digit or, with every digit sanitised away, checks no number at all.

Run one chapter's check by hand with ``pytest book/03_mae.ipynb``; ``make test-second-path``
runs every chapter under a second numerical path of this CPU (``second_path_env``).
"""
from __future__ import annotations

import copy
import os
import platform
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Output that changes from run to run and is never compared.
VOLATILE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0xADDRESS"),  # memory addresses
    (re.compile(r"\d+%\|[^\n]*\|[^\n]*"), "PROGRESS"),  # tqdm progress bars
    (re.compile(r"\d+(?:\.\d+)?\s?(?:s|sec|seconds|ms)\b"), "TIME"),  # wall-clock seconds
)
#: Cells whose outputs are run but not compared: wall-clock timings only (checked by a test).
IGNORE_TAG = "nbval-ignore-output"

# A number as the pages print it: optional sign (ASCII or Unicode minus), thousands commas,
# decimals, exponent. Not part of a word (``seed0``, ``r32``) or of a version (``2.14.1``).
NUMBER = re.compile(r"(?<![\w.])([+\-\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?([eE][+\-]?\d+)?(?![\w]|\.\d)")
POINTS_AFTER = re.compile(r"\s?(?:%|(?:percentage )?points?\b|pp\b)")
SPREAD_AFTER = re.compile(r"\s*±\s*(\d+(?:\.\d+)?)")
_SIGNED = r"[+\-\u2212]?\d[\d,]*(?:\.\d+)?"
INTERVAL_CLAUSE = re.compile(
    rf"(?:CI|interval)\s+(?P<lower>{_SIGNED})\s+to\s+(?P<upper>{_SIGNED})(?P<unit>\s?(?:%|points?\b))?")


@dataclass(frozen=True)
class Rule:
    """How far a re-run number may move from the committed one."""

    kind: str
    absolute: float = 0.0  # allowed |difference|
    relative: float = 0.0  # allowed |difference| / |committed|
    magnitude: bool = False  # floating-point error: only its order of magnitude matters

    def allows(self, committed: float, executed: float, *, unit: float, spread: float | None = None) -> bool:
        if self.magnitude:
            same_side = (committed >= 0) == (executed >= 0)
            low, high = sorted((abs(committed), abs(executed)))
            return same_side and (high <= 1e-3 and (low == 0 or high / low <= 10.0))
        return abs(executed - committed) <= self.tolerance(committed, unit=unit, spread=spread) + 1e-12

    def tolerance(self, committed: float, *, unit: float, spread: float | None = None) -> float:
        """The allowed |difference|: the rule, at least one printed unit, at most the printed spread."""
        tol = max(self.absolute, self.relative * abs(committed))
        if tol > 0:
            tol = max(tol, unit)
        if spread is not None:
            tol = min(tol, max(spread, unit if tol > 0 else 0.0))
        return tol


INTEGER = Rule("integer")
FLOAT_ERROR = Rule("floating-point error", magnitude=True)
POINTS = Rule("percentage points", absolute=1.0)
FRACTION = Rule("fraction", absolute=0.01)
REAL = Rule("real number", relative=0.02)


@dataclass(frozen=True)
class Wider:
    """A quantity noisier than its kind's rule: its tolerance is the spread the page reports for it."""

    chapter: str  # notebook stem
    where: str  # regex searched in "<glue name or output kind>: <text before the number>"
    widens: Rule  # the kind's rule that this quantity would otherwise get
    spread: str  # regex whose group 1 is the spread, searched in the page's committed outputs
    scale: float  # the spread's unit in the quantity's: 100 for a fraction's spread in points
    why: str

    def rule(self, outputs: str) -> Rule:
        """The rule for this quantity, its tolerance read from the page's ``outputs``."""
        found = re.findall(self.spread, outputs)
        if len(found) != 1:
            raise LookupError(f"{self.chapter}: the spread {self.spread!r} of an exception in WIDER (tests/chapter_outputs.py) "
                              f"is printed {len(found)} times on the page, not once: update the exception with the page")
        return Rule(f"{self.widens.kind} of a single short run", absolute=self.scale * float(found[0]))


_SINGLE_RUN_SE = r"glue peft_se_points: ([\d.]+)"
_LIVE_HELD_OUT_SD = r"mean ± sd: seen [\d.]+ ± [\d.]+\s+held-out [\d.]+ ± ([\d.]+)"

#: The exceptions to ``rule_for``; each tolerance is a spread the page itself reports.
WIDER: tuple[Wider, ...] = (
    Wider("04_clip", r"^glue clip_live_heldout: |\blive model\b[^\n]*held-out\s*\Z", FRACTION, _LIVE_HELD_OUT_SD, 1.0,
          "the 600-step live model is one short training run: its held-out accuracy moves between numerical "
          "paths by as much as the checkpoints' held-out accuracies spread over seeds (sd 0.048)"),
    Wider("04_clip", r"^glue clip_longer_diff: |\blive model\b[^\n]*minus live model:[^\n]*\Z", POINTS, _LIVE_HELD_OUT_SD,
          100.0, "the checkpoint's held-out accuracy minus the live model's: the live model's noise, in points"),
    Wider("06_peft", r"prompt tuning on draw 0: test accuracy\s*\Z", FRACTION, _SINGLE_RUN_SE, 0.01,
          "prompt tuning's test accuracy, trained again on the page, is one short training run on 200 test posts: it "
          "moves between numerical paths by about the standard error the page states for a single run's accuracy"),
    Wider("04_clip", r"after training: similarity on the diagonal\s*\Z", FRACTION,
          r"similarity on the diagonal [\d.]+ ± ([\d.]+)", 1.0,
          "the live model's mean similarity of 12 pairs, printed with its sd over the pairs"),
)


def page_exceptions(notebook: dict, chapter: str) -> list[tuple[Wider, Rule]]:
    """The ``WIDER`` entries of ``chapter``, each with its rule read from the committed page."""
    entries = [w for w in WIDER if w.chapter == chapter]
    if not entries:
        return []
    outputs = "\n".join(f"{label}: {text}" for cell in notebook["cells"] if cell["cell_type"] == "code"
                        for label, text in comparable(cell))
    return [(w, w.rule(outputs)) for w in entries]


@dataclass(frozen=True)
class Number:
    text: str
    value: float
    start: int
    end: int
    unit: float  # one unit of the last printed digit
    integer: bool
    scientific: bool


def numbers(text: str) -> list[Number]:
    found = []
    for m in NUMBER.finditer(text):
        sign, whole, frac, exp = m.groups()
        literal = ("-" if sign in ("-", "\u2212") else "") + whole.replace(",", "") + (frac or "") + (exp or "")
        value = float(literal)
        decimals = len(frac) - 1 if frac else 0
        unit = 10.0 ** (-decimals) * (10.0 ** int(exp[1:]) if exp else 1.0)
        found.append(Number(m.group(0), value, m.start(), m.end(), unit, frac is None and exp is None, exp is not None))
    return found


def skeleton(text: str) -> str:
    """The text with every number replaced by ``#``: what must match exactly.

    Runs of spaces count as one: a plain-text table pads its columns to the widest number, so
    0.53 beside 0.533 shifts the columns without changing a word.
    """
    return re.sub(r"[ \t]+", " ", NUMBER.sub("#", text))


# The header of lfd13.report.comparison_table's difference column, printed with every such table.
COMPARISON_HEADER = "difference (points)"
# An interval in a table column (lfd13.report.comparison_table: "-6.5 to +7.8"), both bounds signed.
SIGNED_PAIR = re.compile(r"(?<![\w.])(?P<lower>[+\-\u2212]\d[\d,]*(?:\.\d+)?)\s+to\s+(?P<upper>[+\-\u2212]\d[\d,]*(?:\.\d+)?)")


def interval_bounds_in_points(text: str) -> set[int]:
    """Start offsets of the numbers that bound a 95 % interval of a difference in points.

    Besides a "CI"/"interval" clause, a pair of signed bounds with a "+" ("-6.5 to +7.8") is a
    difference's interval in points. In a comparison table (its ``difference (points)`` header
    printed with it) every signed number is in points: the differences, and their bounds,
    "-11.8" and "-8.6 to -1.3" included.
    """
    found = set()
    if COMPARISON_HEADER in text:  # every signed number in it is a difference or a bound of its interval, in points
        found.update(n.start for n in numbers(text) if n.text[:1] in ("+", "-", "\u2212"))
    for m in SIGNED_PAIR.finditer(text):
        if "+" in (m.group("lower")[:1], m.group("upper")[:1]):
            found.update((m.start("lower"), m.start("upper")))
    for m in INTERVAL_CLAUSE.finditer(text):
        before = text[max(0, m.start() - 40):m.start()].replace("95 %", "").replace("95%", "")
        lower, upper = m.group("lower"), m.group("upper")
        if m.group("unit") or "+" in (lower[:1], upper[:1]) or re.search(r"%|\bpoints?\b", before):
            found.update((m.start("lower"), m.start("upper")))
    return found


ESTIMATE_AND_INTERVAL = re.compile(
    rf"(?:(?P<estimate>{_SIGNED})(?:\s?(?:%|points?\b))?,?\s*\(?)?95\s?%\s*(?:CI|interval)\s+"
    rf"(?P<lower>{_SIGNED})\s+to\s+(?P<upper>{_SIGNED})")


def interval_spreads(text: str) -> dict[int, float]:
    """Start offset -> half-width of its 95 % interval, for every estimate and bound printed with one.

    What a page reports as an interval is the spread of its estimate: none of the three numbers
    may move further than the interval's half-width.
    """
    spreads = {}
    for m in ESTIMATE_AND_INTERVAL.finditer(text):
        half = abs(_value(m.group("upper")) - _value(m.group("lower"))) / 2
        for name in ("estimate", "lower", "upper"):
            if m.group(name) is not None:
                spreads[m.start(name)] = half
    return spreads


def _value(text: str) -> float:
    return float(text.replace("\u2212", "-").replace(",", ""))


def rule_for(text: str, number: Number, in_points: set[int] | frozenset[int] = frozenset()) -> Rule:
    """The kind of ``number`` from how ``text`` prints it (the table in the module docstring).

    ``in_points``: ``interval_bounds_in_points(text)``, the bounds of intervals in points.
    """
    if number.integer:
        return INTEGER
    if number.scientific and abs(number.value) < 1e-3:
        return FLOAT_ERROR
    if POINTS_AFTER.match(text, number.end) or number.text.startswith("+") or number.start in in_points:
        return POINTS
    if abs(number.value) <= 1.0:
        return FRACTION
    return REAL


@dataclass(frozen=True)
class Difference:
    where: str  # "code cell 7, stream" or "code cell 9, glue ch1_vs_pixels"
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _wider(exceptions: list[tuple[Wider, Rule]], label: str, text: str, number: Number, default: Rule) -> Rule:
    context = f"{label}: {text[:number.start]}"
    for w, rule in exceptions:
        if w.widens is default and re.search(w.where, context):
            return rule
    return default


@dataclass(frozen=True)
class Moved:
    """A number that differs between the committed and the executed output, with its rule."""

    committed: Number
    executed: Number
    rule: Rule
    tolerance: float | None  # None for a floating-point error (only its magnitude is judged)
    within: bool


def moved_numbers(committed: str, executed: str, *, label: str = "",
                  exceptions: list[tuple[Wider, Rule]] | None = None, bare: Rule | None = None) -> Iterator[Moved]:
    """Each number of two sanitised outputs with the same words that moved, judged by its rule."""
    in_points, intervals = interval_bounds_in_points(committed), interval_spreads(committed)
    for a, b in zip(numbers(committed), numbers(executed)):
        if a.text == b.text:
            continue
        kind = bare if bare is not None and not a.integer and committed.strip() == a.text else rule_for(committed, a, in_points)
        rule = _wider(exceptions or [], label, committed, a, kind)
        m = SPREAD_AFTER.match(committed, a.end)
        printed = ([float(m.group(1))] if m else []) + ([intervals[a.start]] if a.start in intervals else [])
        spread = min(printed) if printed else None
        tolerance = None if rule.magnitude else rule.tolerance(a.value, unit=a.unit, spread=spread)
        yield Moved(a, b, rule, tolerance, rule.allows(a.value, b.value, unit=a.unit, spread=spread))


def compare_text(committed: str, executed: str, *, where: str = "", label: str = "",
                 exceptions: list[tuple[Wider, Rule]] | None = None, bare: Rule | None = None) -> list[Difference]:
    """The differences between two outputs beyond noise: any word, or a number beyond its rule.

    ``exceptions``: ``page_exceptions`` of the page. ``bare``: the rule for a glued value that is
    one bare number, read from how the page's prose prints it (``glue_rules``).
    """
    committed, executed = sanitise(committed), sanitise(executed)
    if committed == executed:
        return []
    if skeleton(committed) != skeleton(executed):
        return [Difference(where, "the words differ (only numbers may move):\n" + _word_diff(committed, executed))]
    out = []
    for moved in moved_numbers(committed, executed, label=label, exceptions=exceptions, bare=bare):
        if not moved.within:
            a, b = moved.committed, moved.executed
            tol = "its order of magnitude" if moved.tolerance is None else f"±{moved.tolerance:.3g}"
            line = committed[committed.rfind("\n", 0, a.start) + 1:committed.find("\n", a.end) % (len(committed) + 1)]
            out.append(Difference(where, f"{a.text} became {b.text}, beyond {tol} ({moved.rule.kind}) in: {line.strip()[:200]}"))
    return out


def sanitise(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def _word_diff(a: str, b: str) -> str:
    la, lb = skeleton(a).splitlines(), skeleton(b).splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"  committed: {a.splitlines()[i][:300]}\n  this run:  {b.splitlines()[i][:300]}"
    return f"  committed has {len(la)} lines, this run {len(lb)}"


def comparable(cell: dict) -> Iterator[tuple[str, str]]:
    """(label, text) for each compared output of a code cell."""
    if IGNORE_TAG in cell.get("metadata", {}).get("tags", []):
        return
    pending: tuple[str, str] | None = None  # a stream arrives in chunks that depend on timing: join them
    for out in cell.get("outputs", []):
        kind = out["output_type"]
        if kind == "stream":
            if pending and pending[0] == out["name"]:
                pending = (pending[0], pending[1] + _join(out["text"]))
            else:
                if pending:
                    yield pending
                pending = (out["name"], _join(out["text"]))
            continue
        if pending:
            yield pending
            pending = None
        if kind in ("display_data", "execute_result"):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            data = out.get("data", {})
            for mime in sorted(data):  # a kernel sends the types in any order; a saved notebook sorts them
                value = data[mime]
                if mime.startswith("image/"):
                    continue  # a figure's pixels follow its numbers, which are compared
                yield (f"glue {name}" if name else mime), _join(value) if isinstance(value, (str, list)) else str(value)
        else:  # an error
            yield "error", f"{out.get('ename')}: {out.get('evalue')}"
    if pending:
        yield pending


def _join(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


GLUE_USE = re.compile(r"\{glue(?::\w+)?\}`(?P<name>[\w.-]+)(?::(?P<format>[^`]*))?`(?P<unit>\s?(?:%|points?\b|pp\b))?")


def glue_rules(notebook: dict) -> dict[str, Rule]:
    """The kind of each glued number from how the prose prints it: "{glue:text}`x:.1f` points".

    A glue named ``…_points`` or ``…_pct`` is in percentage points wherever the prose uses it.
    """
    rules: dict[str, Rule] = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for m in GLUE_USE.finditer(_join(cell["source"])):
            if m.group("unit") or re.search(r"_(?:points|pct|pp)$", m.group("name")):
                rules[m.group("name")] = POINTS
            elif (m.group("format") or "").endswith("%"):  # a fraction shown as a percentage
                rules.setdefault(m.group("name"), FRACTION)
    return rules


def compare_notebooks(committed: dict, executed: dict, *, chapter: str = "") -> list[Difference]:
    """Every difference beyond noise between a notebook's committed and executed outputs."""
    bare, exceptions = glue_rules(committed), page_exceptions(committed, chapter)
    a = [c for c in committed["cells"] if c["cell_type"] == "code"]
    b = [c for c in executed["cells"] if c["cell_type"] == "code"]
    if len(a) != len(b):
        return [Difference("notebook", f"{len(a)} code cells committed, {len(b)} executed")]
    out: list[Difference] = []
    for i, (x, y) in enumerate(zip(a, b)):
        ox, oy = list(comparable(x)), list(comparable(y))
        where = f"code cell {i}"
        if [label for label, _ in ox] != [label for label, _ in oy]:
            out.append(Difference(where, f"outputs {[lab for lab, _ in ox]} committed, {[lab for lab, _ in oy]} now"
                                         + "".join(f"\n  {t[:300]}" for lab, t in oy if lab == "error")))
            continue
        for (label, tx), (_, ty) in zip(ox, oy):
            name = label[len("glue "):] if label.startswith("glue ") else None
            out += compare_text(tx, ty, where=f"{where}, {label}", label=label, exceptions=exceptions, bare=bare.get(name))
    return out


CELL_TIMEOUT_S = int(os.environ.get("LFD13_CELL_TIMEOUT", "900"))  # a slower or busier machine may raise it


def execute(notebook: dict, *, cwd: Path, timeout: int = CELL_TIMEOUT_S):
    """A copy of ``notebook`` executed top to bottom in a fresh kernel (errors raise)."""
    import nbformat
    from nbclient import NotebookClient

    executed = nbformat.from_dict(copy.deepcopy(notebook))
    NotebookClient(executed, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return executed


def execute_and_compare(notebook: dict, *, cwd: Path, chapter: str = "", keep: Path | None = None) -> list[Difference]:
    """Execute ``notebook`` and return its differences from its committed outputs beyond noise.

    ``keep``: where to write the executed copy (also when a cell fails).
    """
    from nbclient.exceptions import CellExecutionError

    import nbformat

    executed = nbformat.from_dict(copy.deepcopy(notebook))
    try:
        executed = execute(notebook, cwd=cwd)
    except CellExecutionError as err:
        return [Difference("a cell raised an error", str(err)[-3000:])]
    finally:
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(executed, keep)
    return compare_notebooks(notebook, executed, chapter=chapter)


def second_path_env() -> dict[str, str]:
    """Settings that make the CPU kernels take a second numerical path on this machine.

    AVX-512 CPUs are limited to AVX2 (what an AVX2-only machine computes); AVX2 CPUs to SSE4.1;
    other CPUs (ARM) to PyTorch's portable kernels. On x86 this covers PyTorch's own kernels
    (ATen), oneDNN's convolutions, MKL's matrix products and, through ``OPENBLAS_CORETYPE``,
    the OpenBLAS under NumPy, SciPy and scikit-learn (the probes' and baselines' fits).
    """
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and capability.startswith("AVX512"):
        return {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                "OPENBLAS_CORETYPE": "Haswell"}
    if machine in ("x86_64", "amd64"):
        return {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default",
                "OPENBLAS_CORETYPE": "Nehalem"}
    return {"ATEN_CPU_CAPABILITY": "default"}


def numerical_path() -> str:
    """One line naming the path this process computes on (CPU capability, settings, threads)."""
    import torch

    keys = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE", "LFD13_NUM_THREADS")
    settings = ", ".join(f"{k}={os.environ[k]}" for k in keys if k in os.environ) or "defaults"
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()} ({settings})"


if __name__ == "__main__":
    # `python tests/chapter_outputs.py second-path`: the settings as VAR=value words for `env`.
    if sys.argv[1:] == ["second-path"]:
        print(" ".join(f"{k}={v}" for k, v in second_path_env().items()))
    elif len(sys.argv) == 3:  # compare two executed copies of a notebook: committed, executed
        import json

        a, b = (json.loads(Path(p).read_text()) for p in sys.argv[1:])
        diffs = compare_notebooks(a, b, chapter=Path(sys.argv[1]).stem)
        print("\n".join(map(str, diffs)) or "no difference beyond noise")
        sys.exit(1 if diffs else 0)
    else:
        sys.exit("usage: python tests/chapter_outputs.py second-path | COMMITTED.ipynb EXECUTED.ipynb")
