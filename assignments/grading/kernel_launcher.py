"""Start one submission's IPython kernel inside bubblewrap, or refuse.

Instructor-only. The grading kernelspec (written by ``sandbox.py``) runs this file, as the
grader, with the connection file jupyter_client wrote; it replaces itself by ``bwrap``, which
runs ``kernel_main.py`` with the kernel environment's interpreter (``kernel_env.py``). What the
kernel gets is an allow-list:

* file system: an empty root; read-only, only the base interpreter and its standard library
  (its own site-packages replaced by an empty folder), the shared system libraries, each linked
  distribution of the kernel environment and the probe's three modules; writable, only its box
  (``/box``: work, home, out, and the IPC sockets), a small ``/tmp`` and ``/dev/shm``;
  ``/box/tasks`` (the grader's inputs) read-only;
* namespaces: its own user, pid (``/proc`` shows only the kernel's processes), IPC, network
  (no interface but its own loopback), UTS and cgroup namespaces; no nested user namespaces;
  a new session (no terminal); the kernel talks to the grader over Unix sockets in the box;
* limits (``kernel_main.py``): address space, processes, open files, file size, CPU time;
* lifetime: the kernel is pid 1's child in its namespace and bubblewrap dies with its parent;
  when either goes, the kernel ends every process left in the namespace.

Nothing falls back: if bubblewrap is missing or the namespaces cannot be made, the kernel does
not start and the submission is recorded as not gradable (``course.py grade`` checks this once
before grading and refuses with the reason). ``LFD13_UNSAFE_NO_SANDBOX=1``, set only by
``course.py grade --unsafe-no-sandbox``, runs the kernel environment without isolation.
The kernel's stdout and stderr go to ``kernel.log`` in the box, never to the grader's log.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

SANDBOX_ROOT = "/kernel"
LIB = f"{SANDBOX_ROOT}/lib"
ENV = f"{SANDBOX_ROOT}/env"
BOX = "/box"
PROBE_FILES = ("kernel_main.py", "lfd13_probe.py", "cases.py", "wire.py")
DEFAULT_LIMITS = {"AS": 12 << 30, "NPROC": 256, "NOFILE": 512, "FSIZE": 64 << 20, "CPU": 600, "CORE": 0}
TMP_SIZE = 64 << 20


class Binds:
    """bwrap arguments; sources are opened here (as the grader) and passed as file descriptors."""

    def __init__(self):
        self.args: list[str] = []
        self.fds: list[int] = []

    def bind(self, src: str, dest: str, *, writable: bool = False) -> None:
        fd = os.open(src, os.O_PATH | os.O_CLOEXEC)
        os.set_inheritable(fd, True)
        self.fds.append(fd)
        self.args += ["--bind-fd" if writable else "--ro-bind-fd", str(fd), dest]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def system_libraries() -> list[str]:
    """Folders of shared libraries the interpreter and the compiled extensions load."""
    import sysconfig

    arch = sysconfig.get_config_var("MULTIARCH") or ""
    found = []
    for d in (f"/usr/lib/{arch}" if arch else "", f"/lib/{arch}" if arch else "", "/usr/lib64", "/lib64"):
        if d and os.path.isdir(d) and os.path.realpath(d) not in {os.path.realpath(f) for f in found}:
            found.append(d)
    return found


def bwrap_command(manifest: dict, lib: str, box: str, argv: list[str], *, limits: dict | None = None
                  ) -> tuple[list[str], Binds, dict]:
    """The bwrap command line that runs ``argv`` (paths inside the sandbox) for one box."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("bubblewrap (bwrap) is not installed")
    b = Binds()
    b.args += ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
               "--hostname", "lfd13-sandbox", "--uid", "1000", "--gid", "1000", "--cap-drop", "ALL", "--clearenv"]
    # system libraries, at their own paths (merged-/usr symlinks recreated)
    for d in system_libraries():
        real = os.path.realpath(d)
        b.bind(real, real)
    for link in ("/lib", "/lib64", "/bin"):
        if os.path.islink(link):
            b.args += ["--symlink", os.readlink(link), link]
    if os.path.exists("/etc/ld.so.cache"):
        b.bind("/etc/ld.so.cache", "/etc/ld.so.cache")
    # the base interpreter: its executable, shared library and standard library, without its site-packages
    base, pyver, python = manifest["base_prefix"], manifest["pyver"], manifest["python"]
    source = manifest.get("interpreter_source", base)  # the same files, copied where others can read them

    def from_source(path: str) -> str:
        return os.path.join(source, os.path.relpath(path, base))

    b.bind(from_source(python), python)
    libdir = os.path.join(base, "lib")
    for name in os.listdir(from_source(libdir)):
        if name.startswith("libpython"):
            b.bind(from_source(os.path.join(libdir, name)), os.path.join(libdir, name))
    stdlib = os.path.join(libdir, pyver)
    b.bind(from_source(stdlib), stdlib)
    for masked in ("site-packages", "dist-packages"):
        if os.path.isdir(os.path.join(from_source(stdlib), masked)):
            b.args += ["--tmpfs", os.path.join(stdlib, masked)]
    # the kernel environment: a venv whose site-packages holds only the linked distributions
    site = f"{ENV}/lib/{pyver}/site-packages"
    b.args += ["--dir", f"{ENV}/bin", "--symlink", python, f"{ENV}/bin/python", "--dir", site]
    b.bind(os.path.join(manifest["root"], "pyvenv.cfg"), f"{ENV}/pyvenv.cfg")
    for top, target in sorted(manifest["links"].items()):
        b.bind(target, f"{site}/{top}")
    for name in PROBE_FILES:
        b.bind(os.path.join(lib, name), f"{LIB}/{name}")
    # the box: writable, the grader's inputs read-only on top
    b.bind(os.path.join(box, "sandbox"), BOX, writable=True)
    b.bind(os.path.join(box, "tasks"), f"{BOX}/tasks")
    b.args += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_SIZE), "--tmpfs", "/tmp",
               "--size", str(TMP_SIZE), "--tmpfs", "/dev/shm", "--remount-ro", "/", "--chdir", f"{BOX}/work"]
    env = {"HOME": f"{BOX}/home", "PATH": f"{ENV}/bin", "USER": "student", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
           "MPLBACKEND": "agg", "MPLCONFIGDIR": f"{BOX}/home/.mpl", "IPYTHONDIR": f"{BOX}/home/.ipython",
           "JUPYTER_RUNTIME_DIR": f"{BOX}/home/runtime", "JUPYTER_PLATFORM_DIRS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "LFD13_LIMITS": json.dumps({**DEFAULT_LIMITS, **(limits or {})})}
    for k, v in env.items():
        b.args += ["--setenv", k, v]
    return [bwrap, *b.args, "--", f"{ENV}/bin/python", "-I", f"{LIB}/kernel_main.py", *argv], b, env


def drop_capabilities() -> None:
    """An ordinary user that was lent capabilities (e.g. to read an interpreter under /root) gives them
    up before bubblewrap starts: bwrap refuses to run with capabilities it did not get from setuid."""
    if os.getuid() == 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    libc.capset(header, data)


def prepare_connection(conn: str, box: str, inside: str) -> str:
    """Copy jupyter_client's connection file into the box, its IPC path rewritten for the inside."""
    info = json.load(open(conn))
    if info.get("transport") != "ipc":
        raise SystemExit("the sandboxed kernel needs the ipc transport (KernelManager.transport = 'ipc')")
    info["ip"] = f"{inside}/ipc/k"
    dest = os.path.join(box, "sandbox", "connection.json")
    with open(dest, "w") as f:
        json.dump(info, f)
    return f"{inside}/connection.json"


FIX = ("Grading needs bubblewrap and unprivileged user namespaces. Fix: install bubblewrap "
       "(`sudo apt-get install bubblewrap`, or `make grader-env` as root); allow user namespaces "
       "(`sudo sysctl -w kernel.unprivileged_userns_clone=1` on Debian, "
       "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` on Ubuntu 24.04+); in a container, "
       "grade on the host or in a VM, or start the container with `--security-opt seccomp=unconfined "
       "--security-opt apparmor=unconfined`. Only for a trusted test run: `course.py grade --unsafe-no-sandbox`.")


def preflight(timeout: int = 120) -> str | None:
    """Start the sandbox once with a self-test; None if it isolates, else why not and how to fix it."""
    import re
    import subprocess
    import tempfile

    import kernel_env

    try:
        manifest = kernel_env.load()
    except (OSError, SystemExit) as err:
        return f"the kernel environment could not be built: {err}"
    lib = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="lfd13-check-") as box:
        for d in ("tasks", "sandbox/work", "sandbox/tasks", "sandbox/home", "sandbox/out", "sandbox/ipc"):
            os.makedirs(os.path.join(box, d))
        try:
            cmd, binds, _ = bwrap_command(manifest, lib, box, ["--box", BOX, "--selftest"])
        except FileNotFoundError as err:
            return f"{err}. {FIX}"
        except OSError as err:
            return f"a path the kernel needs cannot be opened ({err}). {FIX}"
        try:
            proc = subprocess.run(cmd, pass_fds=binds.fds, capture_output=True, text=True, timeout=timeout,
                                  preexec_fn=drop_capabilities)
        except subprocess.TimeoutExpired:
            return f"the sandbox did not start within {timeout} s. {FIX}"
        finally:
            binds.close()
    said = re.sub(r"[^\x20-\x7e]", " ", (proc.stderr or "").strip())[-400:]
    if proc.returncode != 0:
        return f"the sandbox could not be set up (bwrap said: {said or 'nothing'}). {FIX}"
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"the sandbox's self-test printed no report ({said}). {FIX}"
    wrong = [k for k in ("transformers", "open_clip", "peft", "lfd13", "nbgrader", "network") if report.get(k)]
    if wrong or not report.get("torch_ok") or report.get("processes", 99) > 3:
        return f"the sandbox does not isolate as it should ({report}). {FIX}"
    return None


