"""Every row of the recreate table runs: each on its tiny settings, in table order, into one temporary folder.

A row that no longer runs (a renamed function, a changed signature, a file it forgot to write)
fails here in seconds, long before anyone needs to recreate a shipped file.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from lfd13 import recreate, shipped
from lfd13.experiments import Entry


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """Run every row on its tiny settings, in table order, into one folder (checkpoints and results side by side)."""
    out = tmp_path_factory.mktemp("recreate")
    for e in recreate.ENTRIES:
        e.write(e.tiny, checkpoints=out, results=out, device="cpu", progress=False)
    return out


@pytest.mark.parametrize("e", recreate.ENTRIES, ids=lambda e: e.name)
def test_each_row_writes_its_files_and_reads_them_back(e: Entry, written: Path):
    names = e.files(e.tiny)
    assert names, f"{e.name} writes no file"
    missing = [n for n in names if not (written / n).is_file()]
    assert not missing, f"{e.name} did not write {missing}"
    e.check(checkpoints=written, results=written)


@pytest.mark.parametrize("e", recreate.ENTRIES, ids=lambda e: e.name)
def test_each_row_has_frozen_settings_and_a_tiny_twin(e: Entry):
    assert is_dataclass(e.settings) and type(e.tiny) is type(e.settings)
    assert e.settings.__dataclass_params__.frozen
    assert e.tiny != e.settings, f"{e.name}: the tiny settings are the shipped ones"
    assert {f.name for f in fields(e.settings)}, e.name


def test_every_shipped_file_has_exactly_one_row():
    shipped_files = sorted(p.name for d in (shipped.CHECKPOINT_DIR, shipped.RESULTS_DIR) for p in d.iterdir()
                           if p.is_file())
    claimed = [n for e in recreate.ENTRIES for n in e.files(e.settings)]
    assert sorted(set(claimed)) == sorted(claimed), "two rows write the same file"
    assert sorted(claimed) == shipped_files


def test_an_unknown_row_lists_the_known_ones():
    with pytest.raises(KeyError, match="the entries are"):
        recreate.entry("no-such-row")
