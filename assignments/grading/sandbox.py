"""nbgrader preprocessors that execute each submission in a sandboxed kernel, then judge it.

Instructor-only. ``SandboxedExecute`` replaces nbgrader's ``Execute`` in the autograde pipeline
(see ``nbgrader_config.py``). For each notebook it

1. makes a private box (a tmpfs with a size, as root) and a control group (``confine.py``: processes,
   memory and CPU for the sandbox as a whole), draws a seed the kernel never sees and writes each
   hidden test's task (``cases.py``) into the box;
2. executes the notebook in the ``lfd13-sandbox`` kernel (``kernel_launcher.py``: bubblewrap,
   the kernel environment, IPC over Unix sockets in the box), with a limit per cell and one per
   notebook; a kernel that ignores an interrupt is killed and execution ends there;
   outputs are cut and counted as they arrive (ZeroMQ drops any message over 64 MB; once the
   notebook's budget is spent, later outputs are dropped);
3. kills everything in the sandbox's control group;
4. has each hidden-test cell judged by the judge worker (``judge_worker.py``, a separate process
   with memory and time limits) from the raw outputs the kernel left in the box, and rewrites
   the cell's outputs: a pass prints a line, a failure becomes an error whose message the
   student sees;
5. sanitises every output: only plain text and PNG/JPEG images are kept (no HTML, JavaScript or
   SVG), control characters other than colours are removed, and each output and the notebook as
   a whole are capped in size;
6. removes the box and the control group, and reports (``report_file``) whether a time or memory
   limit was hit (``course.py`` then grades the submission again alone) and anything it could not
   remove.

``RebuildCellMetadata`` (a sanitize preprocessor) rebuilds every cell's nbgrader metadata from
the gradebook, so nothing a student writes there reaches nbgrader.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import re
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from traitlets import Bool, Integer, Unicode

from nbgrader.preprocessors import Execute, NbGraderPreprocessor

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "lfd13-sandbox"
SCHEMA_VERSION = 3
KEEP_MIME = ("text/plain", "image/png", "image/jpeg")
MAX_TEXT = 20_000          # characters of one text output
MAX_IMAGE = 1 << 20        # bytes (base64) of one image
MAX_NOTEBOOK = 2 << 20     # bytes of all outputs of one notebook
ANSI_OK = re.compile(r"\x1b\[[0-9;]*m")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z@`]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b.|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]")


ONLY_TORCH = "the grader's kernel has torch, numpy and matplotlib only: write it yourself with torch"


LIMIT_MESSAGE = "Hidden tests failed: your results could not be checked within the grader's time and memory limits."
MAX_MESSAGE = 64 << 20      # bytes of one message from the kernel: larger ones are dropped by ZeroMQ on arrival


class NotebookTimeout(Exception):
    """The whole notebook ran longer than its wall-clock limit."""


# ---------------------------------------------------------------- metadata
class RebuildCellMetadata(NbGraderPreprocessor):
    """Replace every cell's nbgrader metadata by what the gradebook says about that cell.

    A cell whose grade_id the gradebook knows gets fresh metadata (grade, solution, locked,
    points, schema version) and its recorded type; any other cell loses its nbgrader metadata (a
    deleted or renamed test cell is added back by ``OverwriteCells``). The notebook's own
    metadata is reduced to the kernelspec and language. Nothing a student wrote in metadata
    (``schema_version``, flags, points) reaches nbgrader."""

    def preprocess(self, nb: NotebookNode, resources):
        from nbgrader.api import Gradebook, MissingEntry  # noqa: PLC0415

        info = resources["nbgrader"]
        notebook, assignment = info["notebook"], info["assignment"]
        nb.metadata = NotebookNode({k: nb.metadata[k] for k in ("kernelspec", "language_info")
                                    if isinstance(nb.metadata.get(k), dict)})
        with Gradebook(info["db_url"]) as gb:
            for cell in nb.cells:
                meta = cell.get("metadata", {})
                raw = meta.pop("nbgrader", None)
                gid = raw.get("grade_id") if isinstance(raw, dict) else None
                try:
                    source = gb.find_source_cell(gid, notebook, assignment) if isinstance(gid, str) else None
                except MissingEntry:
                    source = None
                if source is None:
                    continue
                try:
                    graded = gb.find_graded_cell(gid, notebook, assignment)
                except MissingEntry:
                    graded = None
                try:
                    gb.find_solution_cell(gid, notebook, assignment)
                    solution = True
                except MissingEntry:
                    solution = False
                cell.cell_type = source.cell_type
                if source.cell_type != "code":
                    cell.pop("outputs", None)
                    cell.pop("execution_count", None)
                elif "outputs" not in cell:
                    cell["outputs"], cell["execution_count"] = [], None
                fresh = {"grade": graded is not None and graded.type == "GradeCell", "grade_id": gid,
                         "locked": bool(source.locked), "schema_version": SCHEMA_VERSION, "solution": solution,
                         "task": False}
                if graded is not None:
                    fresh["points"] = float(graded.max_score)
                meta["nbgrader"] = NotebookNode(fresh)
                cell["metadata"] = meta
        return nb, resources


RestoreCellMetadata = RebuildCellMetadata  # the name older configurations use

MAX_SOURCE = 20_000        # characters of one cell's source shown in feedback (highlighting is costly)
MAX_CELLS = 400            # cells shown in feedback


class CapSources(NbGraderPreprocessor):
    """Feedback: every cell's source cut to ``MAX_SOURCE`` characters and the notebook to ``MAX_CELLS``
    cells before anything is highlighted or rendered, and outputs sanitised again (as in grading)."""

    def preprocess(self, nb: NotebookNode, resources):
        if len(nb.cells) > MAX_CELLS:
            nb.cells = nb.cells[:MAX_CELLS] + [NotebookNode(cell_type="markdown", metadata={}, id="lfd13-cut",
                                                            source=f"*(cells after the first {MAX_CELLS} not shown)*")]
        for cell in nb.cells:
            source = cell.get("source", "")
            source = source if isinstance(source, str) else "".join(map(str, source))
            if len(source) > MAX_SOURCE:
                source = source[:MAX_SOURCE] + f"\n... ({len(source) - MAX_SOURCE} more characters not shown) ..."
            cell["source"] = source
        sanitize_outputs(nb)
        return nb, resources


# ---------------------------------------------------------------- outputs
def _clean_text(text, limit: int = MAX_TEXT) -> str:
    text = text if isinstance(text, str) else "".join(text) if isinstance(text, list) else str(text)
    text = CONTROL.sub("", text[: limit * 2])
    if len(text) > limit:
        text = text[:limit] + f"\n... output truncated ({limit} characters kept) ..."
    return text


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    """Text cut (not yet cleaned) to a little more than ``limit`` characters, as it arrives."""
    return text if len(text) <= limit + 200 else text[:limit + 200]


def sanitize_output(out: dict) -> dict | None:
    """One output reduced to plain text and PNG/JPEG images, capped; None to drop it."""
    kind = out.get("output_type")
    if kind == "stream":
        return NotebookNode(output_type="stream", name="stderr" if out.get("name") == "stderr" else "stdout",
                            text=_clean_text(out.get("text", "")))
    if kind == "error":
        tb = out.get("traceback") if isinstance(out.get("traceback"), list) else []
        return NotebookNode(output_type="error", ename=_clean_text(out.get("ename", ""), 200),
                            evalue=_clean_text(out.get("evalue", ""), 2000),
                            traceback=[_clean_text(line, 4000) for line in tb[:100]])
    if kind in ("display_data", "execute_result"):
        data = out.get("data") if isinstance(out.get("data"), dict) else {}
        kept = {}
        for mime in KEEP_MIME:
            value = data.get(mime)
            if value is None:
                continue
            if mime == "text/plain":
                kept[mime] = _clean_text(value)
            elif isinstance(value, str) and len(value) <= MAX_IMAGE and re.fullmatch(r"[A-Za-z0-9+/=\s]*", value):
                kept[mime] = value
        dropped = sorted(set(data) - set(kept))
        if dropped and "text/plain" not in kept:
            kept["text/plain"] = f"[output of type {', '.join(dropped)[:200]} not kept by the grader]"
        if not kept:
            return None
        node = NotebookNode(output_type=kind, data=NotebookNode(kept), metadata=NotebookNode())
        if kind == "execute_result":
            node["execution_count"] = out.get("execution_count") if isinstance(out.get("execution_count"), int) else None
        return node
    return None


def sanitize_outputs(nb: NotebookNode, budget: int = MAX_NOTEBOOK) -> None:
    """Sanitise every code cell's outputs in place; once ``budget`` bytes are used, later outputs go."""
    used = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []) if isinstance(cell.get("outputs"), list) else []:
            clean = sanitize_output(out) if isinstance(out, dict) else None
            if clean is None:
                continue
            size = len(json.dumps(clean))
            if used + size > budget:
                kept.append(NotebookNode(output_type="stream", name="stdout",
                                         text="... further output not kept (the notebook's output limit was reached) ...\n"))
                used = budget
                break
            used += size
            kept.append(clean)
        cell["outputs"] = kept


