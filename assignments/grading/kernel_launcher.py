"""Start one submission's IPython kernel inside bubblewrap, or refuse.

Instructor-only. The grading kernelspec (written by ``sandbox.py`` for each box) runs this file, as
the grader, with everything on its command line (the box, the kernel environment's manifest, the
sandbox's control group, and ``--unsafe-no-sandbox`` only when ``course.py grade
--unsafe-no-sandbox`` asked for it): no environment variable changes what it does. It joins the
sandbox's control group, and as root stages every bind in a mount namespace of its own and takes a
host uid of the sandbox's own; then it replaces itself by ``bwrap``, which runs ``kernel_main.py``
with the kernel environment's interpreter (``kernel_env.py``). What the kernel gets is an allow-list:

* file system: an empty root; read-only, only the base interpreter and its standard library
  (its own site-packages replaced by an empty folder), the shared system libraries, each linked
  distribution of the kernel environment and the probe's three modules; writable, only its box
  (``/box``: outputs and the IPC sockets), a working folder and a home in memory, a small ``/tmp``
  and ``/dev/shm``; ``/box/tasks`` (the grader's inputs) read-only;
* namespaces: its own user (as root: an unprivileged host uid per sandbox, so RLIMIT_NPROC holds),
  pid (``/proc`` shows only the kernel's processes), IPC, network (no interface but its own
  loopback), UTS and cgroup namespaces; no nested user namespaces; a new session (no terminal);
  the kernel talks to the grader over Unix sockets in the box;
* limits: for the sandbox as a whole, its control group (``confine.py``: processes, memory, CPU);
  per process (``kernel_main.py``): address space, processes, open files, file size, CPU time;
* lifetime: the kernel is pid 1's child in its namespace and bubblewrap dies with its parent;
  the grader kills the whole control group when the notebook ends.

Nothing falls back: if bubblewrap is missing, the namespaces or the control group cannot be made,
the kernel does not start and the submission is recorded as not gradable (``course.py grade``
checks this once before grading and refuses with the reason).
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
PROBE_FILES = ("kernel_main.py", "lfd13_probe.py", "wire.py")  # the kernel gets no case, check or seed
DEFAULT_LIMITS = {"AS": 12 << 30, "NPROC": 256, "NOFILE": 512, "FSIZE": 64 << 20, "CPU": 600, "CORE": 0}
TMP_SIZE = 64 << 20
WORK_SIZE = 256 << 20  # the kernel's working folder, a tmpfs inside the sandbox
HOME_SIZE = 64 << 20


class Binds:
    """bwrap arguments. Sources are opened here (as the grader) and passed as file descriptors; or, with
    ``stage`` (as root, in a mount namespace of the launcher's own), bind-mounted first to neutral paths
    in the box (``stage/0``, ``stage/1``, ...), so that bubblewrap, run as the sandbox's unprivileged
    uid, never has to resolve a path of the grader's (a venv under ``/root``, a course in a private
    folder)."""

    def __init__(self, stage: str | None = None):
        self.args: list[str] = []
        self.fds: list[int] = []
        self.stage = stage
        if stage is not None:
            os.makedirs(stage, mode=0o711, exist_ok=True)

    def bind(self, src: str, dest: str, *, writable: bool = False) -> None:
        if self.stage is not None:
            target = os.path.join(self.stage, str(len(self.args)))
            if os.path.isdir(src):
                os.mkdir(target, 0o711)
            else:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            _mount(src, target, MS_BIND | MS_REC)
            self.args += ["--bind" if writable else "--ro-bind", target, dest]
            return
        fd = os.open(src, os.O_PATH | os.O_CLOEXEC)
        os.set_inheritable(fd, True)
        self.fds.append(fd)
        self.args += ["--bind-fd" if writable else "--ro-bind-fd", str(fd), dest]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


MS_BIND, MS_REC, MS_PRIVATE, CLONE_NEWNS = 4096, 16384, 1 << 18, 0x20000


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _mount(src: str, target: str, flags: int) -> None:
    import ctypes

    if _libc().mount(src.encode() if src else None, target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def private_mount_namespace() -> None:
    """As root: this process (single-threaded, before bubblewrap) gets a mount namespace of its own, with
    nothing propagating back to the grader's, for the staged binds."""
    import ctypes

    if _libc().unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount("", "/", MS_REC | MS_PRIVATE)


