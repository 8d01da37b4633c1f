"""PLACEHOLDER — to be written: Chapter 3's fine-tuning arms and probes (a result file)."""

from __future__ import annotations

from lfd13.experiments import Entry

#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = ()
