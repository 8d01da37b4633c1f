"""The hidden checks on their own, in this process, in seconds: every check passes the solutions and the
reference libraries, fails every wrong variant where it should, and no kernel-side call needs more than
the probe's helpers. (``test_assignments_grading.py`` proves the same end to end, in the sandbox.)"""
from __future__ import annotations

import dis
import sys
from pathlib import Path

import nbformat
import pytest

import assignment_variants as variants

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "assignments" / "grading"))

import checks  # noqa: E402
import judge  # noqa: E402
import lfd13_probe  # noqa: E402
import wire  # noqa: E402

SEEDS = (1, 2**40 + 17)  # two secrets: different sizes, architectures and values


def notebook_cells(assignment: str) -> list[tuple[str, str]]:
    """(grade_id, code) of the setup and answer cells of the source notebook, solutions unmarked."""
    nb = nbformat.read(ROOT / "assignments" / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            lines = [ln for ln in cell.source.splitlines() if ln.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
            out.append((meta["grade_id"], "\n".join(lines)))
    return out


def namespace(assignment: str, answers: dict[str, str] | None = None, append: dict[str, str] | None = None) -> dict:
    ns: dict = {"__name__": "__main__"}
    for gid, code in notebook_cells(assignment):
        code = (answers or {}).get(gid, code) + "\n\n" + (append or {}).get(gid, "")
        exec(compile(code, f"<{gid}>", "exec"), ns)  # noqa: S102 - the course's own answers
    return ns


def grade(assignment: str, ns: dict, seed: int) -> dict[str, judge.Verdict]:
    """grade_id -> verdict, through the same wire format and runner as in the sandbox."""
    verdicts = {}
    for check in checks.ASSIGNMENTS[assignment]:
        task = wire.loads(wire.dumps(judge.task(check.grade_id, seed)))
        record = wire.loads(wire.dumps(lfd13_probe.run(task, ns)))
        verdicts[check.grade_id] = judge.judge(check.grade_id, record, seed)
    return verdicts


def failed(verdicts: dict[str, judge.Verdict]) -> dict[str, str]:
    return {g: v.message for g, v in verdicts.items() if not v.passed}


ASSIGNMENTS = tuple(checks.ASSIGNMENTS)


def test_every_graded_cell_has_one_check_in_its_assignment_file():
    for assignment in ASSIGNMENTS:
        nb = nbformat.read(ROOT / "assignments" / "source" / assignment / f"{assignment}.ipynb", as_version=4)
        graded = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                  if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
        assert graded == [c.grade_id for c in checks.ASSIGNMENTS[assignment]]


def _global_names(code) -> set[str]:
    """Names a code object (and the functions and lambdas inside it) looks up as globals."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _global_names(const)
    return names


def test_the_kernel_gets_no_seed_and_no_grader_code():
    seed = 987654321987
    for gid, check in checks.CHECKS.items():
        task = judge.task(gid, seed)
        assert set(task) == {"entry", "source", "inputs"}
        assert str(seed).encode() not in wire.dumps(task), gid
        # the call uses nothing of its module but the probe's helpers (the kernel has nothing else)
        module_globals = set(check.call.__globals__)
        free = {n for n in _global_names(check.call.__code__) if n in module_globals}
        assert free <= set(lfd13_probe.HELPERS), f"{gid}: the call uses {free - set(lfd13_probe.HELPERS)}"


def test_inputs_vary_with_the_secret_and_are_reproducible():
    for gid, check in checks.CHECKS.items():
        a, b, again = (wire.dumps(check.inputs(s)) for s in (SEEDS[0], SEEDS[1], SEEDS[0]))
        assert a == again, gid
        assert a != b, gid


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_solution_passes(assignment, seed):
    assert failed(grade(assignment, namespace(assignment), seed)) == {}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_blank_release_fails_everything(assignment):
    blank = {gid: "pass" for gid, _ in notebook_cells(assignment) if gid != "setup"}
    verdicts = grade(assignment, namespace(assignment, answers=blank), SEEDS[0])
    assert all(not v.passed for v in verdicts.values()), verdicts


CORRECT = [(a, name, answers) for a in ASSIGNMENTS for name, answers in variants.CORRECT[a]]


@pytest.mark.parametrize("assignment,name,answers", CORRECT, ids=[f"{a}-{n}" for a, n, _ in CORRECT])
def test_correct_alternative_passes(assignment, name, answers):
    for seed in SEEDS:
        assert failed(grade(assignment, namespace(assignment, answers=answers), seed)) == {}


@pytest.fixture(autouse=True)
def restore_probe():
    """Some variants patch the probe, as they would in their own kernel: undo it after each test."""
    run = lfd13_probe.run
    yield
    lfd13_probe.run = run


WRONG = [(f, name, code) for f, vs in variants.WRONG.items() for name, code in vs]


@pytest.mark.parametrize("function,name,code", WRONG, ids=[f"{f}-{n}" for f, n, _ in WRONG])
def test_wrong_variant_loses_marks(function, name, code):
    assignment = variants.ASSIGNMENT_OF[function]
    cell, targets = variants.FUNCTIONS[function]
    verdicts = grade(assignment, namespace(assignment, append={cell: code}), SEEDS[0])
    if name.startswith("delegates") and function != "LoRALinear":
        # here the reference libraries exist, so they must pass (peft's bare layer does not freeze its base)
        assert not set(failed(verdicts)) & set(targets), failed(verdicts)
        return
    assert set(failed(verdicts)) & set(targets), f"{function} variant {name!r} kept full marks"


@pytest.mark.parametrize("student", list(variants.CHEATS))
def test_cheap_non_implementation_earns_only_what_it_computes(student):
    functions, cells = variants.CHEATS[student]
    assignment = variants.ASSIGNMENT_OF[next(iter(functions))]
    append: dict[str, str] = {}
    for function, (_, code) in functions.items():
        cell = variants.FUNCTIONS[function][0]
        append[cell] = append.get(cell, "") + "\n\n" + code
    for seed in SEEDS:
        verdicts = grade(assignment, namespace(assignment, append=append), seed)  # through the probe as the code left it
        assert set(failed(verdicts)) == set(cells), failed(verdicts)


def test_messages_name_the_property_not_the_reference():
    ns = namespace("contrastive", append={"answer_clip_loss": dict(variants.WRONG["clip_loss"])["no_normalisation"],
                                          "answer_retrieval": dict(variants.WRONG["recall_at_k"])["dot_product"]})
    verdicts = grade("contrastive", ns, SEEDS[0])
    inputs = checks.CHECKS["clip_loss_value"].inputs(SEEDS[0])
    reference = checks.contrastive.clip_reference(inputs["cases"][0])[0].item()
    message = verdicts["clip_loss_value"].message
    assert "cosine similarities" in message and f"{reference:.3f}"[:5] not in message, message
    assert "expected" not in verdicts["recall_at_k"].message, verdicts["recall_at_k"].message
    ns = namespace("lora", append={"answer_inject_lora": dict(variants.WRONG["count_parameters"])["counts_buffers"]})
    message = grade("lora", ns, SEEDS[0])["count_parameters"].message
    assert "count is wrong" in message and not any(ch.isdigit() for ch in message.split(":", 2)[-1]), message


def test_the_kernel_side_needs_only_the_probe_and_wire(tmp_path):
    """A kernel with lfd13_probe.py and wire.py alone runs every task (no cases, checks or judge)."""
    import shutil
    import subprocess

    for name in ("lfd13_probe.py", "wire.py"):
        shutil.copy(ROOT / "assignments" / "grading" / name, tmp_path / name)
    for gid in checks.CHECKS:
        wire.dump(judge.task(gid, SEEDS[0]), str(tmp_path / f"task-{gid}"))
    script = (
        "import sys, os, wire, lfd13_probe\n"
        "sys.modules.pop('checks', None)\n"
        "for name in sorted(os.listdir('.')):\n"
        "    if name.startswith('task-'):\n"
        "        out = lfd13_probe.run(wire.load(name), {})\n"
        "        assert 'NameError' in out.get('fatal', ''), (name, out)\n"  # the student's function is missing
        "        assert 'is not defined: run the cell' in out['fatal'], out\n"
        "print('ok', 'checks' in sys.modules, 'judge' in sys.modules, 'cases' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, '.');" + script],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "ok False False False", proc.stdout + proc.stderr
