"""Recreate every file that ships with the package: one table, one command per row.

A chapter runs in about a minute on two CPU cores; some of its results need longer training
than that. Those trainings and comparisons ran once, by the rows of :data:`ENTRIES`, and their
files ship in ``lfd13/checkpoints`` (model weights with a JSON sidecar) and ``lfd13/results``
(what an experiment measured). Run::

    python -m lfd13.recreate --list        # every row: its name, what it writes
    python -m lfd13.recreate mae           # one row, into the package's folders
    python -m lfd13.recreate mae --out DIR # or into DIR (checkpoints and results side by side)

Rows run in table order when more than one is named, so a row may read what an earlier row wrote.
Re-running on other hardware gives models of the same quality, not bit-identical weights.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from lfd13 import shipped
from lfd13.experiments import (
    Entry,
    charlm_pretraining,
    clip_pretraining,
    finetune_comparison,
    layer_transfer,
    mae_finetuning,
    mae_pretraining,
    mlm_pretraining,
    peft_comparison,
    pretext_benefits,
    pretext_pretraining,
    sft_comparison,
)
from lfd13.runtime import setup

__all__ = ["ENTRIES", "entry", "main"]

#: Every row, in dependency order (a row may read files written by rows above it).
ENTRIES: tuple[Entry, ...] = (
    *pretext_pretraining.ENTRIES,  # Chapter 1b
    *pretext_benefits.ENTRIES,
    *mlm_pretraining.ENTRIES,  # Chapter 2
    *mae_pretraining.ENTRIES,  # Chapter 3
    *mae_finetuning.ENTRIES,
    *clip_pretraining.ENTRIES,  # Chapter 4
    *finetune_comparison.ENTRIES,  # Chapter 5
    *layer_transfer.ENTRIES,  # Chapter 5a
    *charlm_pretraining.ENTRIES,  # Chapter 5b
    *sft_comparison.ENTRIES,
    *peft_comparison.ENTRIES,  # Chapter 6
)


def entry(name: str) -> Entry:
    """The row called ``name``; the error lists the known rows."""
    for e in ENTRIES:
        if e.name == name:
            return e
    raise KeyError(f"no entry {name!r}; the entries are {[e.name for e in ENTRIES]}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lfd13.recreate", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="the rows to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the rows and the files each writes")
    parser.add_argument("--out", type=Path, default=None, help="write into this folder instead of the package's")
    parser.add_argument("--tiny", action="store_true", help="run the tiny settings (a smoke test, seconds)")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for e in ENTRIES:
            print(f"{e.name:20s} {e.doc}\n{'':20s} writes {', '.join(e.files(e.settings))}")
        return
    device = setup(seed=0)
    rows = [entry(n) for n in args.names]
    rows.sort(key=ENTRIES.index)
    checkpoints = args.out or shipped.CHECKPOINT_DIR
    results = args.out or shipped.RESULTS_DIR
    for e in rows:
        start = time.perf_counter()
        e.write(e.tiny if args.tiny else e.settings, checkpoints=checkpoints, results=results, device=device, progress=None)
        print(f"{e.name}: wrote {', '.join(e.files(e.tiny if args.tiny else e.settings))} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
