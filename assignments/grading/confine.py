"""What the grader puts around one sandbox on the host: a control group and a box that cannot outlive it.

Instructor-only. ``sandbox.py`` uses it once per notebook:

* ``Cgroup``: one control group per sandbox, so that processes, memory and CPU are bounded for
  the sandbox as a whole (not per process): ``pids.max``, a memory limit without swap and one CPU's
  worth of time. cgroup v2 (``/sys/fs/cgroup`` with the pids, memory and cpu controllers) and the
  v1 hierarchies are both handled; the groups are made below the grader's own group, so any limit
  the host sets on the grader still applies. ``kill()`` freezes the group (where it can), kills
  every process in it and waits until it is empty; ``remove()`` deletes it.
* ``make_box`` / ``remove_box``: the box is a ``tmpfs`` with a size and an inode limit when the
  grader may mount one (root); ``remove_tree`` deletes any folder without recursion (a 3,000-deep
  tree is fine), giving back the permissions the kernel took away first, and returns what it could
  not remove, so that the caller reports it.

``problem()`` says why control groups cannot be made here (None when they can), and how to fix it.
"""
from __future__ import annotations

import os
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path

CONTROLLERS = ("pids", "memory", "cpu")
LIMITS = {"pids": 256, "memory": 4 << 30, "cpu": 1.0}  # per sandbox: processes, bytes, CPUs
BOX_SIZE = 256 << 20        # bytes of the box tmpfs (records, IPC sockets, the kernel's log)
BOX_INODES = 4096
FIX = ("Grading bounds each sandbox with a control group (processes, memory, CPU). Fix: grade as root "
       "(the groups are made under /sys/fs/cgroup), or give this user a delegated cgroup v2 subtree with the "
       "pids, memory and cpu controllers and pass it as `course.py grade --cgroup DIR` (e.g. from "
       "`systemd-run --user --scope -p Delegate=yes bash`, then DIR=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)). "
       "Only for a trusted test run: `course.py grade --unsafe-no-sandbox`.")


# ---------------------------------------------------------------- control groups
def _mounts() -> dict[str, Path]:
    """controller name (or 'unified') -> mount point, from /proc/self/mountinfo."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(rest) < 3:
            continue
        mount = Path(fields[4].replace("\\040", " "))
        if rest[0] == "cgroup2":
            found.setdefault("unified", mount)
        elif rest[0] == "cgroup":
            for option in rest[2].split(","):
                if option in CONTROLLERS:
                    found.setdefault(option, mount)
    return found


def _own_paths() -> dict[str, str]:
    """controller (or 'unified') -> this process's cgroup path, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if names == "":
            own["unified"] = path
        for name in names.split(","):
            own[name] = path
    return own


def layout(parent: str | None = None) -> dict[str, Path]:
    """Where this grader makes its groups: controller -> parent folder (all three for v1, or 'unified')."""
    mounts, own = _mounts(), _own_paths()
    if parent:  # a delegated v2 subtree given by the instructor
        return {"unified": Path(parent)}
    v1 = {c: mounts[c] / own.get(c, "/").lstrip("/") for c in CONTROLLERS if c in mounts}
    if len(v1) == len(CONTROLLERS):
        return v1
    if "unified" in mounts:
        root = mounts["unified"]
        try:
            available = (root / "cgroup.controllers").read_text().split()
        except OSError:
            available = []
        if set(CONTROLLERS) <= set(available):
            return {"unified": root / "lfd13"}
    return {}