def main() -> None:
    argv = sys.argv[1:]
    conn = argv[argv.index("-f") + 1]
    box = os.environ["LFD13_BOX"]
    manifest = json.loads(os.environ["LFD13_KERNEL_ENV"])
    lib = os.path.dirname(os.path.abspath(__file__))
    log = os.open(os.path.join(box, "kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if os.environ.get("LFD13_UNSAFE_NO_SANDBOX") == "1":  # course.py grade --unsafe-no-sandbox only
        inside = os.path.join(box, "sandbox")
        shutil.copytree(os.path.join(box, "tasks"), os.path.join(inside, "tasks"), dirs_exist_ok=True)
        os.environ["LFD13_LIMITS"] = json.dumps(DEFAULT_LIMITS)
        exe = os.path.join(manifest["root"], "bin", "python")
        if not os.path.exists(exe):
            os.makedirs(os.path.dirname(exe), exist_ok=True)
            os.symlink(manifest["python"], exe)
        os.execv(exe, [exe, "-I", os.path.join(lib, "kernel_main.py"), "--box", inside,
                       "-f", prepare_connection(conn, box, inside)])
    cmd, _binds, _ = bwrap_command(manifest, lib, box, ["--box", BOX, "-f", prepare_connection(conn, box, BOX)])
    drop_capabilities()
    os.execv(cmd[0], cmd)  # the descriptors in _binds are inherited by bwrap


if __name__ == "__main__":
    main()
