"""One graded course for the whole assignments test session.

The fixture copies the nbgrader course into a temporary folder, releases the three assignments,
writes one submission per student (solution, blank release, every wrong implementation, every
correct alternative, hostile notebooks), plants world-readable decoys of a source notebook and a
gradebook in several folders outside the home folders, opens a TCP listener on 127.0.0.1,
collects the submissions with ``course.py collect`` and grades them with ``course.py grade``:
one nbgrader autograde run per assignment (``LFD13_CHUNK``), so that every honest student is
graded in the same run as every hostile one.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

import assignment_variants as variants

ROOT = Path(__file__).resolve().parents[2]
COURSE_SRC = ROOT / "assignments"
ASSIGNMENTS = ("masking", "contrastive", "lora")
CELL_TIMEOUT = 30  # seconds per cell while grading the test submissions
TOKEN = secrets.token_hex(6)  # marks what hostile notebooks leave behind, to look for it afterwards
# (without repeats: a clone directly in /tmp has /tmp as its parent folder too)
DECOY_DIRS = list(dict.fromkeys(["/srv", "/opt", "/mnt", "/var/tmp", "/var/lib", "/usr/local/share", "/tmp", str(ROOT.parent)]))


def run_course(course: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    env = {"LFD13_CHUNK": "64", **os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(course / "course.py"), "--course", str(course), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)
    skip_where_grading_refuses(proc)
    if not check:
        return proc
    assert proc.returncode == 0, f"course.py {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def skip_where_grading_refuses(proc: subprocess.CompletedProcess) -> None:
    """As a user that is not root, on a machine that cannot isolate such a user's grading (e.g.
    no delegated cgroup v2 subtree), ``grade`` refuses, saying how to fix it: the tests that need a
    grade cannot run there. ``test_grade_as_a_user_that_is_not_root_isolates_or_refuses`` checks
    the refusal itself; as root every grading test runs."""
    if os.geteuid() != 0 and proc.returncode != 0 and "refuses to run student code" in proc.stderr:
        pytest.skip("grade refuses to run student code here as a user that is not root: "
                    + proc.stderr.strip().splitlines()[-1][:500])


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
    notebooks: list = field(default_factory=list)  # every (student, assignment) written
    collect_log: str = ""
    hashes_after: dict = field(default_factory=dict)
    decoys: list = field(default_factory=list)     # world-readable decoy files planted before grading
    connections: list = field(default_factory=list)  # what reached the TCP listener on 127.0.0.1
    port: int = 0
    hashes: dict = field(default_factory=dict)     # instructor files hashed before grading

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return run_course(self.course, *args)

    def output(self, student: str, assignment: str) -> nbformat.NotebookNode:
        return nbformat.read(self.course / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)


def hostile_submissions(course: Path, port: int = 9) -> dict[tuple[str, str], object]:
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
    # looks for the solution (source notebooks, the gradebook, other submissions, decoys) and runs it
    subs[("hostile-cheat", "masking")] = submission(course, "masking", answers={
        "answer_mask_tokens": CHEAT, "answer_random_masking": "pass"})
    # 1. forged records: stub functions, and a replaced probe that writes hand-made records whose
    #    fields carry "reference values" (the inputs themselves, truth fields, library-like outputs)
    subs[("hostile-forge", "contrastive")] = submission(course, "contrastive", answers={
        "answer_clip_loss": STUBS["contrastive"] + FORGE, "answer_retrieval": "pass"})
    subs[("hostile-forge", "lora")] = submission(course, "lora", answers={
        "answer_lora_linear": STUBS["lora"] + FORGE, "answer_inject_lora": "pass"})
    # 2. the old delegation detector switched off, then the reference libraries called
    subs[("hostile-delegate", "contrastive")] = submission(course, "contrastive", append={
        "answer_clip_loss": DELEGATE_CLIP, "answer_retrieval": IMPORT_REPORT})
    subs[("hostile-delegate", "lora")] = submission(course, "lora", append={"answer_lora_linear": DELEGATE_PEFT})
    # 5. processes, files, shared memory and network: a double-forked survivor and friends
    subs[("hostile-escape", "lora")] = submission(course, "lora", append={
        "answer_inject_lora": ESCAPE.replace("TOKEN", TOKEN).replace("PORT", str(port))})
    # 6. nbgrader metadata written by the student (a schema version from the future, wrong flags)
    nb = submission(course, "masking")
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta and meta.get("solution"):
            meta["schema_version"] = 99
            meta["points"] = 1000
        elif meta and meta.get("grade"):
            meta["points"] = "lots"
    subs[("hostile-metadata", "masking")] = nb
    # 7. ignores SIGINT and swallows interrupts while sleeping: killed at the first timeout, no later cell runs
    subs[("hostile-sigint", "contrastive")] = submission(course, "contrastive", append={
        "answer_clip_loss": "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                            "def clip_loss(image_features, text_features, logit_scale):\n    while True:\n"
                            "        try:\n            time.sleep(10**6)\n        except BaseException:\n"
                            "            pass"})
    # 7. oversized and malformed records, and results of attacker-chosen shapes
    subs[("hostile-records", "masking")] = submission(course, "masking", append={
        "answer_mask_tokens": ONLY_PROBE + RECORDS})
    # 8. unfiltered outputs: a flood on stdout and on the kernel's stderr, HTML, scripts, handlers
    subs[("hostile-output", "lora")] = submission(course, "lora", append={
        "answer_lora_linear": OUTPUT.replace("TOKEN", TOKEN)})
    nb = subs[("hostile-output", "lora")]
    nb.cells.append(nbformat.v4.new_markdown_cell(f"<script>alert('xss-{TOKEN}')</script>"
                                                  f"<img src=x onerror=\"alert('xss-{TOKEN}')\">"))
    return subs


STUBS = {"contrastive": "def clip_loss(image_features, text_features, logit_scale):\n    raise NotImplementedError()\n"
                        "def zero_shot_classify(image_features, class_text_features):\n    raise NotImplementedError()\n"
                        "def recall_at_k(image_features, text_features, k):\n    raise NotImplementedError()\n",
         "lora": "class LoRALinear:\n    def __init__(self, *a, **k):\n        raise NotImplementedError()\n"
                 "def inject_lora(*a, **k):\n    raise NotImplementedError()\n"
                 "def count_parameters(*a, **k):\n    raise NotImplementedError()\n"}

ONLY_PROBE = r'''
def _only_probe(lines):
    """Rewrite every later cell before it runs: keep only the hidden test's call (skips the visible asserts)."""
    kept = [line for line in lines if "lfd13_probe" in line]
    return kept or lines