class Cgroup:
    """One sandbox's control group (v1: one folder per controller; v2: one folder)."""

    def __init__(self, name: str, *, limits: dict | None = None, parent: str | None = None):
        self.limits = {**LIMITS, **(limits or {})}
        self.dirs: list[Path] = []
        where = layout(parent)
        if not where:
            raise OSError(f"no pids, memory and cpu control groups here. {FIX}")
        if "unified" in where:
            base = where["unified"]
            if not parent:
                base.mkdir(exist_ok=True)
                _enable(base.parent)
            _enable(base)
            d = base / name
            d.mkdir()
            self.dirs = [d]
            self._write(d, "pids.max", self.limits["pids"])
            self._write(d, "memory.max", self.limits["memory"])
            self._write(d, "memory.swap.max", 0, optional=True)
            self._write(d, "cpu.max", f"{int(self.limits['cpu'] * 100000)} 100000")
        else:
            for controller, base in where.items():
                d = base / f"lfd13-{name}"
                d.mkdir()
                self.dirs.append(d)
            pids, memory, cpu = (next(d for d in self.dirs if d.parent == where[c]) for c in CONTROLLERS)
            self._write(pids, "pids.max", self.limits["pids"])
            self._write(memory, "memory.limit_in_bytes", self.limits["memory"])
            self._write(memory, "memory.memsw.limit_in_bytes", self.limits["memory"], optional=True)
            self._write(cpu, "cpu.cfs_period_us", 100000)
            self._write(cpu, "cpu.cfs_quota_us", int(self.limits["cpu"] * 100000))
            freezer = _mounts_freezer()
            if freezer is not None:
                d = freezer / f"lfd13-{name}"
                d.mkdir()
                self.dirs.append(d)

    @staticmethod
    def _write(d: Path, name: str, value, optional: bool = False) -> None:
        try:
            (d / name).write_text(str(value))
        except OSError:
            if not optional:
                raise

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid into to join the group (all of them)."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return sorted(found)

    def usage(self) -> dict:
        """Peak memory and current processes, where the controllers say so."""
        out = {}
        for d in self.dirs:
            for name, key in (("memory.max_usage_in_bytes", "memory_peak"), ("memory.peak", "memory_peak"),
                              ("pids.current", "pids")):
                try:
                    out[key] = int((d / name).read_text())
                except (OSError, ValueError):
                    pass
        return out

    def kill(self, timeout: float = 10.0) -> bool:
        """Kill every process in the group; True once it is empty."""
        frozen = None
        for d in self.dirs:
            if (d / "cgroup.kill").exists():  # v2: the kernel does it at once
                self._write(d, "cgroup.kill", 1, optional=True)
            elif (d / "freezer.state").exists():
                self._write(d, "freezer.state", "FROZEN", optional=True)
                frozen = d
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if frozen is not None:
                self._write(frozen, "freezer.state", "THAWED", optional=True)  # killed processes die on thaw
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def remove(self) -> list[str]:
        """Kill what is left and delete the group; what could not be removed, for the caller to report."""
        self.kill()
        left = []
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                left.append(str(d))
        return left


def sweep(prefix: str, parent: str | None = None) -> list[str]:
    """Kill and remove every group whose name starts with ``prefix`` (those of one grading run, left
    behind if its grader was killed); what could not be removed, for the caller to report."""
    where = list(layout(parent).values())
    freezer = _mounts_freezer()
    if freezer is not None and "unified" not in layout(parent):
        where.append(freezer)
    found: dict[str, list[Path]] = {}
    for base in where:
        try:
            children = [d for d in base.iterdir() if d.is_dir()]
        except OSError:
            continue
        for d in children:
            name = d.name[len("lfd13-"):] if d.name.startswith("lfd13-") else d.name
            if name.startswith(prefix):
                found.setdefault(name, []).append(d)
    left = []
    for dirs in found.values():
        group = Cgroup.__new__(Cgroup)
        group.limits, group.dirs = dict(LIMITS), dirs
        left += group.remove()
    return left


def _mounts_freezer() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        rest = right.split()
        if len(rest) >= 3 and rest[0] == "cgroup" and "freezer" in rest[2].split(","):
            own = _own_paths().get("freezer", "/")
            return Path(left.split()[4]) / own.lstrip("/")
    return None


def _enable(d: Path) -> None:
    """Let the children of a v2 group use the three controllers."""
    control = d / "cgroup.subtree_control"
    have = control.read_text().split() if control.exists() else []
    missing = [c for c in CONTROLLERS if c not in have]
    if missing:
        control.write_text(" ".join(f"+{c}" for c in missing))


