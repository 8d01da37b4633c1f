"""Start an IPython kernel for one submission inside a sandbox.

Instructor-only. The grading kernelspec (written by ``sandbox.py``) runs this file as the grader's
user; it then, before any student code runs:

1. imports ``lfd13_probe`` (so the probe holds pristine references) and tells it its box and seed;
2. copies the connection file into the kernel's private box;
3. in a private mount namespace (where the OS allows it), covers temporary and home directories
   (``/tmp``, ``/home``, ``/root``...) with empty ones, binding back only the Python installation
   and the kernel's box, and hides the instructor's files (the course directory, the grading copy,
   the repository's ``.git`` and tests) under empty read-only mounts;
4. sets resource limits (processes, file size, CPU time, memory);
5. drops to an unprivileged user id unique to this submission (when started as root), so the kernel
   cannot read root-only files, other submissions' boxes or the gradebook;
6. replaces the environment by a short whitelist and moves into the box;
7. runs ipykernel.
Each step that the OS refuses is reported on stderr (the grader's log) and the others still apply.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import sys

KEEP_ENV = ("PATH", "LANG", "LC_ALL", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "PYTHONHASHSEED", "TZ")
CLONE_NEWNS, MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x20000, 1, 2, 4, 0x4000, 0x40000


def warn(msg: str) -> None:
    print(f"[lfd13 sandbox] {msg}", file=sys.stderr, flush=True)


MS_BIND = 0x1000
# Directories replaced by an empty private tmpfs in the kernel's mount namespace (other users' and the
# grader's temporary files, home directories...). Paths the kernel needs are bound back inside them.
MASKED = {"/tmp": "1777", "/var/tmp": "1777", "/dev/shm": "1777", "/home": "755", "/root": "755",
          "/srv": "755", "/mnt": "755", "/media": "755"}


def private_ancestor(path: str) -> str | None:
    """The first directory above ``path`` that other users cannot traverse, if any."""
    current = "/"
    for part in os.path.realpath(path).split(os.sep)[1:]:
        if not os.stat(current).st_mode & 0o001:
            return current
        current = os.path.join(current, part)
    return None


def within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def mask(libc, target: str, keep: list[str], mode: str) -> bool:
    """Cover ``target`` with an empty tmpfs, then bind the ``keep`` paths inside it back in place."""
    inside = [k for k in keep if within(k, target) and os.path.exists(k)]
    if not os.path.isdir(target) or any(k == target for k in inside):
        return True
    fds = [(k, os.open(k, os.O_PATH)) for k in inside]  # handles that survive the covering mount
    try:
        opts = f"size=64m,mode={mode}".encode()
        if libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
            return False
        ok = True
        for k, fd in fds:
            os.makedirs(k if os.path.isdir(f"/proc/self/fd/{fd}") else os.path.dirname(k), mode=0o755, exist_ok=True)
            ok &= libc.mount(f"/proc/self/fd/{fd}".encode(), k.encode(), None, MS_BIND | MS_REC, None) == 0
        return ok
    finally:
        for _, fd in fds:
            os.close(fd)


def isolate(hidden: list[str], needed: list[str]) -> bool:
    """In a private mount namespace: mask temporary and home directories (keeping ``needed``),
    make ``needed`` reachable, and hide the instructor's ``hidden`` directories."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    ok = all([mask(libc, target, needed, mode) for target, mode in MASKED.items()])
    for path in needed:  # e.g. an interpreter under a private directory that is not in MASKED
        blocked = private_ancestor(path)
        if blocked is not None:
            ok &= mask(libc, blocked, needed, "755")
    for path in hidden:
        if os.path.isdir(path):
            flags = MS_RDONLY | MS_NOSUID | MS_NODEV
            ok &= libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags, b"size=4k,mode=000") == 0
    return ok


def main() -> None:
    argv = sys.argv[1:]
    conn = argv[argv.index("-f") + 1]
    box, uid = os.environ["LFD13_BOX"], int(os.environ.get("LFD13_UID", "-1"))
    seed, hidden = int(os.environ["LFD13_SEED"]), json.loads(os.environ.get("LFD13_HIDE", "[]"))
    here = os.path.dirname(os.path.abspath(__file__))

    sys.path.insert(0, here)
    import lfd13_probe  # noqa: PLC0415 - must come before any student code

    sys.path.remove(here)
    lfd13_probe.BOX, lfd13_probe.SEED = box, seed

    new_conn = os.path.join(box, "connection.json")
    shutil.copyfile(conn, new_conn)
    work = os.path.join(box, "work")
    for d in (work, os.path.join(box, "home"), os.path.join(box, "tmp")):
        os.makedirs(d, exist_ok=True)
    os.chdir(work)

    needed = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(
        os.path.realpath(sys.executable)), box)})
    isolated = isolate(hidden, needed)
    os.chdir(work)  # through the new mounts
    if not isolated:
        warn("could not hide the instructor's files (no mount namespace); relying on file permissions")
    reachable = all(private_ancestor(p) is None for p in needed)

    limits = {resource.RLIMIT_NPROC: 512, resource.RLIMIT_FSIZE: 256 << 20, resource.RLIMIT_CPU: 900,
              resource.RLIMIT_CORE: 0, resource.RLIMIT_AS: 16 << 30}
    for which, value in limits.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            warn(f"could not set resource limit {which}")

    if os.geteuid() == 0 and uid > 0 and not reachable:
        warn("the Python installation is not readable by other users and could not be exposed: "
             "student code runs as the grader's own user")
    elif os.geteuid() == 0 and uid > 0:
        for root, dirs, files in os.walk(box):
            for name in dirs + files + [""]:
                os.chown(os.path.join(root, name), uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    else:
        warn("not started as root: student code runs as the grader's own user")

    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env.update(HOME=os.path.join(box, "home"), TMPDIR=os.path.join(box, "tmp"),
               IPYTHONDIR=os.path.join(box, "home", ".ipython"), MPLCONFIGDIR=os.path.join(box, "home", ".mpl"),
               JUPYTER_RUNTIME_DIR=os.path.join(box, "home", "runtime"), MPLBACKEND="agg")
    os.environ.clear()
    os.environ.update(env)

    from ipykernel import kernelapp  # noqa: PLC0415

    kernelapp.launch_new_instance(argv=["-f", new_conn, "--HistoryManager.hist_file=:memory:"])


if __name__ == "__main__":
    main()
