"""``benchmarks/results.json``: one key per benchmark, read, merged and written back at the moment of saving."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def update_results(key: str, value: object) -> dict:
    """Replace ``key`` of results.json with ``value``, keeping every other key as it is on disk now."""
    data = load_results()
    data[key] = value
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data