# ---------------------------------------------------------------- the judge, in its own limited process
class JudgeWorker:
    """A long-lived ``judge_worker.py`` process (address-space limit) that judges one record per request,
    each under a wall-clock limit; a worker that times out or dies is replaced."""

    memory = 8 << 30
    timeout = 120

    def __init__(self):
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        import resource

        def limits():
            resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        env = {k: v for k, v in os.environ.items() if not k.startswith("LFD13_")}
        env.update(PYTHONPATH=str(HERE), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "judge_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     preexec_fn=limits, text=True, bufsize=1)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    limited = False  # the last request ran out of the worker's time or memory (even after its retry)

    def judge(self, grade_id: str, path: Path, seed: int) -> tuple[bool, str]:
        """One verdict; a request that runs out of time or memory is tried once more in a fresh worker."""
        passed, message = self._judge_once(grade_id, path, seed)
        self.limited = message.startswith(LIMIT_MESSAGE) or "grader's memory limit" in message
        if self.limited:
            passed, message = self._judge_once(grade_id, path, seed)
            self.limited = message.startswith(LIMIT_MESSAGE) or "grader's memory limit" in message
        return passed, message

    def _judge_once(self, grade_id: str, path: Path, seed: int) -> tuple[bool, str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"grade_id": grade_id, "path": str(path), "seed": seed}) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
            line = self.proc.stdout.readline() if ready else ""
            reply = json.loads(line)
            return bool(reply["passed"]), str(reply["message"])
        except (OSError, ValueError, KeyError):
            self.close()
            return False, LIMIT_MESSAGE


