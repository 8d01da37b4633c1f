"""The hidden tests discriminate, end to end through nbgrader: every submission below was released,
collected and autograded by ``course.py`` in one session (see ``conftest.py``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import assignment_variants as variants

pytestmark = pytest.mark.slow
ASSIGNMENTS = ("masking", "contrastive", "lora")


def scores(graded, student, assignment):
    cells = graded.cells[(student, assignment)]
    assert cells is not None, f"{student}/{assignment} was not graded:\n{graded.grade_log[-2000:]}"
    return cells


def lost(cells, grade_ids):
    return sum(cells[g][1] - (cells[g][0] or 0) for g in grade_ids)


def failure_messages(graded, student, assignment):
    nb = graded.output(student, assignment)
    return [o.get("evalue", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_earns_full_marks(graded, assignment):
    score, max_score = graded.totals[(f"solution-{assignment}", assignment)]
    assert max_score == 10
    assert score == max_score, scores(graded, f"solution-{assignment}", assignment)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_blank_release_earns_nothing(graded, assignment):
    score, _ = graded.totals[(f"blank-{assignment}", assignment)]
    assert score == 0, scores(graded, f"blank-{assignment}", assignment)


WRONG_CASES = [(student, function, name) for student, fs in variants.wrong_notebooks().items()
               for function, [(name, _)] in fs.items()]


def test_at_least_eight_wrong_implementations_per_assignment():
    for assignment in ASSIGNMENTS:
        n = sum(1 for _, f, _ in WRONG_CASES if variants.ASSIGNMENT_OF[f] == assignment)
        assert n >= 8, f"{assignment}: only {n} wrong implementations"


@pytest.mark.parametrize("student,function,name", WRONG_CASES, ids=[f"{f}-{n}" for _, f, n in WRONG_CASES])
def test_wrong_implementation_loses_marks(graded, student, function, name):
    assignment = variants.ASSIGNMENT_OF[function]
    cells = scores(graded, student, assignment)
    targets = variants.FUNCTIONS[function][1]
    assert lost(cells, targets) > 0, f"{function} variant {name!r} kept full marks: {cells}"
    if name.startswith("delegates"):
        messages = failure_messages(graded, student, assignment)
        assert any("own implementation" in m for m in messages), messages


CORRECT_CASES = [(f"correct-{a}-{i}", a, name) for a in ASSIGNMENTS for i, (name, _) in enumerate(variants.CORRECT[a])]


@pytest.mark.parametrize("student,assignment,name", CORRECT_CASES, ids=[f"{a}-{n}" for _, a, n in CORRECT_CASES])
def test_correct_alternative_earns_full_marks(graded, student, assignment, name):
    score, max_score = graded.totals[(student, assignment)]
    assert score == max_score == 10, (failure_messages(graded, student, assignment), scores(graded, student, assignment))


def test_failure_messages_are_clear_and_hide_the_checks(graded):
    messages = failure_messages(graded, "wrong-masking-0", "masking")
    assert any("80/10/10" in m and "expected 10.0%" in m for m in messages), messages
    nb = graded.output("wrong-masking-0", "masking")
    text = json.dumps(nb)
    assert "check_mask_tokens" not in text and "def _within" not in text


# ---------------------------------------------------------------- hostile submissions
def test_syntax_error_loses_only_that_part(graded):
    cells = scores(graded, "hostile-syntax", "masking")
    assert lost(cells, variants.FUNCTIONS["mask_tokens"][1]) == 5
    assert lost(cells, variants.FUNCTIONS["random_masking"][1]) == 0


def test_infinite_loop_is_interrupted_and_the_rest_graded(graded):
    cells = scores(graded, "hostile-loop", "contrastive")
    assert cells["recall_at_k"][0] == 0
    assert graded.totals[("hostile-loop", "contrastive")][0] == 7
    assert any("Timeout" in m or "timed out" in m.lower() or "KeyboardInterrupt" in m
               for m in failure_messages(graded, "hostile-loop", "contrastive"))


def test_kernel_exit_keeps_earlier_marks_and_later_students_are_graded(graded):
    cells = scores(graded, "hostile-exit", "lora")
    assert graded.totals[("hostile-exit", "lora")][0] == 7, cells
    assert cells["inject_lora"][0] == 0 and cells["count_parameters"][0] == 0
    nb = graded.output("hostile-exit", "lora")
    assert "execution stopped early" in nb.cells[0].source
    # students sorted after it in the same nbgrader run were graded
    assert graded.totals[("solution-lora", "lora")][0] == 10
    assert all(graded.cells[(s, "lora")] is not None for s in graded.plan if s.startswith("wrong-lora"))


def test_edited_and_deleted_test_cells_are_restored(graded):
    assert graded.totals[("hostile-tests-edited", "masking")][0] == 0
    nb = graded.output("hostile-tests-edited", "masking")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    for gid in ("mask_tokens_selection", "mask_tokens_split", "mask_tokens_contract", "random_masking_exact"):
        assert gid in ids


def test_corrupted_notebook_scores_zero_without_stopping_others(graded):
    assert graded.totals[("hostile-corrupt", "contrastive")] in (None, (0.0, 10.0), (0, 10.0))
    assert graded.totals[("solution-contrastive", "contrastive")][0] == 10


def test_tampering_with_comparisons_or_the_probe_does_not_pass(graded):
    # the same wrong answers as ordinary variants, plus tampering: every cell they fail stays failed
    cells = scores(graded, "hostile-tamper", "contrastive")
    for gid in ("clip_loss_value", "clip_loss_grad", "zero_shot", "recall_at_k"):
        assert cells[gid][0] == 0, cells


def test_student_code_cannot_reach_solutions_gradebook_or_other_submissions(graded):
    assert graded.totals[("hostile-cheat", "masking")][0] == 0
    nb = graded.output("hostile-cheat", "masking")
    report = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("text", "").startswith('{"found"'):
                report = json.loads(out["text"])
    assert report is not None, "the cheating cell did not run"
    assert report["solutions_used"] == []
    assert not [p for p in report["readable"] if p.endswith("gradebook.db") or "/submitted/" in p
                or "/autograded/" in p or "lfd13-sandbox" in p or "/source/" in p], report["readable"]


def test_nothing_submitted_is_lost_or_changed(graded):
    originals = sorted(graded.submissions.glob("*/*/*.ipynb"))
    assert len(originals) == len(graded.plan)
    for path in originals:
        student, assignment = path.parts[-3], path.parts[-2]
        kept = graded.course / "submitted" / student / assignment / path.name
        assert kept.read_bytes() == path.read_bytes(), f"{student}/{assignment} changed"


# ---------------------------------------------------------------- feedback and export
@pytest.fixture(scope="module")
def feedback_and_csv(graded):
    graded.run("feedback", "masking", "--student", "wrong-masking-0")
    csv_path = graded.course / "grades.csv"
    graded.run("export", "--csv", str(csv_path))
    return graded.course / "feedback", csv_path


def test_feedback_shows_verdicts_but_not_hidden_tests(graded, feedback_and_csv):
    feedback, _ = feedback_and_csv
    html = (feedback / "wrong-masking-0" / "masking" / "masking.html").read_text()
    assert "HiddenTestFailure" in html and "80/10/10" in html
    assert "lfd13_probe" not in html and "BEGIN HIDDEN TESTS" not in html


def test_export_writes_one_row_per_submission(graded, feedback_and_csv):
    import csv

    _, csv_path = feedback_and_csv
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == len(graded.plan)
    by = {(r["student"], r["assignment"]): r for r in rows}
    assert float(by[("solution-lora", "lora")]["score"]) == 10
    assert float(by[("blank-lora", "lora")]["score"]) == 0


# ---------------------------------------------------------------- nbgrader validate
def test_validate_passes_on_the_solution_and_fails_on_the_release(graded):
    proc = graded.run("validate", "--jobs", "3")
    for name in ASSIGNMENTS:
        assert f"{name}: source passes, release fails as it should" in proc.stdout, proc.stdout


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_book_downloads_are_the_current_release(graded, assignment):
    import nbformat

    root = Path(__file__).resolve().parents[2]
    book = nbformat.read(root / "book" / "_static" / "assignments" / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(graded.course / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    assert [c.source for c in book.cells] == [c.source for c in release.cells], \
        "book/_static/assignments is out of date: run `make release`"
