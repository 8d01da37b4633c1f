"""Hostile submissions against the host: limits per sandbox, boxes that cannot outlive the run, the
opt-out only by flag, outputs capped as they stream, and feedback that is safe to open.

Two grading runs of the masking assignment through ``course.py``: the honest students alone, then the
same honest students graded at the same time as (two nbgrader runs at once) a fork bomb, a three-process memory hog, a box filled
with a 3,000-deep read-only tree, a flood of large display messages, a submission that looks for the
solutions, and a markdown cell written to take over the feedback page, with ``LFD13_UNSAFE_NO_SANDBOX=1``
in the environment. The honest students must get identical scores in both runs, the hostile ones must
be contained, nothing may be left under the run's temporary folder, and every feedback page, opened in
headless Chromium, must run no student script and show the real score.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

import conftest as c

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "assignments" / "grading"))

import confine  # noqa: E402

HONEST = ("b-honest-solution", "d-honest-alternative")  # graded beside the hostile ones (names in sorted order)

FORK_BOMB = r'''
import os
_r, _w = os.pipe()
_forked = 0
try:
    for _ in range(100000):
        if os.fork() == 0:
            os.close(_w)
            os.read(_r, 1)     # wait until the parent has counted, then
            os.setsid()
            _x = 0
            while True:        # busy, each in a session of its own
                _x += 1
        _forked += 1
except OSError:
    pass
print("FORKED", _forked, flush=True)
os.close(_w)                   # every child starts spinning
'''

MEMORY_HOG = r'''
import os, select, time
_pipes, _kids = {}, []
for _ in range(3):
    _r, _w = os.pipe()
    _pid = os.fork()
    if _pid == 0:
        _held = b"\x01" * (1600 << 20)   # 1.6 GB each, written: 4.8 GB for the three
        os.write(_w, b"1")
        time.sleep(600)
        os._exit(0)
    os.close(_w)
    _pipes[_r] = _pid
    _kids.append(_pid)
_holding, _gone, _end = set(), set(), time.monotonic() + 25
while len(_holding | _gone) < 3 and time.monotonic() < _end:
    for _r in select.select([r for r, p in _pipes.items() if p not in _holding | _gone], [], [], 1)[0]:
        (_holding if os.read(_r, 1) else _gone).add(_pipes[_r])   # a byte: it holds its memory; EOF: killed
for _p in _kids:
    try:
        if os.waitpid(_p, os.WNOHANG) != (0, 0):
            _gone.add(_p)
    except ChildProcessError:
        _gone.add(_p)
print("HOGS_HOLDING", len(_holding - _gone), flush=True)
'''

DEEP_TREE = r'''
import os
os.chdir("/box/out")
for _ in range(3000):          # deeper than Python 3.11's shutil.rmtree can remove
    os.mkdir("d")
    os.chdir("d")
os.chdir("/box/out")
for _top in ("ro", "ro/a", "ro/a/b"):
    os.makedirs(_top, exist_ok=True)
open("ro/a/b/f", "w").write("x")
os.chmod("ro/a/b", 0o500)
os.chmod("ro/a", 0o000)
os.chmod("ro", 0o500)
print("TREE_MADE")
'''

FLOOD = r'''
from IPython.display import display
for _ in range(3):
    display({"text/plain": "x" * (150 << 20)}, raw=True)   # 150 MB messages
print("FLOOD_DONE")
'''

LOOK = r'''
import os, json
_seen = {p: os.path.exists(p) for p in SOURCES}
print("LOOK " + json.dumps({"uid": os.getuid(), "seen": _seen, "env": sorted(k for k in os.environ if "LFD13" in k)}))
'''

HOSTILE_MARKDOWN = """<style>
div, p, h1, h2, h3, h4, pre, span, table { display: none !important; }
body::before { content: "Score: 10.0 / 10.0"; position: fixed; top: 0; left: 0; font-size: 80px; }
</style>
<div style="position: fixed; top: 0; left: 0; width: 100%; background: white; z-index: 99999">Score: 10.0 / 10.0</div>
<iframe srcdoc="&lt;script&gt;parent.document.title='PWNED-iframe'; parent.window.pwned = 1;&lt;/script&gt;"></iframe>
<img src=x onerror="document.title='PWNED-img'; window.pwned = 2">
<svg onload="document.title='PWNED-svg'"><script>window.pwned = 3</script></svg>
<object data="data:text/html,&lt;script&gt;parent.window.pwned=4&lt;/script&gt;"></object>
<embed src="data:text/html,&lt;script&gt;parent.window.pwned=5&lt;/script&gt;">
<meta http-equiv="refresh" content="0; url=data:text/html,PWNED-meta">
<base href="http://127.0.0.1:9/">
<form action="javascript:window.pwned=6"><button formaction="javascript:window.pwned=7">go</button></form>
<a href="javascript:window.pwned=8">click</a>
<math><mtext><table><mglyph><style><img src=x onerror="window.pwned=9"></style></mglyph></table></mtext></math>
"""


@dataclass
class Run:
    course: Path
    tmp: Path
    proc: subprocess.CompletedProcess
    cells: dict = field(default_factory=dict)    # student -> {grade_id: score}
    totals: dict = field(default_factory=dict)   # student -> score
    status: dict = field(default_factory=dict)
    feedback_seconds: float = 0.0


def _grade(base: Path, notebooks: dict, extra_env: dict | None = None, jobs: int = 2) -> Run:
    course = c.copy_course(base / "course")
    c.run_course(course, "release", "masking", "--book-dir", "")
    inbox = base / "inbox"
    for student, nb in notebooks.items():
        path = inbox / student / "masking" / "masking.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb(course) if callable(nb) else nb, path)
    c.run_course(course, "collect", "--from", str(inbox))
    # the run's TMPDIR (searchable by the sandboxes' uids): what is left there is what course.py left
    tmp = Path(tempfile.mkdtemp(prefix="lfd13-test-tmp-", dir="/var/tmp"))
    tmp.chmod(0o711)
    # one nbgrader run per submission, two at a time: each honest student is graded while a hostile one runs
    env = {**os.environ, "LFD13_CHUNK": "1", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp), **(extra_env or {})}
    proc = subprocess.run([sys.executable, str(course / "course.py"), "--course", str(course), "grade", "masking",
                           "--timeout", "30", "--notebook-timeout", "90", "--jobs", str(jobs)],
                          capture_output=True, text=True, env=env, timeout=1800)
    c.skip_where_grading_refuses(proc)
    run = Run(course=course, tmp=tmp, proc=proc)
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "lfd13") as gb:
        for student in notebooks:
            try:
                nb = gb.find_submission_notebook("masking", "masking", student)
            except MissingEntry:
                continue
            run.cells[student] = {g.name: g.score for g in nb.grades}
            run.totals[student] = nb.score
    status = course / ".course" / "status.json"
    run.status = json.loads(status.read_text()) if status.exists() else {}
    return run


def _honest(course: Path) -> dict:
    import assignment_variants as variants

    return {"b-honest-solution": c.submission(course, "masking"),
            "d-honest-alternative": c.submission(course, "masking", answers=variants.CORRECT["masking"][0][1])}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    alone = _grade(tmp_path_factory.mktemp("honest-alone"), {s: (lambda course, s=s: _honest(course)[s])
                                                            for s in HONEST})
    base = tmp_path_factory.mktemp("with-hostile")
    sources = [str(base / "course" / "source" / "masking" / "masking.ipynb"), str(ROOT / "assignments" / "source")]

    def hostile(append: str, markdown: str | None = None, answers: dict | None = None, code: str | None = None):
        def make(course):
            nb = c.submission(course, "masking", answers=answers, append={"answer_random_masking": append})
            if markdown is not None:
                nb.cells.insert(1, nbformat.v4.new_markdown_cell(markdown))
            if code is not None:
                nb.cells.insert(1, nbformat.v4.new_code_cell(code))
            return nb
        return make

    notebooks = {s: (lambda course, s=s: _honest(course)[s]) for s in HONEST}
    notebooks.update({
        "a-forkbomb": hostile(FORK_BOMB),
        "c-memory": hostile(MEMORY_HOG),
        "e-tree": hostile(DEEP_TREE),
        "f-flood": hostile(FLOOD),
        "g-look": hostile(f"SOURCES = {sources!r}\n" + LOOK),
        "i-sleep": hostile("import time\ntime.sleep(45)"),  # past the cell's time limit: graded again alone
        "j-bigcell": hostile("pass", code="x = 1  # " + "x" * (8 << 20)),  # 8 MB of source in one cell
        "h-page": hostile("print('page')", HOSTILE_MARKDOWN, {"answer_random_masking": "pass"}),
    })
    mixed = _grade(base, notebooks, {"LFD13_UNSAFE_NO_SANDBOX": "1", "LFD13_UNSAFE": "1"})
    yield alone, mixed
    for run in (alone, mixed):
        shutil.rmtree(run.tmp, ignore_errors=True)


def _outputs(run: Run, student: str) -> str:
    """The text of every output of a graded notebook."""
    nb = nbformat.read(run.course / "autograded" / student / "masking" / "masking.ipynb", as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + out.get("data", {}).get("text/plain", "") + out.get("evalue", ""))
    return "\n".join(texts)


def _after(text: str, marker: str) -> str:
    return text.split(marker, 1)[1].split("\n", 1)[0].strip()


def test_honest_students_get_the_same_grade_beside_hostile_ones(runs):
    alone, mixed = runs
    assert alone.proc.returncode == 0, alone.proc.stderr[-3000:]
    assert mixed.proc.returncode == 0, mixed.proc.stderr[-3000:]
    for student in HONEST:
        assert alone.totals[student] == 10, (student, alone.cells.get(student))
        assert mixed.cells[student] == alone.cells[student], (student, mixed.cells[student], alone.cells[student])
        assert mixed.status[f"{student}/masking"]["status"] == "graded"


def test_the_environment_cannot_switch_the_sandbox_off(runs):
    _, mixed = runs
    assert "ignoring LFD13_UNSAFE" in mixed.proc.stderr and "WITHOUT ISOLATION" not in mixed.proc.stderr
    report = json.loads(_after(_outputs(mixed, "g-look"), "LOOK "))
    assert not any(report["seen"].values()), report  # the sandbox was there: no solution in sight
    assert report["env"] == [], report


def test_a_fork_bomb_is_bounded_by_its_sandbox(runs):
    _, mixed = runs
    text = _outputs(mixed, "a-forkbomb")
    forked = int(_after(text, "FORKED "))
    assert 0 < forked < confine.LIMITS["pids"], forked


def test_a_memory_hog_of_three_processes_is_bounded_by_its_sandbox(runs):
    _, mixed = runs
    text = _outputs(mixed, "c-memory")
    if "HOGS_HOLDING" in text:  # the kernel survived: at most what fits in the sandbox's memory
        holding = int(_after(text, "HOGS_HOLDING "))
        assert holding * (1600 << 20) < confine.LIMITS["memory"], holding
    assert mixed.status["c-memory/masking"]["status"] == "graded"


def test_nothing_is_left_on_the_host(runs):
    for run in runs:
        assert list(run.tmp.iterdir()) == [], list(run.tmp.iterdir())
        assert "could not remove" not in run.proc.stderr
    _, mixed = runs
    assert "TREE_MADE" in _outputs(mixed, "e-tree")
    for student in mixed.status:  # boxes and control groups the sandbox could not remove are reported here
        assert not mixed.status[student].get("left_on_host"), mixed.status[student]


def test_large_outputs_are_dropped_as_they_arrive(runs):
    _, mixed = runs
    path = mixed.course / "autograded" / "f-flood" / "masking" / "masking.ipynb"
    assert path.stat().st_size < 5 << 20
    assert mixed.status["f-flood/masking"]["status"] == "graded"


def test_a_limit_hit_beside_others_is_graded_again_alone(runs):
    _, mixed = runs
    assert mixed.status["i-sleep/masking"].get("graded_alone"), mixed.status["i-sleep/masking"]
    assert "again alone" in mixed.proc.stderr


# ---------------------------------------------------------------- feedback, opened in Chromium
@pytest.fixture(scope="module")
def feedback_pages(runs):
    import time

    _, mixed = runs
    start = time.monotonic()
    c.run_course(mixed.course, "feedback", "masking", "--student", "h-page", "--student", "b-honest-solution",
                 "--student", "f-flood", "--student", "j-bigcell")
    mixed.feedback_seconds = time.monotonic() - start
    return mixed, {s: mixed.course / "feedback" / s / "masking" / "masking.html"
                   for s in ("h-page", "b-honest-solution", "f-flood", "j-bigcell")}


def test_feedback_is_bounded_for_a_huge_cell(feedback_pages):
    run, pages = feedback_pages
    assert pages["j-bigcell"].stat().st_size < 1 << 20, pages["j-bigcell"].stat().st_size
    import html

    text = html.unescape(re.sub(r"<[^>]+>", "", pages["j-bigcell"].read_text()))  # highlighting splits words
    assert "more characters not shown" in text
    assert run.feedback_seconds < 240, run.feedback_seconds


def test_feedback_pages_hold_only_allowed_markup(feedback_pages):
    _, pages = feedback_pages
    html = pages["h-page"].read_text().lower()
    body = html[html.index("<body"):]
    for tag in ("<iframe", "srcdoc", "<style", "<object", "<embed", "<meta", "<base", "<script", "<form", "<svg",
                "<math", "javascript:"):
        assert tag not in body, tag
    assert html.count("<style") == 1 and html.count("<meta") == 2  # the grader's own, in the head
    assert " style=" not in body and not re.search(r"<[^>]*\son[a-z]+\s*=", body)


@pytest.mark.browser
def test_feedback_runs_no_student_script_and_shows_the_real_score(feedback_pages):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium; or run `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    run, pages = feedback_pages
    real = run.totals["h-page"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            for student, page_path in pages.items():
                page = browser.new_page()
                events: list[str] = []
                page.on("dialog", lambda d: (events.append(f"dialog {d.message}"), d.dismiss()))
                page.on("console", lambda m: events.append(f"console {m.text}"))
                page.on("request", lambda r: events.append(f"request {r.url}")
                        if not r.url.startswith(("file:", "data:image/")) else None)
                page.goto(page_path.as_uri(), wait_until="load")
                page.wait_for_timeout(1500)
                state = page.evaluate("""() => ({
                    title: document.title, pwned: window.pwned === undefined ? null : window.pwned,
                    frames: window.frames.length, url: location.href,
                    fixed: [...document.querySelectorAll('*')].filter(e => getComputedStyle(e).position === 'fixed').length,
                    hidden: document.querySelector('h4') && document.querySelector('h4').offsetParent === null,
                    heading: (document.querySelector('h4') || {}).innerText || '',
                })""")
                assert state["pwned"] is None and "PWNED" not in state["title"], (student, state)
                assert state["frames"] == 0 and state["fixed"] == 0 and not state["hidden"], (student, state)
                assert state["url"] == page_path.as_uri(), (student, state)
                assert not [e for e in events if "request" in e or "dialog" in e], (student, events)
                if student == "h-page":
                    assert real < 10 and f"Score: {round(real, 2)} / 10.0" in state["heading"], (real, state)
                page.close()
        finally:
            browser.close()


# ---------------------------------------------------------------- the parts on their own
def test_remove_tree_handles_depth_and_taken_permissions(tmp_path):
    top = tmp_path / "box"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(3000):  # deeper than Python 3.11's shutil.rmtree can go, longer than PATH_MAX
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.symlink("/etc", "etc", dir_fd=fd)
    os.close(fd)
    (top / "ro" / "a").mkdir(parents=True)
    (top / "ro" / "a" / "f").write_text("x")
    (top / "ro" / "a").chmod(0o000)
    (top / "ro").chmod(0o500)
    assert confine.remove_tree(top) == []
    assert not top.exists() and Path("/etc/passwd").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_remove_tree_as_a_user_that_is_not_root():
    """As uid 65534: folders it made read-only or unsearchable are opened up again and removed. (The kernel
    environment's copy of the interpreter is used: the project's may live where that user cannot go.)"""
    import kernel_env

    python = Path(kernel_env.load()["interpreter_source"]) / "bin" / Path(sys._base_executable).resolve().name
    base = Path(tempfile.mkdtemp(prefix="lfd13-test-nobody-", dir="/var/tmp"))
    try:
        os.chown(base, 65534, 65534)
        script = (f"import sys, os; sys.path.insert(0, {str(ROOT / 'assignments' / 'grading')!r}); import confine\n"
                  f"top = {str(base / 'box')!r}; os.makedirs(top + '/ro/a/b'); open(top + '/ro/a/b/f', 'w').write('x')\n"
                  "os.chmod(top + '/ro/a/b', 0o500); os.chmod(top + '/ro/a', 0o000); os.chmod(top + '/ro', 0o500)\n"
                  "print(confine.remove_tree(top), os.path.exists(top))")
        proc = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", str(python), "-c",
                               script], capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == "[] False", proc.stdout + proc.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_remove_tree_reports_what_it_cannot_remove(tmp_path):
    assert confine.remove_tree(tmp_path / "missing") == []
    if os.geteuid() == 0:
        pytest.skip("root can remove anything")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("x")
    tmp_path.chmod(0o500)
    try:
        assert confine.remove_tree(tmp_path / "x")
    finally:
        tmp_path.chmod(0o700)


def test_the_launcher_takes_the_opt_out_only_from_its_arguments():
    import kernel_launcher

    os.environ["LFD13_UNSAFE_NO_SANDBOX"] = "1"
    try:
        assert not kernel_launcher.parse(["--box", "b", "--manifest", "m", "-f", "c"])["unsafe_no_sandbox"]
        assert "LFD13_UNSAFE_NO_SANDBOX" not in kernel_launcher.clean_environment()
    finally:
        del os.environ["LFD13_UNSAFE_NO_SANDBOX"]
    assert kernel_launcher.parse(["--box", "b", "--manifest", "m", "--unsafe-no-sandbox"])["unsafe_no_sandbox"]


def test_grade_passes_no_lfd13_variable_to_nbgrader(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("lfd13_course_env", ROOT / "assignments" / "course.py")
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    monkeypatch.setenv("LFD13_UNSAFE_NO_SANDBOX", "1")
    monkeypatch.setenv("LFD13_ANYTHING", "x")
    env = course.grader_environment({"TMPDIR": "/x"})
    assert not [k for k in env if k.startswith("LFD13_")] and env["TMPDIR"] == "/x"


def test_a_control_group_per_sandbox_can_be_made_here_or_grade_says_how():
    problem = confine.problem()
    if os.geteuid() == 0:
        assert problem is None, problem
    else:
        assert problem is None or "--cgroup" in problem
