"""``benchmarks/results.json``: one key per benchmark, read, merged and written back at the moment of saving.

Every benchmark saves through :func:`update_results`, so a benchmark run beside another never
overwrites the other's keys with what it read at its start.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def update_results(key: str, value: object | Callable[[dict], object]) -> dict:
    """Replace ``key`` of results.json, keeping every other key as it is on disk now.

    ``value`` may be a function of the whole file as it is now (to merge into the old value).
    """
    data = load_results()
    data[key] = value(data) if callable(value) else value
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data
