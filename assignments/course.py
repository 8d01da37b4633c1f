"""Instructor CLI for the lfd13 assignments: release, collect, grade, feedback, export.

    python assignments/course.py release                 # release/ + book/_static/assignments/
    python assignments/course.py collect --from DIR      # DIR/<student>/<assignment>/<assignment>.ipynb
    python assignments/course.py grade                   # autograde every collected submission
    python assignments/course.py feedback                # feedback/<student>/<assignment>/*.html
    python assignments/course.py export --csv FILE       # one row per student and assignment
    python assignments/course.py all --from DIR --csv FILE

Each command wraps an nbgrader step and checks its exit status. Grading never runs in the course
directory: submissions are autograded in nbgrader runs of a few students each, inside private
temporary copies holding only the gradebook and those submissions; a submission that a run could
not grade is graded again alone, and if it still fails that is recorded for it (``export`` lists
every collected submission with its status). Every notebook's kernel runs in bubblewrap (an
allow-list file system, its own namespaces, limits; see ``grading/kernel_launcher.py``) in an
environment without the reference libraries, and the hidden tests are judged outside it
(``grading/``); where the sandbox cannot be set up, ``grade`` refuses and says why.
Submissions are never modified: ``collect`` archives a previous version before taking a new one,
takes regular files only, and the folder collected from is only read.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import filecmp
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

COURSE = Path(__file__).resolve().parent
ASSIGNMENTS = ("masking", "contrastive", "lora")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_SUBMISSION = 10 << 20  # bytes; a released notebook is ~20 kB, one with plots a few hundred kB
MAX_LOG = 2 << 20          # bytes kept of one nbgrader log
CHUNK = int(os.environ.get("LFD13_CHUNK", "8"))  # submissions per nbgrader run
CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07?|\x1b.|[\x00-\x08\x0b-\x1f\x7f]")


def clean_log(text: str) -> str:
    """A log safe to read in a terminal: no control sequences, long lines cut, capped in size."""
    lines = [CONTROL.sub("", line)[:2000] for line in text[-MAX_LOG:].splitlines()]
    return "\n".join(lines) + "\n"


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
        log.write_text(clean_log("".join(lines)))
    if proc.returncode and progress is None:
        sys.stderr.write(clean_log("".join(lines[-30:])))
    return proc.returncode


def protect(course: Path) -> None:
    """Make the generated instructor data readable by its owner only (a precaution against other local
    users; the sandbox does not rely on it: student code sees only an allow-list of paths)."""
    for name in ("submitted", "submitted_archive", "autograded", "feedback", ".course"):
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
def _regular_file(path: Path) -> tuple[bytes | None, str]:
    """The bytes of ``path`` if it is a regular file (not a symbolic link) within the size cap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        return None, "skipped: a symbolic link" if path.is_symlink() else f"skipped: unreadable ({err.strerror})"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "skipped: not a regular file"
        if st.st_size > MAX_SUBMISSION:
            return None, f"skipped: larger than {MAX_SUBMISSION >> 20} MB"
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_SUBMISSION + 1)
        if len(data) > MAX_SUBMISSION:
            return None, f"skipped: larger than {MAX_SUBMISSION >> 20} MB"
        return data, ""
    finally:
        os.close(fd)