get_ipython().input_transformers_cleanup.append(_only_probe)
'''

FORGE = ONLY_PROBE + r'''
import os, sys, torch, lfd13_probe, wire
def _echo(node):
    """Every input handed back as an output, next to 'truth' fields computed from the inputs."""
    if isinstance(node, dict):
        return {**{k: _echo(v) for k, v in node.items()}, "value": node, "truth": node, "ok": True}
    if isinstance(node, list):
        return [_echo(v) for v in node]
    return node
def forged(grade_id, ns):
    task = wire.load(os.path.join(lfd13_probe.BOX, "tasks", grade_id))
    rec = {"grade_id": grade_id, "delegation": [], "profiler_tampered": False, **_echo(task)}
    wire.dump(rec, os.path.join(lfd13_probe.BOX, "out", grade_id))
    print("Recorded for grading.")
lfd13_probe.observe = forged
sys.modules["lfd13_probe"] = lfd13_probe
'''

DELEGATE_CLIP = """
import sys
sys.setprofile(None)
import lfd13_probe
for name in ("FORBIDDEN", "LIBRARY_DIRS", "_library_dirs", "Watch"):  # the old detector's folders and profiler
    setattr(lfd13_probe, name, [])
def clip_loss(image_features, text_features, logit_scale):
    sys.setprofile(None)
    from open_clip.loss import ClipLoss
    return ClipLoss()(F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1), logit_scale)
"""

IMPORT_REPORT = """
import importlib, json
_report = {}
for _name in ("torch", "numpy", "matplotlib", "transformers", "open_clip", "peft", "lfd13", "nbgrader", "judge"):
    try:
        importlib.import_module(_name)
        _report[_name] = True
    except ImportError:
        _report[_name] = False
print("IMPORTS " + json.dumps(_report))
"""

DELEGATE_PEFT = """
import sys
class LoRALinear(nn.Module):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__()
        sys.setprofile(None)
        from peft import LoraConfig
        from peft.tuners.lora.layer import Linear
        self.base = base
        self.inner = Linear(base, "default", config=LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout), r=r, lora_alpha=alpha)
        self.lora_A, self.lora_B = self.inner.lora_A["default"], self.inner.lora_B["default"]
        self.scaling, self.merged = alpha / r, False
    def forward(self, x):
        return self.inner(x)
"""

ESCAPE = r'''
import ctypes, json, os, socket, sys, time
_report = {"uid": os.getuid()}
# a double-forked survivor in its own session, marked by its command line
_pid = os.fork()
if _pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time\nwhile True: time.sleep(1)", "survivor-TOKEN"])
    os._exit(0)
