"""What the grader sends to a student's kernel for one hidden test (kept for ``sandbox.py``).

Instructor-only, grader side. ``inputs(grade_id, seed)`` is the *task* of that test: the source of
its kernel-side call and the inputs drawn from the seed, which stays here (see ``checks/``). The
kernel needs neither this module nor ``checks/``: it runs the task with ``lfd13_probe.run``.
"""
from __future__ import annotations

from checks import CHECKS


def inputs(grade_id: str, seed: int) -> dict:
    """The task the kernel runs for ``grade_id``: ``{"entry", "source", "inputs"}``."""
    return CHECKS[grade_id].task(seed)
