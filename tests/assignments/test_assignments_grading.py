"""The hidden tests discriminate, end to end through nbgrader: every submission below was released,
collected and autograded by ``course.py`` in one session (see ``conftest.py``)."""
from __future__ import annotations

import json
import os
import re
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
    if name.startswith("delegates"):  # the reference libraries do not exist in the grader's kernel
        messages = failure_messages(graded, student, assignment)
        assert any("No module named" in m and "torch, numpy and matplotlib only" in m for m in messages), messages


CORRECT_CASES = [(f"correct-{a}-{i}", a, name) for a in ASSIGNMENTS for i, (name, _) in enumerate(variants.CORRECT[a])]


@pytest.mark.parametrize("student,assignment,name", CORRECT_CASES, ids=[f"{a}-{n}" for _, a, n in CORRECT_CASES])
def test_correct_alternative_earns_full_marks(graded, student, assignment, name):
    score, max_score = graded.totals[(student, assignment)]
    assert score == max_score == 10, (failure_messages(graded, student, assignment), scores(graded, student, assignment))


@pytest.mark.parametrize("student", list(variants.CHEATS))
def test_cheap_non_implementations_lose_what_they_did_not_compute(graded, student):
    """Issue 24: self-reporting probes, a contiguous span with a fixed 80/10/10 cycle, a random_masking
    that ignores its generator: every cell they did not earn scores 0, the others keep their points."""
    functions, unearned = variants.CHEATS[student]
    assignment = variants.ASSIGNMENT_OF[next(iter(functions))]
    cells = scores(graded, student, assignment)
    assert {g: c for g, c in cells.items() if g in unearned and c[0]} == {}, cells
    assert {g: c for g, c in cells.items() if g not in unearned and c[0] != c[1]} == {}, cells


def test_failure_messages_are_clear_and_hide_the_checks(graded):
    messages = failure_messages(graded, "wrong-masking-0", "masking")
    assert any("80/10/10" in m and "expected 10.0%" in m for m in messages), messages
    nb = graded.output("wrong-masking-0", "masking")
    text = json.dumps(nb)
    assert "judge_split" not in text and "def within" not in text and "call_mask_tokens" not in text


def test_failure_messages_give_no_reference_values(graded):
    """A message names the property that failed; it never quotes the reference (a loss, a count, a recall)."""
    messages = [m for (student, assignment) in graded.notebooks if student.startswith(("wrong-", "cheat-"))
                for m in failure_messages(graded, student, assignment)]
    assert messages
    leaks = [m for m in messages if re.search(r"expected \(|gives \d|expected \d+\.\d{3,}|ClipLoss", m)]
    assert leaks == []


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


def stream_report(graded, student, assignment, prefix):
    nb = graded.output(student, assignment)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            for line in text.splitlines():
                if line.startswith(prefix + "{"):
                    return json.loads(line[len(prefix):])
    return None


def test_student_code_cannot_reach_solutions_gradebook_or_other_submissions(graded):
    assert len(graded.decoys) >= 6, f"decoys could be planted in too few folders: {graded.decoys}"
    assert graded.totals[("hostile-cheat", "masking")][0] == 0
    report = stream_report(graded, "hostile-cheat", "masking", "")
    assert report is not None, "the cheating cell did not run"
    assert report["solutions_used"] == []
    # an allow-list: nothing of the course, the repository, the decoys or other submissions is visible
    assert not [p for p in report["found"] if "decoy" in p or "gradebook" in p or "/submitted/" in p
                or "/autograded/" in p or "/source/" in p or p.endswith(("judge.py", "course.py"))], report["found"]
    assert [p for p in report["readable"] if p.endswith(".ipynb")] == [], report["readable"]
    assert report["writable"] == [], report["writable"]
    assert graded.hashes_after == graded.hashes, "an instructor file or a decoy changed during grading"


def test_forged_records_with_stub_functions_score_nothing(graded):
    for assignment in ("contrastive", "lora"):
        score, max_score = graded.totals[("hostile-forge", assignment)]
        assert max_score == 10 and score == 0, scores(graded, "hostile-forge", assignment)


