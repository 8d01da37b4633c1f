"""Every hidden test, one file per assignment: ``masking.py``, ``contrastive.py``, ``lora.py``.

Instructor-only, grader side. Each check is a ``base.Check`` record that holds its grader-side
inputs (``make``), its kernel-side call (``call``, whose source alone is sent to the kernel) and
its judgement (``judge``). To add or fix a hidden test, edit its ``Check`` in its assignment's
file; the grade id is the nbgrader cell it grades (``assignments/build_sources.py``). A new one
looks like this::

    def call_thing(ns, inputs):                   # kernel side: only helpers of lfd13_probe.HELPERS
        return {"y": attempt(need(ns, "thing"), inputs["x"].clone())}

    def make_thing(s: Secret) -> dict:            # grader side: everything drawn from the secret
        return {"x": torch.randn(s.integer(2, 9, "n"), 4, generator=s.gen("x"))}

    def judge_thing(inputs: dict, outputs: dict) -> str:
        y = tensor(result(field(outputs, "y"), "thing(x)"), "thing(x)", inputs["x"].shape)
        close(y, reference(inputs["x"]), "thing(x) (it should ...)")   # raises Fail: the property, no values
        return "what passed"

    Check("thing", make_thing, call_thing, judge_thing, "one line on what it establishes")

``tests/assignments/test_assignments_checks.py`` runs every check in-process against the solutions,
the correct alternatives and every wrong variant in seconds; ``test_assignments_grading.py`` does
the same end to end through nbgrader and the sandbox.
"""
from __future__ import annotations

from . import contrastive, lora, masking
from .base import Check, Fail, Secret

ASSIGNMENTS = {"masking": masking.CHECKS, "contrastive": contrastive.CHECKS, "lora": lora.CHECKS}
CHECKS: dict[str, Check] = {c.grade_id: c for checks in ASSIGNMENTS.values() for c in checks}

__all__ = ["ASSIGNMENTS", "CHECKS", "Check", "Fail", "Secret"]
