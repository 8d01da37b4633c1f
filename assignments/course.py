"""Instructor CLI for the lfd13 assignments: release, collect, grade, feedback, export.

    python assignments/course.py release                 # release/ + book/_static/assignments/
    python assignments/course.py collect --from DIR      # DIR/<student>/<assignment>/<assignment>.ipynb
    python assignments/course.py grade                   # autograde every collected submission
    python assignments/course.py feedback                # feedback/<student>/<assignment>/*.html
    python assignments/course.py export --csv FILE       # one row per student and assignment
    python assignments/course.py all --from DIR --csv FILE

Each command wraps an nbgrader step. Grading never runs in the course directory: each assignment is
autograded in one nbgrader run (all its students at once) inside a private temporary copy holding
only the gradebook and the submissions being graded; every notebook's kernel runs sandboxed (its
own unprivileged uid, the instructor's files hidden, limits on time and resources), and the hidden
tests are judged outside the kernel (``grading/``). Submissions are never modified: ``collect``
archives a previous version before taking a new one, and the folder collected from is only read.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COURSE = Path(__file__).resolve().parent
ASSIGNMENTS = ("masking", "contrastive", "lora")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def nbgrader(args: list[str], cwd: Path, *, progress=None, log: Path | None = None, env=None) -> int:
    """Run ``nbgrader ARGS`` in ``cwd``; count 'Autograding' lines on ``progress``; keep the log."""
    bindir = str(Path(sys.executable).parent)
    run_env = {**os.environ, **(env or {}), "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [sys.executable, "-m", "nbgrader", *args]
    with subprocess.Popen(cmd, cwd=cwd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if progress is not None and "] Autograding " in line:
                progress.update(1)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(lines))
    if proc.returncode and progress is None:
        sys.stderr.write("".join(lines[-30:]))
    return proc.returncode


def protect(course: Path) -> None:
    """Make the instructor's files readable by their owner only (student code never runs as the owner)."""
    for name in ("source", "submitted", "submitted_archive", "autograded", "feedback", "grading", ".course"):
        if (course / name).is_dir():
            (course / name).chmod(0o700)
    if (course / "gradebook.db").exists():
        (course / "gradebook.db").chmod(0o600)


# ---------------------------------------------------------------- release
def release(course: Path, names: list[str], book_dir: Path | None) -> None:
    protect(course)
    batches = [["*"]] if sorted(names) == sorted(ASSIGNMENTS) else [[name] for name in names]  # "*": one run
    for batch in batches:
        log = course / ".course" / f"release-{batch[0].strip('*') or 'all'}.log"
        if nbgrader(["generate_assignment", *batch, "--force"], course, log=log):
            raise SystemExit(f"nbgrader generate_assignment {batch[0]} failed: see {log}")
    for name in names:
        released = course / "release" / name / f"{name}.ipynb"
        print(f"released {released.relative_to(course)}")
        if book_dir is not None:
            book_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(released, book_dir / f"{name}.ipynb")
            print(f"  copied to {book_dir / f'{name}.ipynb'}")
    protect(course)  # the new gradebook too


def validate(course: Path, names: list[str], jobs: int = 1) -> dict[str, tuple[bool, bool]]:
    """``nbgrader validate`` must pass on each source notebook (where the hidden cells run the real
    checks, in-process for the instructor) and fail on each released one; ``jobs`` assignments at once.
    Returns {name: (source passed, release failed)}."""
    if jobs > 1 and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor

        def one(name: str) -> tuple[str, str]:
            proc = subprocess.run([sys.executable, __file__, "--course", str(course), "validate", name],
                                  capture_output=True, text=True)
            return name, proc.stdout

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outputs = dict(pool.map(one, names))
        results = {}
        for name in names:
            print(outputs[name], end="")
            results[name] = (f"{name}: source passes" in outputs[name], "release fails as it should" in outputs[name])
        return results
    from nbgrader.validator import Validator

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(course / "grading"), os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    validator = Validator()
    results = {}
    for name in names:
        src = validator.validate(str(course / "source" / name / f"{name}.ipynb"))
        rel = validator.validate(str(course / "release" / name / f"{name}.ipynb"))
        results[name] = (not src, bool(rel.get("failed")))
        print(f"{name}: source {'passes' if results[name][0] else 'FAILS'}, "
              f"release {'fails as it should' if results[name][1] else 'PASSES (wrong)'}")
        for failure in src.get("failed", []):
            print("  source failure:", failure["raw_error"].strip().splitlines()[-1][:300])
    return results


