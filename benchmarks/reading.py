"""How long a student needs for a chapter's main path: words, code, figures and tables outside collapsed blocks.

The chapter form (DESIGN.md) asks for a main path a student reads in 20–30 minutes. This counts what
a reader meets when every dropdown and hidden cell stays closed, and turns it into minutes with
plain reading rates:

- prose: the markdown outside collapsed blocks, glued values substituted, at ``WORDS_PER_MINUTE``;
- code: visible code lines (code cells not hidden, and code blocks in the prose), at ``CODE_LINES_PER_MINUTE``;
- figures and tables: each visible image or HTML table output, ``MINUTES_PER_FIGURE`` to look at.

The counting is ``tests.prose_rules.measure_reading``, which the prose checks also use.

Usage::

    python benchmarks/reading.py                      # every chapter
    python benchmarks/reading.py book/03_mae.ipynb    # one chapter
    python benchmarks/reading.py --rev a9a4fff        # the chapters as committed at a revision

It prints a table and saves it under ``reading`` (or ``reading_<rev>``) in ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import update_results  # noqa: E402
from tests.prose_rules import measure_reading  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters (default: every book/0*.ipynb)")
    parser.add_argument("--rev", help="read the chapters as committed at this git revision")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "book").glob("0*.ipynb"))
    rows = {}
    for path in paths:
        if args.rev:  # the chapter as committed: its path inside the repository
            rel = (path if path.is_absolute() else ROOT / path).resolve().relative_to(ROOT).as_posix()
            text = subprocess.run(["git", "show", f"{args.rev}:{rel}"], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout
        else:  # any notebook, in the repository or not
            text = path.read_text()
        rows[path.stem] = measure_reading(json.loads(text))
    print(f"{'chapter':<22}{'words':>7}{'code lines':>12}{'figures+tables':>16}{'minutes':>9}")
    for stem, r in rows.items():
        print(f"{stem:<22}{r['words']:>7}{r['code_lines']:>12}{r['figures_and_tables']:>16}{r['minutes']:>9}")
    key = f"reading_{args.rev}" if args.rev else "reading"
    update_results(key, lambda data: {**data.get(key, {}), **rows})


if __name__ == "__main__":
    main()