os.waitpid(_pid, 0)
# files in every folder that might be shared with the grader or with later kernels
_report["written"] = []
for _d in ("/tmp", "/var/tmp", "/dev/shm", "/run", "/var/lock", "/srv", "/opt", "/usr/local", "/etc", "/root", "/home", "/work"):
    try:
        with open(os.path.join(_d, "lfd13-left-TOKEN"), "w") as _f:
            _f.write("left behind")
        _report["written"].append(_d)
    except OSError:
        pass
# shared memory: POSIX (a file in /dev/shm) and System V (IPC namespace)
from multiprocessing import shared_memory
try:
    _shm = shared_memory.SharedMemory(name="lfd13-shm-TOKEN", create=True, size=4096)
    _report["posix_shm"] = True
except OSError:
    _report["posix_shm"] = False
_libc = ctypes.CDLL(None, use_errno=True)
_report["sysv_shm"] = _libc.shmget(0x1fd13, 4096, 0o1666) >= 0
# the grader's TCP listener on 127.0.0.1
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=3).sendall(b"hello from the kernel TOKEN")
    _report["tcp"] = True
except OSError as _err:
    _report["tcp"] = False
# which processes can be seen
_report["processes"] = []
for _p in os.listdir("/proc"):
    if _p.isdigit():
        try:
            _report["processes"].append(open(f"/proc/{_p}/cmdline", "rb").read().replace(b"\0", b" ").decode()[:200])
        except OSError:
            pass
_report["hostname"] = socket.gethostname()
print("ESCAPE " + json.dumps(_report))
'''

RECORDS = r'''
import os, json, lfd13_probe, wire
_box = lfd13_probe.BOX
def _header(obj, body=b""):
    h = json.dumps(obj).encode()
    return wire.MAGIC + len(h).to_bytes(8, "little") + h + body
def forged_observe(grade_id, ns):
    path = os.path.join(_box, "out", grade_id)
    if grade_id == "mask_tokens_selection":    # a tensor that claims 10^12 elements
        data = _header({"rate": {"value": [{"__t__": ["float64", [10**6, 10**6], 0]}]}}, b"\0" * 64)
    elif grade_id == "mask_tokens_split":      # nested a hundred thousand levels deep
        data = wire.MAGIC + (200000).to_bytes(8, "little") + b"[" * 100000 + b"]" * 100000
    elif grade_id == "mask_tokens_contract":   # 40 MB of real bytes
        data = _header({}, b"\0" * (40 << 20))
    elif grade_id == "random_masking_exact":   # a symbolic link to a file of the grader's
        os.symlink("/etc/passwd", path)
        return
    else:                                      # valid records, results of attacker-chosen shapes
        import torch
        big = torch.zeros(1000, 1000)
        wire.dump({"exact75": {"value": [big, big, big.long()]}, "odd": {"value": [big[:3], big[:3], big[:3]]},
                   "random": {"value": [big, big, big.long()[:1]]}}, path)
        return
    with open(path, "wb") as f:
        f.write(data)