def problem(parent: str | None = None) -> str | None:
    """None when a control group per sandbox can be made and joined here, else why not and how to fix it."""
    try:
        group = Cgroup(f"check-{os.getpid()}", parent=parent)
    except OSError as err:
        return f"a control group per sandbox cannot be made ({err.strerror or err}). {FIX}"
    try:
        proc = subprocess.run(["sh", "-c", "for f in \"$@\"; do echo $$ > \"$f\" || exit 1; done; cat /proc/self/cgroup",
                               "sh", *group.procs_files], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return f"a process cannot join its sandbox's control group ({proc.stderr.strip()[:200]}). {FIX}"
    finally:
        left = group.remove()
    if left:
        return f"a control group could not be removed: {left}. {FIX}"
    return None


# ---------------------------------------------------------------- boxes
def temp_root() -> str:
    """Where sandboxes' folders are made: the temporary folder, unless a folder above it cannot be searched
    by other users (bubblewrap resolves the paths it binds as the sandbox's own uid), then ``/tmp``."""
    import tempfile

    base = Path(tempfile.gettempdir()).resolve()
    return str(base) if all(p.stat().st_mode & 0o001 for p in (base, *base.parents)) else "/tmp"


def can_mount() -> bool:
    return os.geteuid() == 0


def make_box(path: Path) -> bool:
    """Make ``path`` (an empty folder) a tmpfs of ``BOX_SIZE`` bytes when this process may mount one;
    True if it did (then ``remove_box`` unmounts it)."""
    if not can_mount():
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={BOX_SIZE},nr_inodes={BOX_INODES},mode=0711,"
                           "nosuid,nodev", "lfd13-box", str(path)], capture_output=True, text=True)
    return proc.returncode == 0


def remove_box(path: Path, mounted: bool) -> list[str]:
    """Unmount (when mounted) and delete a box; what could not be removed, for the caller to report."""
    left = []
    if mounted:
        proc = subprocess.run(["umount", "--lazy", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            left.append(f"{path} (could not unmount: {proc.stderr.strip()[:200]})")
    return left + remove_tree(path)


def _open_dir(name: str, dir_fd: int | None) -> int:
    """Open a folder (never a symbolic link), first giving its owner back read, write and search."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(name)
    if st.st_mode & 0o700 != 0o700:
        os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=dir_fd)  # a folder: no link to follow
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def remove_tree(path: str | os.PathLike) -> list[str]:
    """Delete ``path`` and everything in it, without recursion and without long paths.

    Every folder met is moved up to ``path``'s own level before it is emptied, so no more than two
    folders are open at a time whatever the depth; permissions are given back first (a folder its
    kernel made read-only or unsearchable). Symbolic links are removed, never followed. Returns what
    could not be removed (empty when all is gone)."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        return [] if isinstance(err, FileNotFoundError) else [f"{path} ({err.strerror})"]
    failed: list[str] = []
    try:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return []
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return []
        top = _open_dir(name, parent_fd)
        try:
            queue = ["."]  # folders to empty, each directly in ``top``
            serial, token = 0, secrets.token_hex(6)
            while queue:
                current = queue.pop()
                fd = top if current == "." else _open_dir(current, top)
                try:
                    for entry in list(os.scandir(fd)):
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                serial += 1
                                moved = f".rm-{token}-{serial}"
                                mode = entry.stat(follow_symlinks=False).st_mode
                                if mode & 0o700 != 0o700:  # moving a folder needs write access to it
                                    os.chmod(entry.name, stat.S_IMODE(mode) | 0o700, dir_fd=fd)
                                os.rename(entry.name, moved, src_dir_fd=fd, dst_dir_fd=top)
                                queue.append(moved)
                            else:
                                os.unlink(entry.name, dir_fd=fd)
                        except OSError as err:
                            failed.append(f"{path}/…/{entry.name} ({err.strerror})")
                finally:
                    if fd != top:
                        os.close(fd)
                if current != ".":
                    try:
                        os.rmdir(current, dir_fd=top)
                    except OSError as err:
                        failed.append(f"{path}/…/{current} ({err.strerror})")
        finally:
            os.close(top)
        try:
            os.rmdir(name, dir_fd=parent_fd)
        except OSError as err:
            failed.append(f"{path} ({err.strerror})")
    except OSError as err:
        failed.append(f"{path} ({err.strerror})")
    finally:
        os.close(parent_fd)
    return failed[:20]
