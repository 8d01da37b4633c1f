"""Inside the sandbox: set the kernel's resource limits, load the probe, run ipykernel.

Instructor-only. ``kernel_launcher.py`` starts this file with the kernel environment's
interpreter (``python -I``: no user site, no PYTHON* variables) inside bubblewrap. Limits are
set as hard limits before any student code runs, so they cannot be raised again. With
``--selftest`` it prints what the kernel can import and see instead (``sandbox.preflight``).
"""
import json
import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def limit(limits: dict) -> None:
    for name, value in limits.items():
        which = getattr(resource, f"RLIMIT_{name}")
        resource.setrlimit(which, (value, value))


def selftest() -> dict:
    import importlib.util

    report = {"pid": os.getpid(), "uid": os.getuid(), "processes": len([p for p in os.listdir("/proc") if p.isdigit()])}
    for name in ("torch", "numpy", "matplotlib", "ipykernel", "transformers", "open_clip", "peft", "lfd13", "nbgrader"):
        try:
            report[name] = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            report[name] = False
    import torch  # noqa: F401 - must work

    report["torch_ok"] = True
    import socket

    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1).close()
        report["network"] = True
    except OSError:
        report["network"] = False
    return report


def main() -> None:
    args = sys.argv[1:]
    box = args[args.index("--box") + 1]
    limits = json.loads(os.environ.pop("LFD13_LIMITS", "{}"))
    sys.path.insert(0, HERE)
    limit(limits)
    if "--selftest" in args:
        print(json.dumps(selftest()))
        return
    conn = args[args.index("-f") + 1]
    for d in ("work", "home", "out"):
        os.makedirs(os.path.join(box, d), exist_ok=True)
    os.chdir(os.path.join(box, "work"))

    import lfd13_probe  # noqa: PLC0415 - before any student code

    lfd13_probe.BOX = box
    sys.path.remove(HERE)
    sys.path.append(HERE)  # the hidden cells still find lfd13_probe after the student's own modules
    from ipykernel import kernelapp  # noqa: PLC0415

    kernelapp.launch_new_instance(argv=["-f", conn, "--HistoryManager.hist_file=:memory:"])


if __name__ == "__main__":
    main()
