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
import time
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


def grader_environment(extra: dict | None = None) -> dict:
    """The environment nbgrader runs in: this one without any ``LFD13_*`` variable (nothing inherited
    from the instructor's shell can switch the sandbox off or change its limits), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LFD13_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return {**env, **(extra or {})}


def nbgrader(args: list[str], cwd: Path, *, progress=None, log: Path | None = None, env=None,
             wrap: list[str] | None = None, memory: int | None = None, timeout: float | None = None) -> int:
    """Run ``nbgrader ARGS`` in ``cwd`` (after ``wrap``, e.g. ``unshare``), with at most ``memory`` bytes
    of address space and ``timeout`` seconds; count 'Autograding' lines on ``progress``; keep the log.
    Returns the exit status (-9 when it was stopped at its time limit)."""
    import threading

    cmd = [*(wrap or []), sys.executable, "-m", "nbgrader", *args]

    def limits():
        if memory:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    with subprocess.Popen(cmd, cwd=cwd, env=grader_environment(env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1, errors="replace",
                          preexec_fn=limits if memory else None, start_new_session=timeout is not None) as proc:
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, 9) if proc.poll() is None else None)
            timer.start()
        lines: list[str] = []
        size = 0
        for line in proc.stdout:
            size += len(line)
            if size < 4 * MAX_LOG:
                lines.append(line)
            if progress is not None and "] Autograding " in line:
                progress.update(1)
        if timer is not None:
            timer.cancel()
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
          jobs: int = 1, unsafe: bool = False, notebook_timeout: int | None = None,
          cgroup: str | None = None) -> dict[str, dict]:
    """Autograde the collected submissions in nbgrader runs of up to ``CHUNK`` students, ``jobs`` at a
    time, each in a private temporary copy of the course; a submission a run did not grade, or whose
    grading hit a time or memory limit while other submissions were graded beside it, is graded again
    alone, after the others, and that result is final; every outcome is recorded in
    ``.course/status.json``. Refuses (SystemExit) when the sandbox cannot be set up (bubblewrap, a
    control group per sandbox), unless ``unsafe`` (a trusted test run only)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    protect(course)
    if not (course / "gradebook.db").exists():
        raise SystemExit("no gradebook: run `course.py release` first")
    inherited = sorted(k for k in os.environ if k.startswith("LFD13_") and "UNSAFE" in k.upper())
    if inherited:
        print(f"WARNING: ignoring {', '.join(inherited)} from the environment: only `course.py grade "
              "--unsafe-no-sandbox` switches the sandbox off.", file=sys.stderr)
    todo = {name: who for name in names if (who := submissions(course, name, students))}
    total = sum(len(v) for v in todo.values())
    if total == 0:
        print("nothing to grade: run `course.py collect --from DIR` first")
        return {}
    sys.path.insert(0, str(course / "grading"))
    import kernel_launcher  # noqa: PLC0415

    config = [f"--Execute.timeout={timeout}"] if timeout else []
    if notebook_timeout:
        config.append(f"--SandboxedExecute.notebook_timeout={notebook_timeout}")
    if cgroup:
        config.append(f"--SandboxedExecute.cgroup_parent={cgroup}")
    if unsafe:
        print("WARNING: --unsafe-no-sandbox: student code runs WITHOUT ISOLATION, as this user, able to read and "
              "change everything this user can (solutions, the gradebook, other submissions), with no limit on "
              "its processes or memory. Use it only for a trusted test run.", file=sys.stderr)
        config.append("--SandboxedExecute.unsafe_no_sandbox=True")
    else:
        problem = kernel_launcher.preflight(cgroup_parent=cgroup)
        if problem:
            raise SystemExit(f"course.py grade refuses to run student code: {problem}")
    chunks = [(name, who[i:i + CHUNK]) for name, who in todo.items() for i in range(0, len(who), CHUNK)]
    alone_already = len(chunks) == 1 and total == 1
    results: dict[str, dict] = {}
    with tqdm(total=total, desc="grading", unit="notebook") as bar:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(_grade_chunk, course, name, who, bar, config, i)
                       for i, (name, who) in enumerate(chunks)]
            for future in futures:
                results.update(future.result())
    # a time or memory limit hit beside other submissions: graded again alone, nothing else running
    again = sorted(k for k, v in results.items() if v.pop("limit_hit", False) and v["status"] == "graded")
    if again and not alone_already:
        print(f"grading {len(again)} submission(s) again alone (a time or memory limit was hit): "
              f"{', '.join(again)}", file=sys.stderr)
        for key in again:
            student, name = key.split("/")
            start = time.monotonic()
            log = course / ".course" / f"grade-{name}-{student}-alone.log"
            rc, done, info = _autograde(course, name, [student], None, config, log)
            results[key] = ({"status": "graded", "seconds": round(time.monotonic() - start, 1), "graded_alone": True}
                            if student in done else
                            {"status": "failed", "detail": f"nbgrader exit status {rc}; see {log}"})
            if info.get("left"):
                results[key]["left_on_host"] = info["left"]
    for v in results.values():
        v.pop("limit_hit", None)
    status = load_status(course)
    status.update(results)
    (course / ".course").mkdir(exist_ok=True)
    (course / ".course" / "status.json").write_text(json.dumps(status, indent=1, sort_keys=True))
    protect(course)
    failed = sorted(k for k, v in results.items() if v["status"] != "graded")
    left = sorted({p for v in results.values() for p in v.get("left_on_host", [])})
    print(f"nbgrader logs: {course / '.course'}/grade-<assignment>-<n>.log")
    if left:
        print(f"ERROR: grading could not remove {len(left)} path(s) from this machine: {'; '.join(left[:10])}",
              file=sys.stderr)
    if failed:
        print(f"{len(failed)} submission(s) could not be graded: {', '.join(failed)}", file=sys.stderr)
    summary(course)
    return results


