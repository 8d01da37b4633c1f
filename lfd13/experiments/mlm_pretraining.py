"""PLACEHOLDER — to be written: Chapter 2's masked LM and its left-to-right twin (checkpoints)."""

from __future__ import annotations

from lfd13.experiments import Entry

#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = ()
