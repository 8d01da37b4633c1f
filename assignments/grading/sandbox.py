"""nbgrader preprocessor that executes each submission in a sandboxed kernel, then judges it.

Instructor-only. ``SandboxedExecute`` replaces nbgrader's ``Execute`` in the autograde pipeline
(see ``nbgrader_config.py``). For each notebook it

1. makes a private box (a directory owned by a fresh unprivileged uid) and a random seed;
2. executes the notebook with the ``lfd13-sandbox`` kernelspec (``kernel_launcher.py``), with a
   timeout per cell; a kernel that dies or hangs ends execution early instead of failing the run;
3. kills every process left behind by that uid;
4. judges each hidden-test cell from the observations the probe left in the box
   (``judge.py``; student code never runs in this process) and rewrites the cell's outputs:
   a pass prints a line, a failure becomes an error whose message (not code) the student sees.
nbgrader's ``SaveAutoGrades`` then scores the cells from those outputs.
"""
from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from traitlets import Integer, List, Unicode

from nbgrader.preprocessors import Execute

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "lfd13-sandbox"


def install_kernelspec(root: Path) -> Path:
    """Write the sandbox kernelspec under ``root``/kernels and return the JUPYTER_PATH entry."""
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(root.parent / "lib" / "kernel_launcher.py"), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "lfd13 sandbox",
                                                  "language": "python"}))
    return root


def processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                for line in (Path("/proc") / entry / "status").read_text().splitlines():
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
            except (OSError, ValueError):
                continue
    return pids


def kill_uid(uid: int) -> None:
    for _ in range(3):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


class SandboxedExecute(Execute):
    """Execute in the sandbox kernel, then judge the hidden tests out of the student's reach."""

    hide_paths = List(Unicode(), help="Directories hidden from student code while it runs.").tag(config=True)
    first_uid = Integer(200000, help="First of the unprivileged uids given to kernels, one per notebook.").tag(
        config=True)

    _counter = 0
    _root: Path | None = None

    def _prepare(self) -> Path:
        """Once per process: a sandbox root (0711) with a private lib, the kernelspec and the boxes."""
        if SandboxedExecute._root is None:
            root = Path(tempfile.mkdtemp(prefix="lfd13-sandbox-"))
            root.chmod(0o711)
            lib = root / "lib"
            lib.mkdir(mode=0o700)
            for name in ("lfd13_probe.py", "kernel_launcher.py"):
                shutil.copy(HERE / name, lib / name)
            install_kernelspec(root / "jupyter")
            os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root / "jupyter"),
                                                                       os.environ.get("JUPYTER_PATH")]))
            (root / "boxes").mkdir(mode=0o711)
            (root / "boxes").chmod(0o711)
            SandboxedExecute._root = root
            atexit.register(shutil.rmtree, root, True)
        return SandboxedExecute._root

    def _hidden(self, root: Path) -> list[str]:
        repo = HERE.parent.parent
        extra = [p for p in os.environ.get("LFD13_HIDE_EXTRA", "").split(os.pathsep) if p]
        paths = {os.getcwd(), str(HERE.parent), str(root / "lib"), *self.hide_paths, *extra}
        if (repo / ".git").exists():
            paths |= {str(repo / ".git"), str(repo / "tests"), str(repo / "assignments")}
        return sorted(p for p in paths if os.path.isdir(p))

    def preprocess(self, nb: NotebookNode, resources):
        sys.path.insert(0, str(HERE))
        import judge  # noqa: PLC0415

        root = self._prepare()

        SandboxedExecute._counter += 1
        uid = self.first_uid + os.getpid() % 1000 * 1000 + SandboxedExecute._counter
        box = root / "boxes" / f"box-{uid}"
        box.mkdir(mode=0o700)
        seed = secrets.randbelow(2**31 - 1000)
        os.environ.update(LFD13_BOX=str(box), LFD13_UID=str(uid), LFD13_SEED=str(seed),
                          LFD13_HIDE=json.dumps(self._hidden(root)))
        self.kernel_name = KERNEL_NAME
        problem = None
        try:
            nb, resources = super().preprocess(nb, resources)
        except Exception as err:  # noqa: BLE001 - a dead or hung kernel must not stop the grading run
            problem = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            self.log.warning("Execution stopped early: %s", problem)
        finally:
            kill_uid(uid)
            for key in ("LFD13_BOX", "LFD13_UID", "LFD13_SEED", "LFD13_HIDE"):
                os.environ.pop(key, None)
        if problem:
            nb.cells.insert(0, NotebookNode(cell_type="markdown", metadata={}, id="lfd13-grading-note",
                                            source=f"**Grading note:** execution stopped early ({problem}). "
                                                   "Cells after that point were not run."))
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            gid = meta.get("grade_id")
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution") or gid not in judge.CHECKS:
                continue
            kernel_error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
            obs = self._load(box / "obs" / f"{gid}.pt")
            verdict = judge.judge(gid, obs, seed)
            passed = verdict.passed and kernel_error is None
            message = verdict.message
            if kernel_error is not None:
                raised = f"This cell raised {kernel_error.get('ename')}: {kernel_error.get('evalue')}".strip()
                message = raised + ("\nThe hidden tests in this cell did not run." if obs is None else
                                    "\n" + verdict.message)
            cell.outputs = [self._output(passed, message)]
        shutil.rmtree(box, ignore_errors=True)
        return nb, resources

    @staticmethod
    def _load(path: Path):
        import torch  # noqa: PLC0415

        if not path.is_file() or path.stat().st_size > 256 << 20:
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a corrupted or forged file is just "no observations"
            return None

    @staticmethod
    def _output(passed: bool, message: str) -> NotebookNode:
        if passed:
            return NotebookNode(output_type="stream", name="stdout", text=message + "\n")
        return NotebookNode(output_type="error", ename="HiddenTestFailure", evalue=message,
                            traceback=[f"\x1b[0;31mHiddenTestFailure\x1b[0m: {message}"])
