"""The sandbox and the record format on their own: what the kernel can import, records the judge
refuses, ``grade`` refusing where it cannot isolate, and ``grade`` run by a user that is not root."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

import conftest as c

ROOT = Path(__file__).resolve().parents[2]
GRADING = ROOT / "assignments" / "grading"
sys.path.insert(0, str(GRADING))

import kernel_env  # noqa: E402
import kernel_launcher  # noqa: E402
import wire  # noqa: E402


def selftest() -> dict:
    manifest = kernel_env.load()
    with tempfile.TemporaryDirectory(prefix="lfd13-test-") as box:
        for d in ("tasks", "sandbox/work", "sandbox/tasks", "sandbox/home", "sandbox/out", "sandbox/ipc"):
            os.makedirs(os.path.join(box, d))
        cmd, binds, _ = kernel_launcher.bwrap_command(manifest, str(GRADING), box, ["--box", "/box", "--selftest"])
        try:
            proc = subprocess.run(cmd, pass_fds=binds.fds, capture_output=True, text=True, timeout=120)
        finally:
            binds.close()
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_kernel_has_torch_but_not_the_reference_libraries_or_lfd13():
    report = selftest()
    assert report["torch_ok"] and report["torch"] and report["numpy"] and report["matplotlib"], report
    assert not any(report[name] for name in ("transformers", "open_clip", "peft", "lfd13", "nbgrader")), report
    assert report["network"] is False and report["processes"] <= 3, report
    manifest = kernel_env.load()
    names = {d.split("==")[0].lower() for d in manifest["distributions"]}
    assert {"torch", "numpy", "matplotlib", "ipykernel"} <= names
    assert not names & {"transformers", "open-clip-torch", "peft", "lfd13", "nbgrader"}


def test_preflight_passes_here():
    reason = kernel_launcher.preflight()
    if reason is not None and os.geteuid() != 0:  # as for every grading test: see conftest.skip_where_grading_refuses
        pytest.skip(f"grading cannot isolate a user that is not root here: {reason[:500]}")
    assert reason is None, reason


# ---------------------------------------------------------------- the record format
def test_records_round_trip():
    import torch

    value = {"a": torch.arange(6).reshape(2, 3), "b": [torch.tensor(2.5), True, None, 1, "s"], "c": torch.zeros(0)}
    back = wire.loads(wire.dumps(value))
    assert torch.equal(back["a"], value["a"]) and back["b"][1:] == [True, None, 1, "s"] and back["c"].shape == (0,)


def header(obj, body=b""):
    h = json.dumps(obj).encode()
    return wire.MAGIC + len(h).to_bytes(8, "little") + h + body


@pytest.mark.parametrize("data,why", [
    (header({"x": {"__t__": ["float64", [10**6, 10**6], 0]}}, b"\0" * 64), "claims 10^12 elements"),
    (header({"x": {"__t__": ["float32", [4], 60]}}, b"\0" * 64), "bytes past the end"),
    (header({"x": {"__t__": ["object", [1], 0]}}, b"\0" * 8), "a dtype outside the allow-list"),
    (header({"x": {"__t__": ["float32", [-1, 4], 0]}}, b"\0" * 64), "a negative dimension"),
    (header({"x": [{"__t__": ["float64", [(4 << 20) - 1024], 0]}] * 400}, b"\0" * (((4 << 20) - 1024) * 8)),
     "one 32 MB range named 400 times (13 GB if each were built)"),
    (header({"x": [{"__t__": ["float32", [4], 16]}, {"__t__": ["float32", [4], 0]}]}, b"\0" * 32),
     "ranges out of order"),
    (header({"x": [{"__t__": ["float32", [4], 0]}, {"__t__": ["float32", [4], 8]}]}, b"\0" * 32),
     "ranges that overlap"),
    (wire.MAGIC + (200000).to_bytes(8, "little") + b"[" * 100000 + b"]" * 100000, "nested 100000 deep"),
    (wire.MAGIC + (1 << 40).to_bytes(8, "little") + b"{}", "a header size beyond the file"),
    (header({}, b"\0" * (wire.MAX_FILE + 1)), "over the size cap"),
    (b"\x80\x04pickle", "a pickle"),
])
def test_forged_records_are_refused_before_anything_is_built(data, why):
    start = time.monotonic()
    with pytest.raises(wire.WireError):
        wire.loads(data)
    assert time.monotonic() - start < 2, why


def test_a_record_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / "real").write_bytes(wire.dumps({"value": 1}))
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(wire.WireError, match="symbolic link"):
        wire.load(str(tmp_path / "link"))


# ---------------------------------------------------------------- grade refuses or isolates
def released_course(dest: Path, append: dict | None = None) -> Path:
    """A course with the masking assignment released and its solution (plus ``append``) collected."""
    course = c.copy_course(dest / "course")
    c.run_course(course, "release", "masking", "--book-dir", "")
    nb = c.submission(course, "masking", append=append)
    path = dest / "inbox" / "ada" / "masking" / "masking.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    c.run_course(course, "collect", "--from", str(dest / "inbox"))
    return course


@pytest.mark.slow
def test_grade_refuses_where_it_cannot_isolate(tmp_path):
    course = released_course(tmp_path)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no bwrap on the PATH
    proc = subprocess.run([sys.executable, str(course / "course.py"), "--course", str(course), "grade"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0
    assert "refuses to run student code" in proc.stderr and "bubblewrap" in proc.stderr, proc.stderr
    assert not (course / "autograded").exists()


@pytest.mark.slow
def test_the_opt_out_is_loud_and_still_has_no_reference_libraries(tmp_path):
    course = released_course(tmp_path, {"answer_random_masking": "import transformers"})
    proc = subprocess.run([sys.executable, str(course / "course.py"), "--course", str(course), "grade",
                           "--unsafe-no-sandbox"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WITHOUT ISOLATION" in proc.stderr
    nb = nbformat.read(course / "autograded" / "ada" / "masking" / "masking.ipynb", as_version=4)
    text = json.dumps(nb)
    assert text.count("Hidden tests passed") == 6 and "No module named 'transformers'" in text


@pytest.mark.slow
def test_a_notebook_has_a_wall_clock_limit(tmp_path):
    course = released_course(tmp_path, {"answer_mask_tokens": "import time\ntime.sleep(12)",
                                        "answer_random_masking": "time.sleep(30)"})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(course / "course.py"), "--course", str(course), "grade",
                           "--timeout", "60", "--notebook-timeout", "20"], capture_output=True, text=True, timeout=600)
    c.skip_where_grading_refuses(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.monotonic() - start < 90
    nb = nbformat.read(course / "autograded" / "ada" / "masking" / "masking.ipynb", as_version=4)
    assert "longer than its limit of 20 s" in nb.cells[0].source, nb.cells[0]
    text = json.dumps(nb)
    assert text.count("Hidden tests passed") == 3  # the mask_tokens cells ran in time; the rest did not


@pytest.mark.slow
def test_grade_as_a_user_that_is_not_root_isolates_or_refuses():
    """Run ``course.py grade`` as uid 65534 (nobody). The project's interpreter may live in a
    folder only root can traverse (``/root/.pyenv``); that user is then given the one capability
    that lets it reach it (CAP_DAC_READ_SEARCH: read and search, never write), and nothing else."""
    if os.geteuid() != 0:
        cmd_prefix: list[str] = []
    elif shutil.which("setpriv"):
        cmd_prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                      "--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]
    else:
        pytest.skip("setpriv is needed to run as another user")
    base = Path(tempfile.mkdtemp(prefix="lfd13-nonroot-", dir="/var/tmp"))
    try:
        course = released_course(base)
        if cmd_prefix:
            for p in [base, *base.rglob("*")]:
                os.lchown(p, 65534, 65534)
        env = {**os.environ, "HOME": str(base), "LFD13_CHUNK": "8"}
        proc = subprocess.run([*cmd_prefix, sys.executable, str(course / "course.py"), "--course", str(course),
                               "grade", "masking", "--timeout", "60"], capture_output=True, text=True, env=env,
                              timeout=900)
        if proc.returncode == 0:  # it isolated: the solution is graded, in the sandbox
            assert "refuses" not in proc.stderr
            status = json.loads((course / ".course" / "status.json").read_text())
            assert status["ada/masking"]["status"] == "graded", status
            out = nbformat.read(course / "autograded" / "ada" / "masking" / "masking.ipynb", as_version=4)
            text = json.dumps(out)
            assert "Hidden tests passed" in text and "Hidden tests failed" not in text
        else:  # or it refused, saying why
            assert "refuses to run student code" in proc.stderr, proc.stderr[-2000:]
            assert not (course / "autograded").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