# ---------------------------------------------------------------- execution
class SandboxedExecute(Execute):
    """Execute in the sandbox kernel, then judge the hidden tests out of the student's reach."""

    notebook_timeout = Integer(300,
                               help="Seconds one notebook may run in all (its remaining cells are not run).").tag(
        config=True)
    interrupt_grace = Integer(5, help="Seconds a kernel has to stop after an interrupt before it is killed.").tag(
        config=True)
    unsafe_no_sandbox = Bool(False, help="DANGEROUS: run student code without isolation (course.py grade "
                                         "--unsafe-no-sandbox; a trusted test run only).").tag(config=True)
    cgroup_parent = Unicode("", help="A delegated cgroup v2 folder to make the sandboxes' groups in "
                                     "(default: found under /sys/fs/cgroup, as root).").tag(config=True)
    cgroup_prefix = Unicode("", help="Prefix of this run's control groups (course.py removes any it left).").tag(
        config=True)
    report_file = Unicode("", help="A JSON-lines file: per notebook, whether a time or memory limit was hit "
                                   "and what could not be removed (read by course.py).").tag(config=True)
    output_budget = Integer(MAX_NOTEBOOK * 4, help="Bytes of output kept while a notebook streams it; "
                                                   "later output is dropped on arrival.").tag(config=True)

    _root: Path | None = None
    _manifest: dict | None = None
    _worker: JudgeWorker | None = None

    @classmethod
    def _prepare(cls) -> Path:
        """Once per process: a private root with the probe's modules, the kernelspec and the boxes."""
        if cls._root is None:
            import confine  # noqa: PLC0415
            import kernel_env  # noqa: PLC0415
            import kernel_launcher  # noqa: PLC0415

            cls._manifest = kernel_env.load()
            # short: Unix socket paths are limited to 107 bytes
            root = Path(tempfile.mkdtemp(prefix="lfd13-", dir=confine.temp_root()))
            root.chmod(0o711)  # searchable, not listable: a sandbox's own uid reaches its box by its full path
            lib = root / "lib"
            lib.mkdir()
            for name in ("kernel_launcher.py", *kernel_launcher.PROBE_FILES):
                shutil.copy(HERE / name, lib / name)
            (root / "manifest.json").write_text(json.dumps(cls._manifest))
            os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root / "jupyter"),
                                                                       os.environ.get("JUPYTER_PATH")]))
            (root / "boxes").mkdir(mode=0o711)
            (root / "boxes").chmod(0o711)
            cls._root = root
            cls._worker = JudgeWorker()
            atexit.register(cls._worker.close)
            atexit.register(confine.remove_tree, root)
        return cls._root

    def _write_kernelspec(self, box: Path, group) -> None:
        """The kernelspec for this notebook: everything the launcher needs is on its command line."""
        root = self._root
        assert root is not None
        argv = [sys.executable, str(root / "lib" / "kernel_launcher.py"), "--box", str(box),
                "--manifest", str(root / "manifest.json")]
        for procs in group.procs_files if group is not None else []:
            argv += ["--cgroup-procs", procs]
        if self.unsafe_no_sandbox:
            argv.append("--unsafe-no-sandbox")
        spec = root / "jupyter" / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True, exist_ok=True)
        # interrupts travel as messages: a signal to bwrap would not reach the kernel inside
        (spec / "kernel.json").write_text(json.dumps({"argv": [*argv, "-f", "{connection_file}"],
                                                      "display_name": "lfd13 sandbox", "language": "python",
                                                      "interrupt_mode": "message"}))

    # nbclient hooks ------------------------------------------------------------
    def create_kernel_manager(self):
        import zmq  # noqa: PLC0415

        km = super().create_kernel_manager()
        km.transport = "ipc"
        km.ip = str(self._box / "sandbox" / "ipc" / "k")
        make_client = km.client

        def client(**kwargs):  # every socket to this kernel drops a message larger than MAX_MESSAGE on arrival
            kc = make_client(**kwargs)
            kc.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
            return kc

        km.client = client
        return km

    def preprocess_cell(self, cell, resources, index):
        self._cells_started += 1
        if time.monotonic() > self._deadline:
            raise NotebookTimeout(f"the notebook ran longer than its limit of {self.notebook_timeout} s")
        return super().preprocess_cell(cell, resources, index)

    def output(self, outs, msg, display_id, cell_index):
        """Each output as it arrives: cut to what sanitising would keep of it (text to ``MAX_TEXT``
        characters, no image over ``MAX_IMAGE``), counted against the notebook's budget, and dropped
        once the budget is spent; nothing larger is ever held."""
        content = msg.get("content")
        if not isinstance(content, dict):
            return None
        if isinstance(content.get("text"), str):
            content["text"] = _cut(content["text"])
        if isinstance(content.get("data"), dict):
            content["data"] = {k: (_cut(v) if k == "text/plain" else v) for k, v in content["data"].items()
                               if k in KEEP_MIME and isinstance(v, str) and (k == "text/plain" or len(v) <= MAX_IMAGE)
                               } or {"text/plain": "[output not kept by the grader]"}
        if isinstance(content.get("traceback"), list):
            content["traceback"] = [_cut(str(v), 4000) for v in content["traceback"][:100]]
        for key in ("ename", "evalue"):
            if key in content:
                content[key] = _cut(str(content[key]), 2000)
        size = len(json.dumps(content, default=str))
        self._output_used += size
        if self._output_used > self.output_budget:
            if not self._output_noted:
                self._output_noted = True
                outs.append(NotebookNode(output_type="stream", name="stdout",
                                         text="... further output not kept (the notebook's output limit was reached) ...\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _cell_timeout(self, cell) -> int:
        left = self._deadline - time.monotonic()
        return max(1, math.ceil(min(self.timeout or left, left)))

    async def _async_handle_timeout(self, timeout, cell=None):
        from queue import Empty  # noqa: PLC0415

        from jupyter_client.utils import ensure_async  # noqa: PLC0415
        from nbclient.exceptions import DeadKernelError  # noqa: PLC0415

        self._limit_hit = True
        reply = await super()._async_handle_timeout(timeout, cell)  # interrupts the kernel
        try:
            await ensure_async(self.kc.shell_channel.get_msg(timeout=self.interrupt_grace))
        except Empty:
            await ensure_async(self.km.shutdown_kernel(now=True))
            raise DeadKernelError(f"a cell ran longer than {timeout} s and the kernel ignored the interrupt")
        return reply

    # the pipeline ----------------------------------------------------------------
    def preprocess(self, nb: NotebookNode, resources):
        sys.path.insert(0, str(HERE))
        import cases  # noqa: PLC0415
        import confine  # noqa: PLC0415
        import judge  # noqa: PLC0415
        import kernel_launcher  # noqa: PLC0415
        import wire  # noqa: PLC0415

        root = self._prepare()
        box = Path(tempfile.mkdtemp(dir=root / "boxes"))
        self._box = box
        mounted = confine.make_box(box)
        box.chmod(0o711)
        group = None
        try:
            for d in ("tasks", "lib", "sandbox/work", "sandbox/home", "sandbox/out", "sandbox/ipc", "sandbox/tasks"):
                (box / d).mkdir(parents=True)
            for name in kernel_launcher.PROBE_FILES:
                shutil.copy(root / "lib" / name, box / "lib" / name)
            if not self.unsafe_no_sandbox:
                group = confine.Cgroup(f"{self.cgroup_prefix}{box.name}", parent=self.cgroup_parent or None)
            return self._grade(nb, resources, box, group, cases, judge, wire)
        finally:
            left = group.remove() if group is not None else []
            left += confine.remove_box(box, mounted)
            self._report(resources, left)

    def _report(self, resources, left: list[str]) -> None:
        info = resources.get("nbgrader", {}) if isinstance(resources, dict) else {}
        if left:
            self.log.error("Could not remove everything of a sandbox: %s", "; ".join(left))
        if self.report_file:
            with open(self.report_file, "a") as f:
                f.write(json.dumps({"student": info.get("student"), "assignment": info.get("assignment"),
                                    "limit_hit": bool(getattr(self, "_limit_hit", False)), "left": left}) + "\n")

    def _grade(self, nb, resources, box: Path, group, cases, judge, wire):
        seed = secrets.randbits(128)  # the grader's secret: never sent to the kernel
        graded = []
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            gid = meta.get("grade_id")
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution") and gid in judge.CHECKS:
                graded.append(cell)
                wire.dump(cases.inputs(gid, seed), str(box / "tasks" / gid))
        self._write_kernelspec(box, group)
        self.kernel_name = KERNEL_NAME
        self.timeout_func = self._cell_timeout
        self.shutdown_kernel = "immediate"
        self._deadline = time.monotonic() + self.notebook_timeout
        self._cells_started = 0
        self._limit_hit = False
        self._output_used, self._output_noted = 0, False
        problem = None
        try:
            nb, resources = super().preprocess(nb, resources)
        except Exception as err:  # noqa: BLE001 - a dead, hung or slow kernel must not stop the grading run
            text = str(err).strip().splitlines()
            problem = f"{type(err).__name__}: {text[0][:300] if text else ''}"
            self.log.warning("Execution stopped early: %s", problem)
            self._limit_hit = True  # a time limit, a memory limit (the kernel killed) or a crash: retried alone
            if getattr(self, "km", None) is not None:
                try:
                    self.km.shutdown_kernel(now=True)  # type: ignore[union-attr]
                except Exception:  # noqa: BLE001
                    pass
        if group is not None:
            group.kill()  # nothing of the kernel runs on while its records are judged
        if problem and self._cells_started == 0:  # the sandbox did not start: not gradable, and said so
            said = _clean_text((box / "kernel.log").read_text(errors="replace")[:300] if (box / "kernel.log").exists()
                               else "", 300).replace("\n", " ")
            raise RuntimeError(f"the sandboxed kernel did not start ({problem}; {said})")
        if problem:
            nb.cells.insert(0, NotebookNode(cell_type="markdown", metadata={}, id="lfd13-grading-note",
                                            source=f"**Grading note:** execution stopped early ({problem}). "
                                                   "Cells after that point were not run."))
        sanitize_outputs(nb)
        for cell in graded:
            gid = cell.metadata.nbgrader.grade_id
            kernel_error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
            out = box / "sandbox" / "out" / gid
            passed, message = self._worker.judge(gid, out, seed)
            self._limit_hit |= self._worker.limited
            passed = passed and kernel_error is None
            if kernel_error is not None:
                raised = f"This cell raised {kernel_error.get('ename')}: {kernel_error.get('evalue')}".strip()
                if kernel_error.get("ename") == "ModuleNotFoundError":
                    raised += f" ({ONLY_TORCH})"
                message = raised + ("\nThe hidden tests in this cell did not run." if not os.path.lexists(out)
                                    else "\n" + message)
            cell.outputs = [self._output(passed, message)]
        return nb, resources

    @staticmethod
    def _output(passed: bool, message: str) -> NotebookNode:
        message = _clean_text(message, 2000)
        if passed:
            return NotebookNode(output_type="stream", name="stdout", text=message + "\n")
        return NotebookNode(output_type="error", ename="HiddenTestFailure", evalue=message,
                            traceback=[f"\x1b[0;31mHiddenTestFailure\x1b[0m: {message}"])
