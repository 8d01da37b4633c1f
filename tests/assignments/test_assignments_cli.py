"""Fast tests of the instructor CLI's bookkeeping (no nbgrader run)."""
from __future__ import annotations

import importlib.util
import os
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def course_cli():
    spec = importlib.util.spec_from_file_location("lfd13_course_cli", ROOT / "assignments" / "course.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_collect_never_overwrites_and_never_touches_the_source(course_cli, tmp_path, capsys):
    course, inbox = tmp_path / "course", tmp_path / "inbox"
    course.mkdir()
    first = write(inbox / "ada" / "masking" / "masking.ipynb", '{"v": 1}')
    write(inbox / "bob" / "lora.ipynb", '{"v": "bob"}')            # flat layout
    write(inbox / "../evil" / "masking.ipynb", "{}")                 # outside the inbox: ignored
    write(inbox / "bad id!" / "masking.ipynb", "{}")                 # unsafe student id
    rows = course_cli.collect(course, inbox)
    assert ("ada", "masking", "new") in rows and ("bob", "lora", "new") in rows
    assert ("bad id!", "-", "skipped: unsafe student id") in rows
    assert (course / "submitted" / "ada" / "masking" / "masking.ipynb").read_text() == '{"v": 1}'
    assert (course / "submitted" / "bob" / "lora" / "lora.ipynb").exists()

    assert ("ada", "masking", "unchanged") in course_cli.collect(course, inbox)
    first.write_text('{"v": 2}')
    rows = course_cli.collect(course, inbox)
    assert any(r[:2] == ("ada", "masking") and r[2].startswith("updated") for r in rows)
    assert (course / "submitted" / "ada" / "masking" / "masking.ipynb").read_text() == '{"v": 2}'
    archived = list((course / "submitted_archive" / "ada" / "masking").glob("*/masking.ipynb"))
    assert [p.read_text() for p in archived] == ['{"v": 1}']
    assert first.read_text() == '{"v": 2}'  # the inbox is only read
    assert oct((course / "submitted").stat().st_mode & 0o777) == oct(0o700)


def test_merge_gradebook_copies_only_the_graded_assignment(course_cli, tmp_path):
    schema = """
    CREATE TABLE student (id TEXT PRIMARY KEY, first_name, last_name, email, lms_user_id);
    CREATE TABLE assignment (id TEXT PRIMARY KEY, name TEXT UNIQUE, duedate, course_id);
    CREATE TABLE submitted_assignment (id TEXT PRIMARY KEY, assignment_id, student_id, timestamp, extension);
    CREATE TABLE submitted_notebook (id TEXT PRIMARY KEY, assignment_id, notebook_id, flagged, late_submission_penalty);
    CREATE TABLE grade (id TEXT PRIMARY KEY, notebook_id, cell_id, auto_score, manual_score, extra_credit, needs_manual_grade);
    CREATE TABLE comment (id TEXT PRIMARY KEY, notebook_id, cell_id, auto_comment, manual_comment);
    INSERT INTO assignment VALUES ('A1', 'masking', NULL, 'lfd13'), ('A2', 'lora', NULL, 'lfd13');
    """
    main, copy = tmp_path / "main.db", tmp_path / "copy.db"
    for path in (main, copy):
        db = sqlite3.connect(path)
        db.executescript(schema)
        db.commit()
        db.close()
    db = sqlite3.connect(copy)
    db.executescript("""
    INSERT INTO student VALUES ('ada', NULL, NULL, NULL, NULL);
    INSERT INTO submitted_assignment VALUES ('S1', 'A1', 'ada', NULL, NULL), ('S2', 'A2', 'ada', NULL, NULL);
    INSERT INTO submitted_notebook VALUES ('N1', 'S1', 'nb', 0, 0), ('N2', 'S2', 'nb', 0, 0);
    INSERT INTO grade VALUES ('G1', 'N1', 'c', 3.0, NULL, NULL, 0), ('G2', 'N2', 'c', 9.0, NULL, NULL, 0);
    """)
    db.commit()
    db.close()
    course_cli.merge_gradebook(main, copy, "masking")
    db = sqlite3.connect(main)
    assert db.execute("SELECT id, auto_score FROM grade").fetchall() == [("G1", 3.0)]
    assert db.execute("SELECT id FROM submitted_assignment").fetchall() == [("S1",)]
    assert db.execute("SELECT id FROM student").fetchall() == [("ada",)]


@pytest.mark.parametrize("name", ["masking", "contrastive", "lora"])
def test_book_downloads_hold_no_solution_or_hidden_test(name):
    text = (ROOT / "book" / "_static" / "assignments" / f"{name}.ipynb").read_text()
    for secret in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "lfd13_probe", "torch.bernoulli(probs",
                   "F.cross_entropy(logits, targets) + F.cross_entropy(logits.T"):
        assert secret not in text
    assert "raise NotImplementedError()" in text


def test_collect_takes_regular_files_only_and_caps_their_size(course_cli, tmp_path, capsys):
    course, inbox = tmp_path / "course", tmp_path / "inbox"
    course.mkdir()
    secret = write(tmp_path / "source" / "masking.ipynb", '{"solution": true}')
    (inbox / "eve" / "masking").mkdir(parents=True)
    (inbox / "eve" / "masking" / "masking.ipynb").symlink_to(secret)          # a linked file
    (inbox / "mallory").symlink_to(secret.parent)                             # a linked student folder
    (inbox / "trent").mkdir()
    (inbox / "trent" / "lora").symlink_to(secret.parent, target_is_directory=True)  # a linked assignment folder
    big = write(inbox / "oscar" / "contrastive" / "contrastive.ipynb", "")
    with open(big, "wb") as f:
        f.truncate(course_cli.MAX_SUBMISSION + 1)
    write(inbox / "ada" / "masking" / "masking.ipynb", '{"v": 1}')
    rows = course_cli.collect(course, inbox)
    assert ("eve", "masking", "skipped: a symbolic link") in rows
    assert ("mallory", "-", "skipped: a symbolic link") in rows
    assert ("trent", "lora", "skipped: a symbolic link") in rows
    assert ("oscar", "contrastive", f"skipped: larger than {course_cli.MAX_SUBMISSION >> 20} MB") in rows
    assert ("ada", "masking", "new") in rows
    assert sorted(str(p.relative_to(course / "submitted")) for p in (course / "submitted").glob("*/*")) == ["ada/masking"]
    assert "skipped: a symbolic link" in capsys.readouterr().out


def test_logs_and_feedback_are_cleaned(course_cli):
    log = course_cli.clean_log("ok \x1b[2J\x1b]0;title\x07line\r\nnext\x00" + "x" * 5000)
    assert "\x1b" not in log and "\x00" not in log and "\r" not in log and "ok line" in log
    assert max(len(line) for line in log.splitlines()) <= 2000
    html = course_cli.sanitize_html('<p onclick="x()">a</p><script>alert(1)</script><a href="javascript:y()">b</a>'
                                    '<SCRIPT src="//evil"></SCRIPT><img src=x onerror=alert(2)>')
    lower = html.lower()
    assert "<script" not in lower and "onclick" not in lower and "onerror" not in lower and "javascript:" not in lower
    assert "<p>a</p>" in html
