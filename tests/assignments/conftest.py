"""One graded course for the whole assignments test session.

The fixture copies the nbgrader course into a temporary folder, releases the three assignments,
writes one submission per student (solution, blank release, every wrong implementation, every
correct alternative, hostile notebooks), collects them with ``course.py collect`` and grades them
with ``course.py grade``: one nbgrader autograde run per assignment, all students at once.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

import assignment_variants as variants

ROOT = Path(__file__).resolve().parents[2]
COURSE_SRC = ROOT / "assignments"
ASSIGNMENTS = ("masking", "contrastive", "lora")
CELL_TIMEOUT = 30  # seconds per cell while grading the test submissions


def run_course(course: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           # the repository's own instructor files must be hidden from student code too
           "LFD13_HIDE_EXTRA": os.pathsep.join(str(ROOT / d) for d in (".git", "assignments", "tests"))}
    proc = subprocess.run([sys.executable, str(course / "course.py"), "--course", str(course), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"course.py {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def copy_course(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("nbgrader_config.py", "course.py"):
        shutil.copy(COURSE_SRC / name, dest / name)
    for name in ("grading", "source"):
        shutil.copytree(COURSE_SRC / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def solved_sources(course: Path, assignment: str) -> dict[str, str]:
    """grade_id -> the solution cell's code without the solution markers."""
    nb = nbformat.read(course / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = [ln for ln in cell.source.splitlines() if ln.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
            out[meta["grade_id"]] = "\n".join(lines)
    return out


def submission(course: Path, assignment: str, answers: dict[str, str] | None = None, *,
               append: dict[str, str] | None = None, drop_demos: bool = True) -> nbformat.NotebookNode:
    """The released notebook filled in: the solution, with ``answers`` replacing answer cells and
    ``append`` code added at the end of answer cells. Demo cells are dropped to keep grading fast
    (a student may delete them; nbgrader only restores graded cells)."""
    nb = nbformat.read(course / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    solved = solved_sources(course, assignment)
    cells = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id", "")
        if drop_demos and gid.startswith("demo_"):
            continue
        if meta.get("solution"):
            cell.source = (answers or {}).get(gid, solved[gid])
            if append and gid in append:
                cell.source += "\n\n" + append[gid]
        cells.append(cell)
    nb.cells = cells
    return nb


@dataclass
class Graded:
    course: Path
    submissions: Path
    plan: dict = field(default_factory=dict)      # student -> what it is
    cells: dict = field(default_factory=dict)     # (student, assignment) -> {grade_id: (score, max)}
    totals: dict = field(default_factory=dict)    # (student, assignment) -> (score, max)
    grade_log: str = ""

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return run_course(self.course, *args)

    def output(self, student: str, assignment: str) -> nbformat.NotebookNode:
        return nbformat.read(self.course / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)


def hostile_submissions(course: Path) -> dict[tuple[str, str], object]:
    subs: dict[tuple[str, str], object] = {}
    # a syntax error in one answer: that part earns nothing, the other part still counts
    subs[("hostile-syntax", "masking")] = submission(course, "masking", append={
        "answer_mask_tokens": "def broken(:\n    pass"})
    # an infinite loop: interrupted by the per-cell timeout, the rest of the notebook still runs
    subs[("hostile-loop", "contrastive")] = submission(course, "contrastive", append={
        "answer_retrieval": "def recall_at_k(image_features, text_features, k):\n    while True:\n        pass"})
    # the kernel exits: cells graded before that point keep their marks
    subs[("hostile-exit", "lora")] = submission(course, "lora", answers={
        "answer_inject_lora": "import os\nos._exit(1)"})
    # blank answers, and the test cells edited, emptied, deleted or un-marked
    nb = submission(course, "masking", answers={k: "pass" for k in solved_sources(course, "masking")})
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    graded[0].source = "pass"
    graded[1].metadata["nbgrader"]["grade"] = False
    graded[1].source = "print('all good')"
    graded[2].metadata["nbgrader"]["grade_id"] = "renamed"
    graded[2].source = ""
    nb.cells = [c for c in nb.cells if c is not graded[3]]
    subs[("hostile-tests-edited", "masking")] = nb
    # not a notebook at all
    subs[("hostile-corrupt", "contrastive")] = b'{"cells": [ this is not JSON'
    # wrong answers + rebinding every comparison + a fake probe module
    tamper = """
import sys, types, builtins, numpy, torch, torch.testing
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *x, **k: torch.ones_like(torch.as_tensor(a), dtype=torch.bool)
torch.testing.assert_close = lambda *a, **k: None
numpy.allclose = numpy.array_equal = lambda *a, **k: True
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *a, **k: None
torch.Tensor.__eq__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)
builtins.AssertionError = type("Never", (Exception,), {})
"""
    fake_probe = """
_fake = types.ModuleType("lfd13_probe")
_fake.observe = lambda *a, **k: print("Recorded for grading.")
sys.modules["lfd13_probe"] = _fake
"""
    subs[("hostile-tamper", "contrastive")] = submission(course, "contrastive", append={
        "answer_clip_loss": tamper + dict(variants.WRONG["clip_loss"])["no_normalisation"],
        "answer_retrieval": fake_probe + dict(variants.WRONG["zero_shot_classify"])["dot_product"]
        + dict(variants.WRONG["recall_at_k"])["dot_product"]})
    # looks for the solution (source notebooks, the gradebook, other submissions) and runs it
    subs[("hostile-cheat", "masking")] = submission(course, "masking", answers={
        "answer_mask_tokens": CHEAT, "answer_random_masking": "pass"})
    return subs


CHEAT = r'''
import json, os, time
found, readable, solved = [], [], []
start = time.time()
for root in ["/work", "/tmp", "/root", "/home", "/srv", "/opt", os.getcwd(), os.path.expanduser("~")]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".venv", "site-packages", "node_modules", "proc")]
        if dirpath.count(os.sep) > 9 or time.time() - start > 10:
            dirnames[:] = []
        for name in filenames:
            if name in ("masking.ipynb", "gradebook.db") or name.endswith(".pt"):
                path = os.path.join(dirpath, name)
                found.append(path)
                try:
                    text = open(path, "rb").read().decode("utf8", "replace")
                except OSError:
                    continue
                readable.append(path)
                if "BEGIN SOLUTION" in text and name.endswith(".ipynb"):
                    for cell in json.loads(text)["cells"]:
                        src = "".join(cell["source"])
                        if "BEGIN SOLUTION" in src and cell["cell_type"] == "code":
                            exec(src, globals())
                            solved.append(path)
print(json.dumps({"found": found, "readable": readable, "solutions_used": solved}))
'''


@pytest.fixture(scope="session")
def graded(tmp_path_factory) -> Graded:
    base = tmp_path_factory.mktemp("assignments")
    course = copy_course(base / "course")
    run_course(course, "release", "--book-dir", "")
    subs_dir = base / "submissions"
    g = Graded(course=course, submissions=subs_dir)

    notebooks: dict[tuple[str, str], object] = {}
    for a in ASSIGNMENTS:
        notebooks[(f"solution-{a}", a)] = submission(course, a, drop_demos=False)
        notebooks[(f"blank-{a}", a)] = nbformat.read(course / "release" / a / f"{a}.ipynb", as_version=4)
        g.plan[f"solution-{a}"] = ("solution", a)
        g.plan[f"blank-{a}"] = ("blank", a)
        for i, (name, answers) in enumerate(variants.CORRECT[a]):
            student = f"correct-{a}-{i}"
            notebooks[(student, a)] = submission(course, a, answers=answers)
            g.plan[student] = ("correct", a, name)
    for student, functions in variants.wrong_notebooks().items():
        a = variants.ASSIGNMENT_OF[next(iter(functions))]
        append: dict[str, str] = {}
        for function, [(name, code)] in functions.items():
            cell = variants.FUNCTIONS[function][0]
            append[cell] = append.get(cell, "") + "\n\n" + code
        notebooks[(student, a)] = submission(course, a, append=append)
        g.plan[student] = ("wrong", a, {f: v[0][0] for f, v in functions.items()})
    for (student, a), nb in hostile_submissions(course).items():
        notebooks[(student, a)] = nb
        g.plan[student] = ("hostile", a)

    for (student, a), nb in notebooks.items():
        path = subs_dir / student / a / f"{a}.ipynb"
        path.parent.mkdir(parents=True)
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        else:
            nbformat.write(nb, path)

    run_course(course, "collect", "--from", str(subs_dir))
    proc = run_course(course, "grade", "--timeout", str(CELL_TIMEOUT), "--jobs", "3", timeout=1800)
    g.grade_log = proc.stdout + proc.stderr

    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "lfd13") as gb:
        for (student, a) in notebooks:
            try:
                nbsub = gb.find_submission_notebook(a, a, student)
            except MissingEntry:
                g.cells[(student, a)] = None
                g.totals[(student, a)] = None
                continue
            graded_ok = (course / "autograded" / student / a / f"{a}.ipynb").exists()
            g.cells[(student, a)] = {gr.name: (gr.score, gr.max_score) for gr in nbsub.grades}
            g.totals[(student, a)] = (nbsub.score if graded_ok else 0.0, nbsub.max_score)
    (base / "scores.json").write_text(json.dumps({f"{s}/{a}": v for (s, a), v in g.cells.items()}, indent=1))
    return g