def load_status(course: Path) -> dict[str, dict]:
    try:
        return json.loads((course / ".course" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _cgroup_parent(config: list[str]) -> str | None:
    given = [c.split("=", 1)[1] for c in config if c.startswith("--SandboxedExecute.cgroup_parent=")]
    return given[0] if given else None


def _private_mounts() -> list[str]:
    """As root, nbgrader runs in a mount namespace of its own: the boxes' tmpfs mounts die with it."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--mount", "--propagation", "private"]
    return []


def _autograde(course: Path, name: str, who: list[str], bar, config: list[str], log: Path
               ) -> tuple[int, set[str], dict]:
    """One nbgrader autograde run for ``who``; returns its exit status, the students it graded and what
    the sandbox reported: {"limit_hit": students, "left": paths it could not remove}."""
    import confine  # noqa: PLC0415 - assignments/grading, on sys.path once grade() started

    tmp = Path(tempfile.mkdtemp(prefix="lfd13-grade-", dir=confine.temp_root()))
    tmp.chmod(0o711)  # searchable, not listable: each sandbox's own uid reaches its box by its full path
    info: dict = {"limit_hit": set(), "left": []}
    try:
        work = tmp / "course"
        work.mkdir(mode=0o700)
        scratch = tmp / "s"  # the sandbox's boxes: inside this run's folder, removed with it
        scratch.mkdir(mode=0o711)
        report = tmp / "report.jsonl"
        (work / "nbgrader_config.py").write_text(
            f"c = get_config()\nload_subconfig({str(course / 'nbgrader_config.py')!r})\n")
        with _GRADEBOOK_LOCK:
            shutil.copy(course / "gradebook.db", work / "gradebook.db")
        for student in who:
            shutil.copytree(course / "submitted" / student / name, work / "submitted" / student / name, symlinks=True)
        prefix = f"{tmp.name}-"  # this run's control groups: any the run leaves behind are removed below
        rc = nbgrader(["autograde", name, "--force", *config, f"--SandboxedExecute.report_file={report}",
                       f"--SandboxedExecute.cgroup_prefix={prefix}"], work,
                      progress=bar, log=log, env={"TMPDIR": str(scratch)}, wrap=_private_mounts())
        if "--SandboxedExecute.unsafe_no_sandbox=True" not in config:
            info["left"] += confine.sweep(prefix, _cgroup_parent(config))
        done = {s for s in who if (work / "autograded" / s / name / f"{name}.ipynb").is_file()}
        if report.exists():
            for line in report.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("limit_hit"):
                    info["limit_hit"].add(entry.get("student"))
                info["left"] += entry.get("left") or []
        for student in done:
            dest = course / "autograded" / student / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(work / "autograded" / student / name, dest)
        if done:
            with _GRADEBOOK_LOCK:
                merge_gradebook(course / "gradebook.db", work / "gradebook.db", name, sorted(done))
    finally:
        info["left"] += confine.remove_tree(tmp)
    return rc, done, info


def _grade_chunk(course: Path, name: str, who: list[str], bar, config: list[str], index: int) -> dict[str, dict]:
    start = time.monotonic()
    logs = course / ".course"
    rc, done, info = _autograde(course, name, who, bar, config, logs / f"grade-{name}-{index}.log")
    per = (time.monotonic() - start) / max(len(who), 1)
    results = {f"{s}/{name}": {"status": "graded", "seconds": round(per, 1), "limit_hit": s in info["limit_hit"]}
               for s in done}
    for student in who:
        if student in done:
            continue
        for stale in (course / "autograded" / student / name,):
            shutil.rmtree(stale, ignore_errors=True)
        log = logs / f"grade-{name}-{student}.log"
        if len(who) > 1:  # graded again alone, so that nothing else in its run can be the cause
            start = time.monotonic()
            rc_alone, alone, more = _autograde(course, name, [student], None, config, log)
            info["left"] += more["left"]
            if student in alone:
                results[f"{student}/{name}"] = {"status": "graded", "seconds": round(time.monotonic() - start, 1),
                                                "limit_hit": student in more["limit_hit"]}
                continue
        else:
            rc_alone = rc
            shutil.copy(logs / f"grade-{name}-{index}.log", log)
        results[f"{student}/{name}"] = {"status": "failed", "detail": f"nbgrader exit status {rc_alone}; see {log}"}
    if info["left"]:
        for key in results:
            results[key]["left_on_host"] = info["left"]
    return results


_GRADEBOOK_LOCK = __import__("threading").Lock()


def merge_gradebook(main: Path, graded: Path, assignment: str, students: list[str] | None = None) -> None:
    """Copy one assignment's submissions, grades and comments (of ``students``, default all) from a grading
    copy into the main gradebook, through nbgrader's ``Gradebook`` API."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry

    warnings.filterwarnings("ignore", message=".*not in session.*")  # SQLAlchemy, inside nbgrader's add_submission
    with Gradebook(f"sqlite:///{graded}") as src, Gradebook(f"sqlite:///{main}") as dst:
        for sub in src.assignment_submissions(assignment):
            student = sub.student
            if students is not None and student.id not in students:
                continue
            dst.update_or_create_student(student.id, first_name=student.first_name, last_name=student.last_name,
                                         email=student.email, lms_user_id=student.lms_user_id)
            try:
                dst.remove_submission(assignment, student.id)  # a previous grading of this submission
            except MissingEntry:
                pass
            extra = {k: v for k, v in (("timestamp", sub.timestamp), ("extension", sub.extension)) if v is not None}
            dst.add_submission(assignment, student.id, **extra)
            for nb in sub.notebooks:
                target = dst.find_submission_notebook(nb.name, assignment, student.id)
                target.flagged = nb.flagged
                target.late_submission_penalty = nb.late_submission_penalty
                for g in nb.grades:
                    mine = dst.find_grade(g.name, nb.name, assignment, student.id)
                    mine.auto_score, mine.manual_score = g.auto_score, g.manual_score
                    mine.extra_credit, mine.needs_manual_grade = g.extra_credit, g.needs_manual_grade
                for c in nb.comments:
                    mine = dst.find_comment(c.name, nb.name, assignment, student.id)
                    mine.auto_comment, mine.manual_comment = c.auto_comment, c.manual_comment
            dst.db.commit()  # as nbgrader's own SaveAutoGrades does


# ---------------------------------------------------------------- feedback, export, summary
FEEDBACK_MEMORY = 4 << 30   # bytes of address space for the feedback of one submission
FEEDBACK_TIMEOUT = 300      # seconds for the feedback of one submission
ALLOWED_TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div", "dl", "dt",
                "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "q", "s",
                "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
                "thead", "tr", "u", "ul", "var"}
ALLOWED_ATTRIBUTES = {"*": {"class", "title"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
                      "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
DATA_IMAGE = re.compile(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=\s]*\Z")
FEEDBACK_CSS = """
body { font-family: sans-serif; font-size: 14px; max-width: 60em; margin: 1em auto; padding: 0 1em; color: #222; }
pre, code { font-family: monospace; white-space: pre-wrap; word-break: break-word; }
div.input_area, div.highlight { background: #f6f6f6; padding: 0.3em; }
div.cell { margin: 0.8em 0; }
div.output_error, div.output_stderr { background: #fdecea; }
div.prompt { color: #888; font-family: monospace; }
.panel-heading h4 { font-size: 1.3em; }
img { max-width: 100%; }
"""


def _attribute(tag: str, name: str, value: str) -> str | None:
    """Attribute filter for nh3: images only as inline PNG or JPEG, links only to http(s), mailto or the page."""
    if tag == "img" and name == "src":
        return value if DATA_IMAGE.match(value) else None
    if tag == "a" and name == "href":
        v = value.strip().lower()
        return value if v.startswith(("http://", "https://", "mailto:", "#")) else None
    return value


def sanitize_html(html: str) -> str:
    """A feedback page that is safe to open: the whole page (markdown cells included) passed through an
    allow-list sanitiser (nh3, the Rust ``ammonia`` library): text, headings, lists, tables, code, links
    and inline images survive; scripts, styles, frames, ``srcdoc``, objects, embeds, forms, ``meta``,
    ``base``, event handlers and every other tag or attribute do not. The page gets the grader's own
    small stylesheet back; nothing a student wrote can style or script it."""
    import nh3

    body = nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, attribute_filter=_attribute,
                     url_schemes={"http", "https", "mailto", "data"}, link_rel="noopener noreferrer nofollow",
                     strip_comments=True, clean_content_tags={"script", "style"})
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">\n"
            f"<title>Feedback</title>\n<style>{FEEDBACK_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def feedback(course: Path, names: list[str], students: list[str] | None = None) -> None:
    """HTML feedback, one nbgrader run per submission, each bounded in memory and time; every page is
    then rewritten by ``sanitize_html``."""
    failed = []
    for name in names:
        who = sorted(p.parent.name for p in (course / "autograded").glob(f"*/{name}")
                     if students is None or p.parent.name in students)
        for student in who:
            log = course / ".course" / f"feedback-{name}-{student}.log"
            rc = nbgrader(["generate_feedback", name, "--force", f"--student={student}"], course, log=log,
                          memory=FEEDBACK_MEMORY, timeout=FEEDBACK_TIMEOUT)
            page = course / "feedback" / student / name / f"{name}.html"
            if rc:
                failed.append(f"{student}/{name} (see {log})")
                if page.exists():
                    page.unlink()  # never a page that was not sanitised
            elif page.exists():
                page.write_text(sanitize_html(page.read_text(errors="replace")))
    files = sorted((course / "feedback").glob("*/*/*.html")) if (course / "feedback").is_dir() else []
    protect(course)
    print(f"{len(files)} feedback file(s) in {course / 'feedback'}/<student>/<assignment>/")
    if failed:
        raise SystemExit(f"nbgrader generate_feedback failed (or ran out of its {FEEDBACK_TIMEOUT} s or "
                         f"{FEEDBACK_MEMORY >> 30} GiB) for {', '.join(failed)}")


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
                   help="DANGEROUS: run student code without isolation or limits (a trusted test run only)")
    p.add_argument("--cgroup", help="a delegated cgroup v2 folder for the sandboxes' groups (default: made under "
                                    "/sys/fs/cgroup, as root)")
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
              args.notebook_timeout, args.cgroup)
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