def collect(course: Path, source: Path) -> list[tuple[str, str, str]]:
    """Copy DIR/<student>/<assignment>/<assignment>.ipynb (or DIR/<student>/<assignment>.ipynb)
    into submitted/. Only regular files are taken: symbolic links (to a file or a folder), devices
    and files over the size cap are skipped with a message. A different earlier submission is
    archived, never overwritten."""
    if not source.is_dir():
        raise SystemExit(f"--from {source}: no such directory")
    rows = []
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    for student_dir in sorted(source.iterdir()):
        student = student_dir.name
        if student_dir.is_symlink():
            rows.append((student, "-", "skipped: a symbolic link"))
            continue
        if not student_dir.is_dir():
            continue
        if not SAFE_ID.match(student):
            rows.append((student, "-", "skipped: unsafe student id"))
            continue
        for name in ASSIGNMENTS:
            candidates = [student_dir / name / f"{name}.ipynb", student_dir / f"{name}.ipynb"]
            if (student_dir / name).is_symlink():
                rows.append((student, name, "skipped: a symbolic link"))
                candidates = candidates[1:]
            found = [p for p in candidates if os.path.lexists(p)]
            if not found:
                continue
            data, why = _regular_file(found[0])
            if data is None:
                rows.append((student, name, why))
                continue
            dest_dir = course / "submitted" / student / name
            dest = dest_dir / f"{name}.ipynb"
            if dest.is_file() and dest.read_bytes() == data:
                rows.append((student, name, "unchanged"))
                continue
            status = "new"
            if dest_dir.exists():
                archive = course / "submitted_archive" / student / name / stamp
                archive.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(dest_dir), str(archive))
                status = f"updated (previous kept in submitted_archive/{student}/{name}/{stamp})"
            dest_dir.mkdir(parents=True)
            dest.write_bytes(data)
            mtime = dt.datetime.fromtimestamp(found[0].lstat().st_mtime, dt.timezone.utc)
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
          jobs: int = 1, unsafe: bool = False, notebook_timeout: int | None = None) -> dict[str, dict]:
    """Autograde the collected submissions in nbgrader runs of up to ``CHUNK`` students, ``jobs`` at a
    time, each in a private temporary copy of the course; a submission a run did not grade is graded
    again alone; every outcome is recorded in ``.course/status.json``. Refuses (SystemExit) when the
    sandbox cannot be set up, unless ``unsafe`` (a trusted test run only)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    protect(course)
    if not (course / "gradebook.db").exists():
        raise SystemExit("no gradebook: run `course.py release` first")
    todo = {name: who for name in names if (who := submissions(course, name, students))}
    total = sum(len(v) for v in todo.values())
    if total == 0:
        print("nothing to grade: run `course.py collect --from DIR` first")
        return {}
    sys.path.insert(0, str(course / "grading"))
    import kernel_launcher  # noqa: PLC0415

    env = {"LFD13_CELL_TIMEOUT": str(timeout)} if timeout else {}
    if notebook_timeout:
        env["LFD13_NOTEBOOK_TIMEOUT"] = str(notebook_timeout)
    if unsafe:
        print("WARNING: --unsafe-no-sandbox: student code runs WITHOUT ISOLATION, as this user, able to read and "
              "change everything this user can (solutions, the gradebook, other submissions). Use it only for a "
              "trusted test run.", file=sys.stderr)
        env["LFD13_UNSAFE_NO_SANDBOX"] = "1"
    else:
        problem = kernel_launcher.preflight()
        if problem:
            raise SystemExit(f"course.py grade refuses to run student code: {problem}")
    chunks = [(name, who[i:i + CHUNK]) for name, who in todo.items() for i in range(0, len(who), CHUNK)]
    results: dict[str, dict] = {}
    with tqdm(total=total, desc="grading", unit="notebook") as bar:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(_grade_chunk, course, name, who, bar, env, i) for i, (name, who) in enumerate(chunks)]
            for future in futures:
                results.update(future.result())
    status = load_status(course)
    status.update(results)
    (course / ".course").mkdir(exist_ok=True)
    (course / ".course" / "status.json").write_text(json.dumps(status, indent=1, sort_keys=True))
    protect(course)
    failed = sorted(k for k, v in results.items() if v["status"] != "graded")
    print(f"nbgrader logs: {course / '.course'}/grade-<assignment>-<n>.log")
    if failed:
        print(f"{len(failed)} submission(s) could not be graded: {', '.join(failed)}", file=sys.stderr)
    summary(course)
    return results


def load_status(course: Path) -> dict[str, dict]:
    try:
        return json.loads((course / ".course" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _autograde(course: Path, name: str, who: list[str], bar, env: dict, log: Path) -> tuple[int, set[str]]:
    """One nbgrader autograde run for ``who``; returns its exit status and the students it graded."""
    with tempfile.TemporaryDirectory(prefix="lfd13-grade-") as tmp:
        work = Path(tmp) / "course"
        work.mkdir(mode=0o700)
        (work / "nbgrader_config.py").write_text(
            f"c = get_config()\nload_subconfig({str(course / 'nbgrader_config.py')!r})\n")
        with _GRADEBOOK_LOCK:
            shutil.copy(course / "gradebook.db", work / "gradebook.db")
        for student in who:
            shutil.copytree(course / "submitted" / student / name, work / "submitted" / student / name, symlinks=True)
        rc = nbgrader(["autograde", name, "--force"], work, progress=bar, log=log, env=env)
        done = {s for s in who if (work / "autograded" / s / name / f"{name}.ipynb").is_file()}
        for student in done:
            dest = course / "autograded" / student / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(work / "autograded" / student / name, dest)
        if done:
            with _GRADEBOOK_LOCK:
                merge_gradebook(course / "gradebook.db", work / "gradebook.db", name, sorted(done))
    return rc, done


def _grade_chunk(course: Path, name: str, who: list[str], bar, env: dict, index: int) -> dict[str, dict]:
    import time

    start = time.monotonic()
    logs = course / ".course"
    rc, done = _autograde(course, name, who, bar, env, logs / f"grade-{name}-{index}.log")
    per = (time.monotonic() - start) / max(len(who), 1)
    results = {f"{s}/{name}": {"status": "graded", "seconds": round(per, 1)} for s in done}
    for student in who:
        if student in done:
            continue
        for stale in (course / "autograded" / student / name,):
            shutil.rmtree(stale, ignore_errors=True)
        log = logs / f"grade-{name}-{student}.log"
        if len(who) > 1:  # graded again alone, so that nothing else in its run can be the cause
            start = time.monotonic()
            rc_alone, alone = _autograde(course, name, [student], None, env, log)
            if student in alone:
                results[f"{student}/{name}"] = {"status": "graded", "seconds": round(time.monotonic() - start, 1)}
                continue
        else:
            rc_alone = rc
            shutil.copy(logs / f"grade-{name}-{index}.log", log)
        results[f"{student}/{name}"] = {"status": "failed", "detail": f"nbgrader exit status {rc_alone}; see {log}"}
    return results


_GRADEBOOK_LOCK = __import__("threading").Lock()


def merge_gradebook(main: Path, graded: Path, assignment: str, students: list[str] | None = None) -> None:
    """Copy one assignment's submissions and grades (of ``students``, default all) from a grading copy
    into the main gradebook."""
    import sqlite3

    db = sqlite3.connect(main)
    try:
        db.execute("ATTACH DATABASE ? AS g", (str(graded),))
        db.execute("INSERT OR IGNORE INTO student SELECT * FROM g.student")
        db.execute("CREATE TEMP TABLE subs AS SELECT s.id FROM g.submitted_assignment s "
                   "JOIN g.assignment a ON s.assignment_id = a.id WHERE a.name = ?", (assignment,))
        if students is not None:
            db.execute("CREATE TEMP TABLE who (id TEXT)")
            db.executemany("INSERT INTO who VALUES (?)", [(s,) for s in students])
            db.execute("DELETE FROM subs WHERE id NOT IN (SELECT s.id FROM g.submitted_assignment s "
                       "WHERE s.student_id IN (SELECT id FROM who))")
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
SCRIPT = re.compile(r"<script\b.*?</script\s*>|<script\b[^>]*/?>", re.I | re.S)
HANDLER = re.compile(r"""\s on[a-z]+ \s*=\s* ("[^"]*"|'[^']*'|[^\s>]+)""", re.I | re.X)
JS_URL = re.compile(r"""(href|src|action|formaction)\s*=\s*(["']?)\s*javascript:""", re.I)