def system_libraries() -> list[str]:
    """Folders of shared libraries the interpreter and the compiled extensions load."""
    import sysconfig

    arch = sysconfig.get_config_var("MULTIARCH") or ""
    found = []
    for d in (f"/usr/lib/{arch}" if arch else "", f"/lib/{arch}" if arch else "", "/usr/lib64", "/lib64"):
        if d and os.path.isdir(d) and os.path.realpath(d) not in {os.path.realpath(f) for f in found}:
            found.append(d)
    return found


def bwrap_command(manifest: dict, lib: str, box: str, argv: list[str], *, limits: dict | None = None,
                  stage: str | None = None) -> tuple[list[str], Binds, dict]:
    """The bwrap command line that runs ``argv`` (paths inside the sandbox) for one box (``stage``: see
    ``Binds``)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("bubblewrap (bwrap) is not installed")
    b = Binds(stage)
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
    for d, size in (("work", WORK_SIZE), ("home", HOME_SIZE)):  # scratch space that dies with the sandbox
        b.args += ["--perms", "0700", "--size", str(size), "--tmpfs", f"{BOX}/{d}"]
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


def preflight(timeout: int = 120, cgroup_parent: str | None = None) -> str | None:
    """Start the sandbox once with a self-test, exactly as a kernel is started (its own control group,
    an unprivileged uid, bubblewrap); None if it isolates, else why not and how to fix it."""
    import re
    import subprocess
    import tempfile

    import confine
    import kernel_env

    if shutil.which("bwrap") is None:
        return f"bubblewrap (bwrap) is not installed. {FIX}"
    try:
        manifest = kernel_env.load()
    except (OSError, SystemExit) as err:
        return f"the kernel environment could not be built: {err}"
    problem = confine.problem(cgroup_parent)
    if problem:
        return problem
    group = confine.Cgroup(f"check-{os.getpid()}", parent=cgroup_parent)
    box = tempfile.mkdtemp(prefix="lfd13-check-", dir=confine.temp_root())
    try:
        for d in SANDBOX_DIRS:
            os.makedirs(os.path.join(box, d))
        with open(os.path.join(box, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        cmd = [sys.executable, os.path.abspath(__file__), "--box", box, "--manifest", os.path.join(box, "manifest.json"),
               *[a for p in group.procs_files for a in ("--cgroup-procs", p)], "--selftest"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean_environment())
        except subprocess.TimeoutExpired:
            return f"the sandbox did not start within {timeout} s. {FIX}"
    finally:
        left = group.remove() + confine.remove_tree(box)
    if left:
        return f"the self-test's sandbox could not be removed ({left[:3]})"
    said = re.sub(r"[^\x20-\x7e]", " ", (proc.stderr or "").strip())[-400:]
    if proc.returncode != 0:
        return f"the sandbox could not be set up (bwrap said: {said or 'nothing'}). {FIX}"
    try:
        lines = proc.stdout.strip().splitlines()
        report = {**json.loads(lines[0]), **json.loads(lines[-1])}
    except (ValueError, IndexError):
        return f"the sandbox's self-test printed no report ({said}). {FIX}"
    wrong = [k for k in ("transformers", "open_clip", "peft", "lfd13", "nbgrader", "network") if report.get(k)]
    if wrong or not report.get("torch_ok") or report.get("processes", 99) > 3:
        return f"the sandbox does not isolate as it should ({report}). {FIX}"
    if os.geteuid() == 0 and report.get("host_uid", 0) == 0:
        return f"the kernel would run as root on the host ({report}). {FIX}"
    return None


SANDBOX_DIRS = ("tasks", "sandbox/work", "sandbox/tasks", "sandbox/home", "sandbox/out", "sandbox/ipc")
UID_BASE = 1_600_000_000  # + the launcher's pid: a host uid of its own per sandbox, mapped to no account


def clean_environment() -> dict:
    """The grader's environment without any LFD13_* variable: nothing in it changes how a sandbox starts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LFD13_")}


