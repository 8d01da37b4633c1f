"""Time a full build of the book, every notebook executed from scratch.

Builds into a fresh temporary folder with its own empty execution cache, exactly as
``make book`` builds a fresh clone (``jupyter-book build . --builder html``), and
records the wall time in ``benchmarks/results.json`` under ``book_build``
(budget: 8 minutes on the course's 2-core CPU machine). Run it on a quiet machine::

    python benchmarks/book_build.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from notebooks import ENV, RESULTS, ROOT  # the same offline environment as every notebook run

BUDGET_S = 480.0


def main() -> int:
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    with tempfile.TemporaryDirectory(prefix="lfd13-book-") as out:
        cmd = [str(jupyter_book), "build", str(ROOT), "--builder", "html", "--path-output", out]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        executed = len(list(Path(out, "_build", ".jupyter_cache", "executed").glob("*"))) if proc.returncode == 0 else 0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        print(f"build failed after {seconds:.0f} s")
        return 1
    record = {"seconds": round(seconds, 1), "budget_s": BUDGET_S, "within_budget": seconds <= BUDGET_S,
              "notebooks_executed": executed, "cpus": os.cpu_count(), "python": platform.python_version()}
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["book_build"] = record
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"full book build, every notebook executed: {seconds:.0f} s (budget {BUDGET_S:.0f} s) -> {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