lfd13_probe.observe = forged_observe
'''

OUTPUT = r'''
import os, sys
from IPython.display import HTML, Javascript, SVG, display
display(HTML("<script>alert('xss-TOKEN')</script><img src=x onerror=\"alert('xss-TOKEN')\">"))
display(Javascript("alert('xss-TOKEN')"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>alert("xss-TOKEN")</script></svg>'))
print("\x1b]0;owned\x07\x1b[2J" + "flood-TOKEN " * (3 << 20))  # about 36 MB on stdout
os.write(2, (("\x1b[2J[E 2026-01-01 grader] FORGED-TOKEN everyone scores 0\n") * 200000).encode())  # ~10 MB on fd 2
sys.stderr.write("stderr-TOKEN\n")
'''


CHEAT = r'''
import json, os, time
found, readable, writable, solved = [], [], [], []
start = time.time()
for dirpath, dirnames, filenames in os.walk("/"):
    dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in ("/proc", "/sys", "/dev")]
    if time.time() - start > 20:
        dirnames[:] = []
    for name in filenames:
        path = os.path.join(dirpath, name)
        if name.endswith((".ipynb", ".db", ".pt")) or "decoy" in path or name in ("judge.py", "course.py"):
            found.append(path)
            try:
                text = open(path, "rb").read().decode("utf8", "replace")
            except OSError:
                continue
            readable.append(path)
            try:
                open(path, "ab").close()
                writable.append(path)
            except OSError:
                pass
            if "BEGIN SOLUTION" in text and name.endswith(".ipynb"):
                for cell in json.loads(text)["cells"]:
                    src = "".join(cell["source"])
                    if "BEGIN SOLUTION" in src and cell["cell_type"] == "code":
                        exec(src, globals())
                        solved.append(path)
print(json.dumps({"found": found, "readable": readable, "writable": writable, "solutions_used": solved,
                  "uid": os.getuid(), "seconds": round(time.time() - start, 1)}))
'''


def plant_decoys(course: Path) -> list[Path]:
    """World-readable copies of a source notebook and of a gradebook, outside the home folders."""
    planted = []
    for d in DECOY_DIRS:
        folder = Path(d) / f"lfd13-decoy-{TOKEN}"
        try:
            folder.mkdir(mode=0o755)
            folder.chmod(0o755)
            for src in (course / "source" / "masking" / "masking.ipynb", course / "gradebook.db"):
                shutil.copy(src, folder / src.name)
                (folder / src.name).chmod(0o644)
            planted += [folder / "masking.ipynb", folder / "gradebook.db"]
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
    return planted


class Listener:
    """A TCP server on 127.0.0.1 recording whatever reaches it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.received: list = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                self.received.append(conn.recv(1000))
            except OSError:
                self.received.append(b"")
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def graded(tmp_path_factory) -> Graded:
    base = tmp_path_factory.mktemp("assignments")
    course = copy_course(base / "course")
    run_course(course, "release", "--book-dir", "")
    subs_dir = base / "submissions"
    g = Graded(course=course, submissions=subs_dir)
    listener = Listener()
    g.port = listener.port

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
    for (student, a), nb in hostile_submissions(course, listener.port).items():
        notebooks[(student, a)] = nb
        g.plan.setdefault(student, ("hostile", a))

    for (student, a), nb in notebooks.items():
        path = subs_dir / student / a / f"{a}.ipynb"
        path.parent.mkdir(parents=True)
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        else:
            nbformat.write(nb, path)
    # 9. a submission that is a symbolic link to the source notebook, and a linked student folder
    (subs_dir / "hostile-symlink" / "masking").mkdir(parents=True)
    (subs_dir / "hostile-symlink" / "masking" / "masking.ipynb").symlink_to(course / "source" / "masking" / "masking.ipynb")
    (subs_dir / "hostile-linkdir").symlink_to(course / "source")

    g.decoys = plant_decoys(course)
    g.hashes = {str(p): digest(p) for p in [course / "grading" / "judge.py", course / "course.py", *g.decoys]}
    try:
        g.collect_log = run_course(course, "collect", "--from", str(subs_dir)).stdout
        proc = run_course(course, "grade", "--timeout", str(CELL_TIMEOUT), "--jobs", "3", timeout=2400)
        g.grade_log = proc.stdout + proc.stderr
        g.hashes_after = {p: digest(Path(p)) for p in g.hashes}
    finally:
        listener.close()
        g.connections = listener.received
        for p in g.decoys:
            shutil.rmtree(p.parent, ignore_errors=True)

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
    g.notebooks = sorted(notebooks)
    (base / "scores.json").write_text(json.dumps({f"{s}/{a}": v for (s, a), v in g.cells.items()}, indent=1))
    return g
