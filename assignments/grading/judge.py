"""Grader side of the hidden tests: turn the raw outputs a student's kernel returned into a verdict.

Instructor-only: never released. This module runs in the grader's judge process
(``judge_worker.py``), which never executes student code, so nothing a notebook rebinds can
influence it. The checks themselves live in ``checks/`` (one file per assignment, each check with
its inputs, its kernel-side call and its judgement); here the inputs are recomputed from the
grader's seed, and the kernel's record is treated as untrusted outputs only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import wire
from checks import CHECKS
from checks.base import Fail


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str  # shown to the student: what passed, or which property failed (never a reference value)


def task(grade_id: str, seed: int) -> dict:
    """What the kernel is sent for ``grade_id``: the call's source and the inputs drawn from ``seed``."""
    return CHECKS[grade_id].task(seed)


def judge(grade_id: str, record, seed: int) -> Verdict:
    """Judge one cell's raw outputs; the inputs are recomputed from ``seed``, the references from the libraries."""
    if grade_id not in CHECKS:
        raise KeyError(f"no hidden check called {grade_id!r}")
    if record is None:
        return Verdict(False, "Hidden tests did not run: the notebook stopped (error, timeout or a dead kernel) "
                              "before reaching this cell.")
    if not isinstance(record, dict):
        return Verdict(False, "Hidden tests did not run: their record is missing or invalid.")
    if "fatal" in record:
        return Verdict(False, f"Hidden tests failed: {str(record['fatal'])[:300]}")
    check = CHECKS[grade_id]
    try:
        return Verdict(True, f"Hidden tests passed: {check.judge(check.inputs(seed), record)}.")
    except Fail as err:
        return Verdict(False, f"Hidden tests failed: {err}")
    except Exception as err:  # noqa: BLE001 - malformed results (e.g. wrong types) count as failures
        return Verdict(False, f"Hidden tests failed: the results could not be checked ({type(err).__name__}); "
                              "check the types and shapes your functions return.")


def judge_file(grade_id: str, path: str, seed: int) -> Verdict:
    """Judge the record a kernel wrote at ``path`` (missing, malformed or oversized: the test did not run)."""
    if not os.path.lexists(path):
        return judge(grade_id, None, seed)
    try:
        record = wire.load(path)
    except wire.WireError as err:
        return Verdict(False, f"Hidden tests did not run: their record is invalid ({str(err)[:200]}).")
    except OSError:
        return Verdict(False, "Hidden tests did not run: their record is invalid (unreadable).")
    return judge(grade_id, record, seed)