def become_unprivileged(box: str) -> int:
    """As root: take a host uid and gid of the sandbox's own (``UID_BASE`` + this pid), hand it the box's
    writable folders, and drop root, so that per-user limits (RLIMIT_NPROC) hold for the kernel.
    As any other user: only drop lent capabilities. Returns the uid the sandbox runs as."""
    if os.geteuid() != 0:
        drop_capabilities()
        return os.geteuid()
    uid = UID_BASE + os.getpid()
    inside = os.path.join(box, "sandbox")
    for d in (inside, *[os.path.join(inside, n) for n in os.listdir(inside)]):
        os.lchown(d, uid, uid)
    os.chmod(inside, 0o700)
    os.chmod(box, 0o711)  # bubblewrap, as that uid, resolves the paths it binds (the folders above: sandbox.py)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    return uid


def parse(argv: list[str]) -> dict:
    import argparse

    p = argparse.ArgumentParser(prog="kernel_launcher.py")
    p.add_argument("--box", required=True, help="the sandbox's box on the host")
    p.add_argument("--manifest", required=True, help="the kernel environment's manifest (JSON)")
    p.add_argument("--cgroup-procs", action="append", default=[], help="cgroup.procs files to join first")
    p.add_argument("--unsafe-no-sandbox", action="store_true", help="no isolation (course.py grade --unsafe-no-sandbox)")
    p.add_argument("--selftest", action="store_true", help="print what the sandbox sees instead of starting a kernel")
    p.add_argument("-f", dest="connection_file", help="jupyter_client's connection file")
    return vars(p.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    """Everything comes from the command line (the kernelspec ``sandbox.py`` writes per box): no environment
    variable can switch the sandbox off or change where it runs."""
    args = parse(sys.argv[1:] if argv is None else argv)
    box = args["box"]
    with open(args["manifest"]) as f:
        manifest = json.load(f)
    lib = os.path.join(box, "lib")  # the probe's modules, copied into the box: no grader path in mountinfo
    if not os.path.isdir(lib):
        lib = os.path.dirname(os.path.abspath(__file__))
    for procs in args["cgroup_procs"]:  # join the sandbox's control group before anything else starts
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    if not args["selftest"]:
        log = os.open(os.path.join(box, "kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    tail = ["--selftest"] if args["selftest"] else None
    if args["unsafe_no_sandbox"]:  # course.py grade --unsafe-no-sandbox only
        inside = os.path.join(box, "sandbox")
        shutil.copytree(os.path.join(box, "tasks"), os.path.join(inside, "tasks"), dirs_exist_ok=True)
        os.environ["LFD13_LIMITS"] = json.dumps(DEFAULT_LIMITS)
        exe = os.path.join(manifest["root"], "bin", "python")
        if not os.path.exists(exe):
            os.makedirs(os.path.dirname(exe), exist_ok=True)
            os.symlink(manifest["python"], exe)
        os.execv(exe, [exe, "-I", os.path.join(lib, "kernel_main.py"), "--box", inside,
                       *(tail or ["-f", prepare_connection(args["connection_file"], box, inside)])])
    inner = tail or ["-f", prepare_connection(args["connection_file"], box, BOX)]
    stage = None
    if os.geteuid() == 0:
        private_mount_namespace()
        stage = os.path.join(box, "stage")
    cmd, _binds, _ = bwrap_command(manifest, lib, box, ["--box", BOX, *inner], stage=stage)
    uid = become_unprivileged(box)
    if args["selftest"]:
        print(json.dumps({"host_uid": uid}), flush=True)
    os.execv(cmd[0], cmd)  # the descriptors in _binds are inherited by bwrap


if __name__ == "__main__":
    main()