# ---------------------------------------------------------------- collect
def collect(course: Path, source: Path) -> list[tuple[str, str, str]]:
    """Copy DIR/<student>/<assignment>/<assignment>.ipynb (or DIR/<student>/<assignment>.ipynb)
    into submitted/. A different earlier submission is archived, never overwritten."""
    if not source.is_dir():
        raise SystemExit(f"--from {source}: no such directory")
    rows = []
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    for student_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        student = student_dir.name
        if not SAFE_ID.match(student):
            rows.append((student, "-", "skipped: unsafe student id"))
            continue
        for name in ASSIGNMENTS:
            found = [student_dir / name / f"{name}.ipynb", student_dir / f"{name}.ipynb"]
            found = [p for p in found if p.is_file()]
            if not found:
                continue
            dest_dir = course / "submitted" / student / name
            dest = dest_dir / f"{name}.ipynb"
            if dest.exists() and filecmp.cmp(found[0], dest, shallow=False):
                rows.append((student, name, "unchanged"))
                continue
            status = "new"
            if dest_dir.exists():
                archive = course / "submitted_archive" / student / name / stamp
                archive.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(dest_dir), str(archive))
                status = f"updated (previous kept in submitted_archive/{student}/{name}/{stamp})"
            dest_dir.mkdir(parents=True)
            shutil.copyfile(found[0], dest)
            mtime = dt.datetime.fromtimestamp(found[0].stat().st_mtime, dt.timezone.utc)
            (dest_dir / "timestamp.txt").write_text(mtime.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
            rows.append((student, name, status))
    protect(course)
    table(["student", "assignment", "collected"], rows)
    return rows


# ---------------------------------------------------------------- grade
def submissions(course: Path, name: str, students: list[str] | None) -> list[str]:
    root = course / "submitted"
    found = sorted(p.parent.name for p in root.glob(f"*/{name}") if p.is_dir()) if root.is_dir() else []
    return [s for s in found if students is None or s in students]


def grade(course: Path, names: list[str], students: list[str] | None = None, timeout: int | None = None,
          jobs: int = 1) -> None:
    """Autograde each assignment in one nbgrader run, in a private temporary copy of the course.
    With ``jobs > 1`` the assignments are graded in parallel; their results are merged back."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    protect(course)
    if not (course / "gradebook.db").exists():
        raise SystemExit("no gradebook: run `course.py release` first")
    todo = {name: who for name in names if (who := submissions(course, name, students))}
    total = sum(len(v) for v in todo.values())
    if total == 0:
        print("nothing to grade: run `course.py collect --from DIR` first")
        return
    env = {"LFD13_CELL_TIMEOUT": str(timeout)} if timeout else {}
    with tqdm(total=total, desc="grading", unit="notebook") as bar:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(_grade_one, course, name, who, bar, env) for name, who in todo.items()]
            for future in futures:
                future.result()
    protect(course)
    print(f"nbgrader logs: {course / '.course'}/grade-<assignment>.log")
    summary(course)


def _grade_one(course: Path, name: str, who: list[str], bar, env: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="lfd13-grade-") as tmp:
        work = Path(tmp) / "course"
        work.mkdir(mode=0o700)
        (work / "nbgrader_config.py").write_text(
            f"c = get_config()\nload_subconfig({str(course / 'nbgrader_config.py')!r})\n")
        with _GRADEBOOK_LOCK:
            shutil.copy(course / "gradebook.db", work / "gradebook.db")
        for student in who:
            shutil.copytree(course / "submitted" / student / name, work / "submitted" / student / name)
        nbgrader(["autograde", name, "--force"], work, progress=bar, log=course / ".course" / f"grade-{name}.log",
                 env=env)
        for student in who:
            out = work / "autograded" / student / name
            dest = course / "autograded" / student / name
            if dest.exists():
                shutil.rmtree(dest)
            if out.exists():
                shutil.copytree(out, dest)
        with _GRADEBOOK_LOCK:
            merge_gradebook(course / "gradebook.db", work / "gradebook.db", name)


_GRADEBOOK_LOCK = __import__("threading").Lock()


def merge_gradebook(main: Path, graded: Path, assignment: str) -> None:
    """Copy one assignment's submissions and grades from a grading copy into the main gradebook."""
    import sqlite3

    db = sqlite3.connect(main)
    try:
        db.execute("ATTACH DATABASE ? AS g", (str(graded),))
        db.execute("INSERT OR IGNORE INTO student SELECT * FROM g.student")
        db.execute("CREATE TEMP TABLE subs AS SELECT s.id FROM g.submitted_assignment s "
                   "JOIN g.assignment a ON s.assignment_id = a.id WHERE a.name = ?", (assignment,))
        db.execute("CREATE TEMP TABLE nbs AS SELECT id FROM g.submitted_notebook "
                   "WHERE assignment_id IN (SELECT id FROM subs)")
        db.execute("INSERT OR REPLACE INTO submitted_assignment SELECT * FROM g.submitted_assignment "
                   "WHERE id IN (SELECT id FROM subs)")
        db.execute("INSERT OR REPLACE INTO submitted_notebook SELECT * FROM g.submitted_notebook "
                   "WHERE id IN (SELECT id FROM nbs)")
        for table in ("grade", "comment"):
            db.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM g.{table} "
                       "WHERE notebook_id IN (SELECT id FROM nbs)")
        db.commit()
    finally:
        db.close()


