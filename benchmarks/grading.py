"""Grading time per submission, through the whole pipeline (collect, sandboxed autograde, judge).

    python benchmarks/grading.py              # honest and hostile submissions of all three assignments
    python benchmarks/grading.py --jobs 2     # nbgrader runs in parallel (default 2, the 2-core machine)

Builds a course in a temporary folder, releases it, writes the solution, the blank release, the
correct alternatives and the hostile notebooks of the test suite (``tests/assignments``), grades
them with ``course.py grade`` and records, under the key ``"grading"`` of
``benchmarks/results.json`` (read, modified and written back at the moment of saving; other
keys are kept), the wall time, the time per submission and how many honest and hostile
submissions were graded; the record it replaces is kept under ``"grading_before"`` with its
``--label`` (so a change to the grader is measured before and after on the same machine).
Goal: at most 20 s per submission on the 2-core machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import RESULTS, update_results  # noqa: E402
GOAL_S = 20.0
sys.path.insert(0, str(ROOT / "tests" / "assignments"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-save", action="store_true", help="print only, do not touch results.json")
    parser.add_argument("--label", default="", help="what this measurement is of (e.g. a commit or a change)")
    args = parser.parse_args()
    import assignment_variants as variants
    import conftest as c

    os.environ["LFD13_CHUNK"] = "8"  # course.py's default: nbgrader runs of up to 8 submissions
    with tempfile.TemporaryDirectory(prefix="lfd13-bench-") as tmp:
        base = Path(tmp)
        course = c.copy_course(base / "course")
        c.run_course(course, "release", "--book-dir", "")
        notebooks: dict[tuple[str, str], object] = {}
        kinds: dict[tuple[str, str], str] = {}
        for a in c.ASSIGNMENTS:
            notebooks[(f"solution-{a}", a)] = c.submission(course, a, drop_demos=False)
            notebooks[(f"blank-{a}", a)] = nbformat.read(course / "release" / a / f"{a}.ipynb", as_version=4)
            for i, (_, answers) in enumerate(variants.CORRECT[a]):
                notebooks[(f"correct-{a}-{i}", a)] = c.submission(course, a, answers=answers)
        kinds = {k: "honest" for k in notebooks}
        for key, nb in c.hostile_submissions(course).items():
            notebooks[key], kinds[key] = nb, "hostile"
        for (student, a), nb in notebooks.items():
            path = base / "inbox" / student / a / f"{a}.ipynb"
            path.parent.mkdir(parents=True)
            path.write_bytes(nb) if isinstance(nb, bytes) else nbformat.write(nb, path)
        c.run_course(course, "collect", "--from", str(base / "inbox"))
        start = time.monotonic()
        proc = c.run_course(course, "grade", "--jobs", str(args.jobs), "--timeout", "30", timeout=3600, check=False)
        wall = time.monotonic() - start
        status = json.loads((course / ".course" / "status.json").read_text()) if proc.returncode == 0 else {}
    graded = {k for k in notebooks if status.get(f"{k[0]}/{k[1]}", {}).get("status") == "graded"}
    n = len(notebooks)
    figures = {
        "submissions": n,
        "honest_graded": sum(1 for k in graded if kinds[k] == "honest"),
        "honest_total": sum(1 for k in kinds if kinds[k] == "honest"),
        "hostile_graded": sum(1 for k in graded if kinds[k] == "hostile"),
        "hostile_total": sum(1 for k in kinds if kinds[k] == "hostile"),
        "jobs": args.jobs,
        "submissions_per_nbgrader_run": 8,
        "wall_s": round(wall, 1),
        "seconds_per_submission": round(wall / n, 2),
        "goal_seconds_per_submission": GOAL_S,
        "goal_met": wall / n <= GOAL_S,
        "grade_exit_status": proc.returncode,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "label": args.label,
        "graded_alone_after_a_limit": sum(1 for v in status.values() if v.get("graded_alone")),
        "note": "wall time of `course.py grade` (sandbox check, nbgrader, kernels, judge) divided by the submissions; "
                "hostile ones include a 30 s cell timeout and the corrupted notebook is graded twice (then recorded "
                "as failed); a submission that hit a time or memory limit beside others is graded again alone",
    }
    print(json.dumps(figures, indent=1))
    if not args.no_save:
        update_results("grading_before", lambda data: data.get("grading"))
        update_results("grading", figures)
        print(f"saved under 'grading' in {RESULTS}")


if __name__ == "__main__":
    main()
