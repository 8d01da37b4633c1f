"""PLACEHOLDER — to be written: Chapter 4's CLIP models (checkpoints)."""

from __future__ import annotations

from lfd13.experiments import Entry

#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = ()
