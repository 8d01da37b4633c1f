"""Environment for every test run, unit tests and nbval notebooks alike.

nbval's kernels inherit this process's environment, so the settings here are what the
notebooks see too — the same as ``benchmarks/notebooks.py`` and the book build give them.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("LFD13_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
# A backend set in the environment (e.g. MPLBACKEND=Agg) replaces ipykernel's inline
# backend, and every figure cell would lose its output. Tests that draw choose Agg
# in-process (tests/conftest.py).
os.environ.pop("MPLBACKEND", None)