# ---------------------------------------------------------------- feedback, export, summary
def feedback(course: Path, names: list[str], students: list[str] | None = None) -> None:
    for name in names:
        if any((course / "autograded").glob(f"*/{name}")):
            who = [f"--student={s}" for s in students or []]
            nbgrader(["generate_feedback", name, "--force", *who], course,
                     log=course / ".course" / f"feedback-{name}.log")
    files = sorted((course / "feedback").glob("*/*/*.html")) if (course / "feedback").is_dir() else []
    print(f"{len(files)} feedback file(s) in {course / 'feedback'}/<student>/<assignment>/")


def scores(course: Path) -> list[dict]:
    """One row per student and assignment with a submission: score, max score, status."""
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "lfd13") as gb:
        for student in sorted(s.id for s in gb.students):
            for name in ASSIGNMENTS:
                if not (course / "submitted" / student / name).exists():
                    continue
                graded = (course / "autograded" / student / name / f"{name}.ipynb").exists()
                try:
                    sub = gb.find_submission(name, student)
                    score, max_score = sub.score, sub.max_score
                except MissingEntry:
                    score, max_score = 0.0, None
                rows.append({"student": student, "assignment": name, "score": score if graded else 0.0,
                             "max_score": max_score, "status": "graded" if graded else
                             "not gradable (see the grading log)"})
    return rows


def summary(course: Path) -> list[dict]:
    rows = scores(course)
    table(["student", "assignment", "score", "status"],
          [(r["student"], r["assignment"], f"{r['score']:g} / {r['max_score'] or '?'}", r["status"]) for r in rows])
    return rows


def export(course: Path, path: Path) -> None:
    rows = scores(course)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "assignment", "score", "max_score", "status"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} row(s) to {path}")


def table(header: list[str], rows: list[tuple]) -> None:
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(header)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*map(str, r)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", type=Path, default=COURSE, help="course directory (default: this one)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="generate the student versions (and copy them into the book)")
    p.add_argument("assignments", nargs="*", default=list(ASSIGNMENTS))
    p.add_argument("--book-dir", default=str(COURSE.parent / "book" / "_static" / "assignments"),
                   help="where the book's download copies go ('' to skip)")
    p = sub.add_parser("validate", help="nbgrader validate: sources pass, releases fail")
    p.add_argument("assignments", nargs="*", default=list(ASSIGNMENTS))
    p.add_argument("--jobs", type=int, default=1, help="assignments validated in parallel (default 1)")
    p = sub.add_parser("collect", help="copy submissions from a folder into submitted/")
    p.add_argument("--from", dest="source", type=Path, required=True)
    p = sub.add_parser("grade", help="autograde collected submissions in the sandbox")
    p.add_argument("assignments", nargs="*", default=list(ASSIGNMENTS))
    p.add_argument("--student", action="append", help="only these students (repeatable)")
    p.add_argument("--timeout", type=int, help="seconds per cell (default 60)")
    p.add_argument("--jobs", type=int, default=1, help="assignments graded in parallel (default 1)")
    p = sub.add_parser("feedback", help="generate HTML feedback for graded submissions")
    p.add_argument("assignments", nargs="*", default=list(ASSIGNMENTS))
    p.add_argument("--student", action="append", help="only these students (repeatable)")
    p = sub.add_parser("export", help="write the grades to a CSV file")
    p.add_argument("--csv", type=Path, default=Path("grades.csv"))
    sub.add_parser("summary", help="print the table of scores")
    p = sub.add_parser("all", help="collect, grade, feedback and export in one go")
    p.add_argument("--from", dest="source", type=Path, required=True)
    p.add_argument("--csv", type=Path, default=Path("grades.csv"))
    args = parser.parse_args(argv)
    course = args.course.resolve()

    if args.command == "release":
        release(course, args.assignments, Path(args.book_dir).resolve() if args.book_dir else None)
    elif args.command == "validate":
        results = validate(course, args.assignments, args.jobs)
        if not all(a and b for a, b in results.values()):
            raise SystemExit(1)
    elif args.command == "collect":
        collect(course, args.source)
    elif args.command == "grade":
        grade(course, args.assignments, args.student, args.timeout, args.jobs)
    elif args.command == "feedback":
        feedback(course, args.assignments, args.student)
    elif args.command == "export":
        export(course, args.csv)
    elif args.command == "summary":
        summary(course)
    elif args.command == "all":
        if not (course / "gradebook.db").exists():
            release(course, list(ASSIGNMENTS), None)
        collect(course, args.source)
        grade(course, list(ASSIGNMENTS))
        feedback(course, list(ASSIGNMENTS))
        export(course, args.csv)


if __name__ == "__main__":
    main()
