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

from nbgrader.preprocessors import Execute, NbGraderPreprocessor

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


class RestoreCellMetadata(NbGraderPreprocessor):
    """Put back the nbgrader metadata of every known cell (grade, solution, locked, points, type).

    nbgrader's ``OverwriteCells`` restores a test cell's source but not a ``grade`` flag a student
    switched off, and then rejects the whole notebook for an inconsistent checksum. Running this
    first means a tampered cell is simply restored and the rest of the work is still graded."""

    def preprocess(self, nb: NotebookNode, resources):
        from nbgrader.api import Gradebook, MissingEntry  # noqa: PLC0415

        info = resources["nbgrader"]
        notebook, assignment = info["notebook"], info["assignment"]
        with Gradebook(info["db_url"]) as gb:
            for cell in nb.cells:
                meta = cell.get("metadata", {}).get("nbgrader")
                if meta is None:
                    continue
                gid = meta.get("grade_id") if isinstance(meta, dict) else None
                try:
                    source = gb.find_source_cell(gid, notebook, assignment) if isinstance(gid, str) else None
                except MissingEntry:
                    source = None
                if source is None:  # an unknown or renamed cell is an ordinary cell (nbgrader re-adds the original)
                    del cell.metadata["nbgrader"]
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
                meta.update(grade=graded is not None and graded.type == "GradeCell", solution=solution,
                            locked=bool(source.locked))
                if graded is not None:
                    meta["points"] = float(graded.max_score)
                else:
                    meta.pop("points", None)
        return nb, resources


class SandboxedExecute(Execute):
    """Execute in the sandbox kernel, then judge the hidden tests out of the student's reach."""

    hide_paths = List(Unicode(), help="Directories hidden from student code while it runs.").tag(config=True)
    first_uid = Integer(200000, help="First of the unprivileged uids given to kernels, one per notebook.").tag(
        config=True)

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

    def _claim_uid(self) -> int:
        """An unprivileged uid no other grading process is using (claimed with an exclusive file)."""
        claims = Path(tempfile.gettempdir()) / "lfd13-uids"
        claims.mkdir(mode=0o700, exist_ok=True)
        for uid in range(self.first_uid, self.first_uid + 100_000):
            try:
                os.close(os.open(claims / str(uid), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                continue
            if processes_of(uid):
                continue  # keep the claim: someone else runs as this uid
            return uid
        raise RuntimeError(f"no free uid in [{self.first_uid}, {self.first_uid + 100_000}); clear {claims}")

    @staticmethod
    def _release_uid(uid: int) -> None:
        try:
            (Path(tempfile.gettempdir()) / "lfd13-uids" / str(uid)).unlink()
        except OSError:
            pass

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

        uid = self._claim_uid()
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
            self._release_uid(uid)
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
