"""Fast tests of the instructor CLI's bookkeeping (no nbgrader run)."""
from __future__ import annotations

import importlib.util
import os
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


def _gradebook(path: Path):
    """A gradebook made by nbgrader's API: assignments masking and lora, one notebook and grade cell each."""
    from nbgrader.api import Gradebook

    gb = Gradebook(f"sqlite:///{path}", "lfd13")
    for name in ("masking", "lora"):
        gb.add_assignment(name)
        gb.add_notebook(name, name)
        gb.add_grade_cell("c", name, name, max_score=10, cell_type="code")
        gb.add_solution_cell("s", name, name)
        gb.add_source_cell("c", name, name, cell_type="code", source="", checksum="x")
    return gb


def test_merge_gradebook_copies_only_the_graded_assignment(course_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))  # alembic
    main, copy = tmp_path / "main.db", tmp_path / "copy.db"
    _gradebook(main).close()
    gb = _gradebook(copy)
    gb.add_student("ada")
    gb.add_student("bob")
    for student, name, score in (("ada", "masking", 3.0), ("ada", "lora", 9.0), ("bob", "masking", 7.0)):
        gb.add_submission(name, student)
        grade = gb.find_grade("c", name, name, student)
        grade.auto_score = score
        gb.find_comment("s", name, name, student).auto_comment = f"{student} {name}"
    gb.db.commit()
    gb.close()
    course_cli.merge_gradebook(main, copy, "masking", ["ada"])
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{main}", "lfd13") as gb:
        assert gb.find_submission("masking", "ada").score == 3.0
        assert gb.find_comment("s", "masking", "masking", "ada").auto_comment == "ada masking"
        for name, student in (("lora", "ada"), ("masking", "bob")):
            with pytest.raises(MissingEntry):
                gb.find_submission(name, student)
    # graded again: the new grade replaces the old one
    with Gradebook(f"sqlite:///{copy}", "lfd13") as gb:
        gb.find_grade("c", "masking", "masking", "ada").auto_score = 5.0
        gb.db.commit()
    course_cli.merge_gradebook(main, copy, "masking")
    with Gradebook(f"sqlite:///{main}", "lfd13") as gb:
        assert gb.find_submission("masking", "ada").score == 5.0
        assert gb.find_submission("masking", "bob").score == 7.0
    assert "INSERT" not in (ROOT / "assignments" / "course.py").read_text()  # nbgrader's API, not its tables


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
                                    '<SCRIPT src="//evil"></SCRIPT><img src=x onerror=alert(2)>'
                                    '<iframe srcdoc="&lt;script&gt;alert(3)&lt;/script&gt;"></iframe>'
                                    '<style>h4 { display: none }</style><div style="position: fixed">Score: 10</div>'
                                    '<object data=x></object><embed src=x><meta http-equiv=refresh content=0>'
                                    '<base href=//evil/><svg onload=alert(4)></svg><form action=x><input></form>'
                                    '<img src="data:image/png;base64,iVBORw0KGgo=">')
    body = html.lower().split("<body>", 1)[1]
    for banned in ("<script", "onclick", "onerror", "onload", "javascript:", "<iframe", "srcdoc", "<style", "style=",
                   "<object", "<embed", "<meta", "<base", "<svg", "<form", "<input"):
        assert banned not in body, banned
    assert "<p>a</p>" in html and "Score: 10" in html and 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert html.lower().count("<style") == 1  # the grader's own stylesheet