def test_delegation_is_impossible_even_with_the_old_detector_switched_off(graded):
    cells = scores(graded, "hostile-delegate", "contrastive")
    assert lost(cells, variants.FUNCTIONS["clip_loss"][1]) == 5, cells
    assert lost(cells, ["zero_shot", "recall_at_k"]) == 0, cells  # the rest of the notebook is still graded
    cells = scores(graded, "hostile-delegate", "lora")
    assert lost(cells, variants.FUNCTIONS["LoRALinear"][1]) == 7, cells
    messages = failure_messages(graded, "hostile-delegate", "lora")
    assert any("No module named 'peft'" in m for m in messages), messages
    imports = stream_report(graded, "hostile-delegate", "contrastive", "IMPORTS ")
    assert imports == {"torch": True, "numpy": True, "matplotlib": True, "transformers": False, "open_clip": False,
                       "peft": False, "lfd13": False, "nbgrader": False, "judge": False}, imports


def test_processes_files_shared_memory_and_network_are_contained(graded):
    from conftest import TOKEN

    report = stream_report(graded, "hostile-escape", "lora", "ESCAPE ")
    assert report is not None, "the escaping cell did not run"
    assert report["tcp"] is False and graded.connections == [], (report, graded.connections)
    assert report["hostname"] == "lfd13-sandbox"
    # its own pid namespace: none of the grader's processes is visible
    assert len(report["processes"]) <= 6, report["processes"]
    assert not [p for p in report["processes"] if "nbgrader" in p or "pytest" in p or "course.py" in p]
    # nothing survives the kernel
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"survivor-{TOKEN}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                survivors.append(pid)
        except OSError:
            pass
    assert survivors == [], "a process started by student code outlived its kernel"
    # what it wrote was private to its sandbox and is gone
    for d in report["written"] + ["/tmp", "/var/tmp", "/dev/shm"]:
        assert not Path(d, f"lfd13-left-{TOKEN}").exists(), d
    assert not Path(f"/dev/shm/lfd13-shm-{TOKEN}").exists()
    keys = Path("/proc/sysvipc/shm").read_text().split() if Path("/proc/sysvipc/shm").exists() else []
    assert str(0x1fd13) not in keys
    # and the honest students graded after it in the same run kept their marks
    assert graded.totals[("solution-lora", "lora")][0] == 10
    assert graded.totals[("hostile-escape", "lora")][0] == 10


def test_student_metadata_cannot_abort_the_run_or_change_points(graded):
    score, max_score = graded.totals[("hostile-metadata", "masking")]
    assert (score, max_score) == (10, 10), scores(graded, "hostile-metadata", "masking")
    missing = [key for key in graded.notebooks if graded.cells[key] is None and key[0] != "hostile-corrupt"]
    assert missing == [], f"not graded: {missing}"


def test_a_kernel_ignoring_interrupts_is_killed_at_the_first_timeout(graded):
    nb = graded.output("hostile-sigint", "contrastive")
    assert "ignored the interrupt" in nb.cells[0].source, nb.cells[0].source
    cells = scores(graded, "hostile-sigint", "contrastive")
    assert graded.totals[("hostile-sigint", "contrastive")][0] == 0, cells
    # only the first test cell ran into the limit: no later cell was executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_loss_value")
    assert all(c.get("execution_count") is None for c in code[first + 1:])


def test_malformed_oversized_and_misshapen_records_are_rejected(graded):
    cells = scores(graded, "hostile-records", "masking")
    assert lost(cells, list(cells)) == 10, cells
    messages = failure_messages(graded, "hostile-records", "masking")
    assert sum("record is invalid" in m for m in messages) >= 4, messages
    # valid records of attacker-chosen content and shapes are judged as outputs, and fail
    assert sum("record is invalid" not in m and "Hidden tests failed" in m for m in messages) >= 2, messages
    assert graded.totals[("solution-masking", "masking")][0] == 10


