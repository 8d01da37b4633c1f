"""Every hidden test, one file per assignment: ``masking.py``, ``contrastive.py``, ``lora.py``.

Instructor-only, grader side. Each check is a ``base.Check`` record that holds its grader-side
inputs (``make``), its kernel-side call (``call``, whose source alone is sent to the kernel) and
its judgement (``judge``). To add or fix a hidden test, edit its ``Check`` in its assignment's
file; the grade id is the nbgrader cell it grades (``assignments/build_sources.py``).
"""
from __future__ import annotations

from . import contrastive, lora, masking
from .base import Check, Fail, Secret

ASSIGNMENTS = {"masking": masking.CHECKS, "contrastive": contrastive.CHECKS, "lora": lora.CHECKS}
CHECKS: dict[str, Check] = {c.grade_id: c for checks in ASSIGNMENTS.values() for c in checks}

__all__ = ["ASSIGNMENTS", "CHECKS", "Check", "Fail", "Secret"]
