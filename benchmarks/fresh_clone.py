"""Time the README's two commands in a fresh clone: ``make book``, then ``make test``.

A newcomer clones the repository and runs ``make book`` (it creates ``.venv``, installs
everything and builds the book from the notebooks' committed outputs) and ``make test``
(the whole suite: unit tests, every chapter re-executed and checked, the book build and browser checks,
the grading pipeline). This script does exactly that in a new folder, from the current
commit, and records both wall times in ``benchmarks/results.json`` under ``fresh_clone``
(budgets on the course's 2-core machine: 5 minutes for ``make book`` with its install,
20 minutes for ``make test``). Run it on a quiet machine::

    python benchmarks/fresh_clone.py            # clone into a temporary folder
    python benchmarks/fresh_clone.py --dir /srv/lfd13-clone
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import update_results  # noqa: E402
BUDGETS_S = {"make book": 300.0, "make test": 1200.0}


def run(cmd: list[str], cwd: Path, log: Path) -> tuple[int, float]:
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc.returncode, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to clone (default: a new temporary folder)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="lfd13-fresh-"))
    clone = base / "lfd13"
    if clone.exists():
        shutil.rmtree(clone)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    record: dict[str, object] = {"commit": commit, "clone": str(clone), "cpus": os.cpu_count(), "python": platform.python_version()}
    env_note = {k: v for k, v in os.environ.items() if k.startswith("LFD13_")}
    if env_note:
        record["environment"] = env_note
    for target in BUDGETS_S:
        log = base / f"{target.replace(' ', '-')}.log"
        rc, seconds = run(target.split(), clone, log)
        tail = log.read_text(errors="replace").splitlines()[-3:]
        summary = next((line for line in reversed(tail) if re.search(r"\d+ passed", line)), tail[-1] if tail else "")
        record[target] = {"seconds": round(seconds, 1), "budget_s": BUDGETS_S[target], "returncode": rc,
                          "within_budget": rc == 0 and seconds <= BUDGETS_S[target], "last_line": summary.strip()}
        print(f"{target}: rc {rc}, {seconds:.0f} s (budget {BUDGETS_S[target]:.0f} s) — {summary.strip()}  [log: {log}]", flush=True)
        if rc != 0:
            break
    update_results("fresh_clone", record)
    return 0 if all(isinstance(v, dict) and v.get("returncode") == 0 for k, v in record.items() if k in BUDGETS_S) else 1


if __name__ == "__main__":
    sys.exit(main())