def test_outputs_are_sanitised_and_kernel_stderr_stays_out_of_the_log(graded):
    from conftest import TOKEN

    path = graded.course / "autograded" / "hostile-output" / "lora" / "lora.ipynb"
    assert path.stat().st_size < 3 << 20, path.stat().st_size
    nb = graded.output("hostile-output", "lora")
    mimes = {m for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) for m in o.get("data", {})}
    assert mimes <= {"text/plain", "image/png", "image/jpeg"}, mimes
    text = json.dumps(nb)
    assert "\\u001b]" not in text and "\\u001b[2J" not in text
    logs = "".join(p.read_text(errors="replace") for p in (graded.course / ".course").glob("*.log")) + graded.grade_log
    assert f"FORGED-{TOKEN}" not in logs and f"stderr-{TOKEN}" not in logs and "\x1b" not in logs
    assert graded.totals[("hostile-output", "lora")][0] == 10


def test_symlinked_submissions_are_not_collected(graded):
    rows = [line.split(None, 2) for line in graded.collect_log.splitlines()]
    assert ["hostile-symlink", "masking", "skipped: a symbolic link"] in rows, graded.collect_log
    assert ["hostile-linkdir", "-", "skipped: a symbolic link"] in rows, graded.collect_log
    assert not (graded.course / "submitted" / "hostile-symlink").exists()
    assert not (graded.course / "submitted" / "hostile-linkdir").exists()


def test_every_honest_student_keeps_full_marks(graded):
    honest = [k for k in graded.notebooks if k[0].startswith(("solution-", "correct-"))]
    assert len(honest) >= 7
    assert {k: graded.totals[k] for k in honest if graded.totals[k] != (10, 10)} == {}


def test_nothing_submitted_is_lost_or_changed(graded):
    originals = sorted(p for p in graded.submissions.glob("*/*/*.ipynb") if not p.is_symlink()
                       and not p.parents[1].is_symlink())
    assert len(originals) == len(graded.notebooks)
    for path in originals:
        student, assignment = path.parts[-3], path.parts[-2]
        kept = graded.course / "submitted" / student / assignment / path.name
        assert kept.read_bytes() == path.read_bytes(), f"{student}/{assignment} changed"


# ---------------------------------------------------------------- feedback and export
@pytest.fixture(scope="module")
def feedback_and_csv(graded):
    graded.run("feedback", "masking", "--student", "wrong-masking-0")
    graded.run("feedback", "lora", "--student", "hostile-output")
    csv_path = graded.course / "grades.csv"
    graded.run("export", "--csv", str(csv_path))
    return graded.course / "feedback", csv_path


def test_feedback_shows_verdicts_but_not_hidden_tests(graded, feedback_and_csv):
    feedback, _ = feedback_and_csv
    html = (feedback / "wrong-masking-0" / "masking" / "masking.html").read_text()
    assert "HiddenTestFailure" in html and "80/10/10" in html
    assert "lfd13_probe" not in html and "BEGIN HIDDEN TESTS" not in html


def test_feedback_holds_no_script_or_event_handler(graded, feedback_and_csv):
    from conftest import TOKEN

    feedback, _ = feedback_and_csv
    html = (feedback / "hostile-output" / "lora" / "lora.html").read_text()
    lower = html.lower()
    assert "<script" not in lower, "a script element"  # (student code shows escaped, as text)
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", lower), "an event-handler attribute"
    assert not re.search(r"(href|src|action)\s*=\s*[\"']?\s*javascript:", lower), "a javascript: URL"
    assert f"flood-{TOKEN}" in html and len(html) < 5 << 20  # the output is there, capped


def test_export_lists_every_collected_submission_with_its_status(graded, feedback_and_csv):
    import csv

    _, csv_path = feedback_and_csv
    rows = list(csv.DictReader(csv_path.open()))
    by = {(r["student"], r["assignment"]): r for r in rows}
    assert sorted(by) == sorted(graded.notebooks)
    assert float(by[("solution-lora", "lora")]["score"]) == 10
    assert float(by[("blank-lora", "lora")]["score"]) == 0
    corrupt = by[("hostile-corrupt", "contrastive")]
    assert corrupt["status"].startswith("failed") and float(corrupt["score"]) == 0, corrupt
    others = {k: r["status"] for k, r in by.items() if k[0] != "hostile-corrupt" and r["status"] != "graded"}
    assert others == {}


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