def sanitize_html(html: str) -> str:
    """Feedback as a static page: no script elements, no event-handler attributes, no javascript: URLs."""
    html = SCRIPT.sub("", html)
    html = HANDLER.sub("", html)
    return JS_URL.sub(r"\1=\2#", html)


def feedback(course: Path, names: list[str], students: list[str] | None = None) -> None:
    failed = []
    for name in names:
        if any((course / "autograded").glob(f"*/{name}")):
            who = [f"--student={s}" for s in students or []]
            log = course / ".course" / f"feedback-{name}.log"
            if nbgrader(["generate_feedback", name, "--force", *who], course, log=log):
                failed.append(f"{name} (see {log})")
    files = sorted((course / "feedback").glob("*/*/*.html")) if (course / "feedback").is_dir() else []
    for path in files:
        path.write_text(sanitize_html(path.read_text(errors="replace")))
    protect(course)
    print(f"{len(files)} feedback file(s) in {course / 'feedback'}/<student>/<assignment>/")
    if failed:
        raise SystemExit(f"nbgrader generate_feedback failed for {', '.join(failed)}")


def scores(course: Path) -> list[dict]:
    """One row per collected submission: score, max score and status (graded, failed, not graded yet)."""
    from nbgrader.api import Gradebook, MissingEntry

    status = load_status(course)
    rows = []
    collected = sorted((p.parent.name, p.name) for p in (course / "submitted").glob("*/*")
                       if p.is_dir() and p.name in ASSIGNMENTS) if (course / "submitted").is_dir() else []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "lfd13") as gb:
        max_scores = {a.name: a.max_score for a in gb.assignments}
        for student, name in collected:
            graded = (course / "autograded" / student / name / f"{name}.ipynb").exists()
            info = status.get(f"{student}/{name}", {})
            score = 0.0
            if graded:
                try:
                    score = gb.find_submission(name, student).score
                except MissingEntry:
                    graded = False
            if graded and info.get("status", "graded") == "graded":
                state = "graded"
            elif info.get("status") == "failed":
                state, score = f"failed: {info.get('detail', 'see the grading log')}", 0.0
            else:
                state, score = "not graded yet", 0.0
            rows.append({"student": student, "assignment": name, "score": score,
                         "max_score": max_scores.get(name), "status": state})
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
    p.add_argument("--jobs", type=int, default=1, help="nbgrader runs in parallel (default 1)")
    p.add_argument("--notebook-timeout", type=int, help="seconds per notebook (default 300)")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="DANGEROUS: run student code without isolation (a trusted test run only)")
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
        grade(course, args.assignments, args.student, args.timeout, args.jobs, args.unsafe_no_sandbox,
              args.notebook_timeout)
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
