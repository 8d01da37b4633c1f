"""The chapter check (``chapter_outputs``): numbers within their noise, words exactly.

These tests perturb the committed outputs of real chapters the way a regression would — a
number moved beyond its tolerance, a verdict flipped, a ranking reordered — and check that the
comparison fails; and move numbers within their tolerance, as a second CPU does, and check
that it passes.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import chapter_outputs as co

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.ipynb"))


def load(stem: str) -> dict:
    return json.loads((ROOT / "book" / f"{stem}.ipynb").read_text())


def glue_output(nb: dict, name: str) -> dict:
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                return out
    raise KeyError(name)


def set_glue(nb: dict, name: str, text: str) -> dict:
    nb = copy.deepcopy(nb)
    data = glue_output(nb, name)["data"]
    data["application/papermill.record/text/plain"] = text
    return nb


def glued(nb: dict, name: str) -> str:
    value = glue_output(nb, name)["data"]["application/papermill.record/text/plain"]
    return value if isinstance(value, str) else "".join(value)


def replace_in_streams(nb: dict, old: str, new: str) -> dict:
    nb = copy.deepcopy(nb)
    hits = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                text = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
                if old in text:
                    out["text"] = text.replace(old, new)
                    hits += 1
    assert hits, f"{old!r} is in no stream output"
    return nb


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_committed_chapter_matches_itself(path):
    nb = json.loads(path.read_text())
    assert co.compare_notebooks(nb, copy.deepcopy(nb), chapter=path.stem) == []


# --- numbers: within the rule passes, beyond it fails --------------------------------------

@pytest.mark.parametrize(("glue", "within", "beyond"), [
    ("ch1_pixels", "0.889", "0.900"),  # an accuracy: ±0.01
    ("ch1_nmi_trained", "0.580", "0.590"),  # NMI, a fraction: ±0.01
])
def test_a_fraction_may_move_by_a_point_and_no_more(glue, within, beyond):
    nb = load("01_pretext_tasks")
    assert co.compare_notebooks(nb, set_glue(nb, glue, within)) == []
    diffs = co.compare_notebooks(nb, set_glue(nb, glue, beyond))
    assert len(diffs) == 1 and f"became {beyond}" in diffs[0].what and "fraction" in diffs[0].what


def replace_in_tables(nb: dict, old: str, new: str) -> dict:
    """``old`` -> ``new`` in the plain-text form of the tables a page displays (execute_result text/plain)."""
    nb = copy.deepcopy(nb)
    hits = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out["output_type"] == "execute_result" and "text/plain" in out.get("data", {}):
                text = "".join(out["data"]["text/plain"]) if isinstance(out["data"]["text/plain"], list) else out["data"]["text/plain"]
                if old in text:
                    out["data"]["text/plain"] = text.replace(old, new)
                    hits += 1
    assert hits, f"{old!r} is in no table"
    return nb


def test_a_difference_in_points_and_its_interval_may_move_by_one_point():
    nb = load("01_pretext_tasks")  # a row of the table 'probe − CNN, 10 labels per class   +3.1   +0.0 to +6.1 ...'
    text = next("".join(o["data"]["text/plain"]) for c in nb["cells"] for o in c.get("outputs", [])
                if o["output_type"] == "execute_result" and "probe − CNN, 10 labels per class" in "".join(o["data"].get("text/plain", "")))
    row = re.search(r"probe − CNN, 10 labels per class\s+([+-]\d+\.\d)\s+([+-]\d+\.\d) to ([+-]\d+\.\d)", text)
    diff, _, high = (float(g) for g in row.groups())
    moved = row.group(0).replace(row.group(1), f"{diff + 0.8:+.1f}", 1).replace(
        f"to {row.group(3)}", f"to {high + 0.8:+.1f}")
    assert co.compare_notebooks(nb, replace_in_tables(nb, row.group(0), moved)) == []
    too_far = row.group(0).replace(f"to {row.group(3)}", f"to {high + 1.2:+.1f}")
    diffs = co.compare_notebooks(nb, replace_in_tables(nb, row.group(0), too_far))
    assert len(diffs) == 1 and "percentage points" in diffs[0].what


def test_a_bare_glued_number_takes_its_kind_from_the_prose():
    nb = load("02_bert")  # "{glue:text}`bert_nsp_cls:.1f` %": percentage points, not a relative tolerance
    assert co.glue_rules(nb)["bert_nsp_cls"] is co.POINTS
    value = float(glued(nb, "bert_nsp_cls"))
    assert co.compare_notebooks(nb, set_glue(nb, "bert_nsp_cls", f"{value + 0.9:.1f}")) == []
    assert co.compare_notebooks(nb, set_glue(nb, "bert_nsp_cls", f"{value + 1.2:.1f}"))


def test_a_number_printed_with_its_spread_moves_no_further_than_the_spread():
    nb = load("01_pretext_tasks")  # "clustering      NMI 0.573 ± 0.008": the fraction rule (0.01) is capped at 0.008
    assert co.compare_notebooks(nb, replace_in_streams(nb, "NMI 0.573 ± 0.008", "NMI 0.580 ± 0.008")) == []
    diffs = co.compare_notebooks(nb, replace_in_streams(nb, "NMI 0.573 ± 0.008", "NMI 0.582 ± 0.008"))
    assert len(diffs) == 1 and "±0.008" in diffs[0].what


def test_integers_and_chosen_settings_are_exact():
    nb = load("01_pretext_tasks")
    assert co.compare_notebooks(nb, set_glue(nb, "ch1_n_test", "541"))  # a count
    assert co.compare_notebooks(nb, set_glue(nb, "ch1_ft_steps_rnd", "'100, 40, 60'"))  # chosen steps


def test_a_floating_point_error_keeps_its_order_of_magnitude():
    assert co.compare_text("max |diff| = 3.9e-07", "max |diff| = 4.8e-07") == []
    assert co.compare_text("max |diff| = 3.9e-07", "max |diff| = 6.1e-05")
    assert co.compare_text("max |diff| = 3.9e-07", "max |diff| = -3.9e-07")


def test_relative_numbers_may_move_by_two_percent():
    assert co.compare_text("final loss 1.611", "final loss 1.640") == []
    assert co.compare_text("final loss 1.611", "final loss 1.650")


# --- words: any change fails ---------------------------------------------------------------

def test_a_flipped_verdict_fails():
    nb = load("01_pretext_tasks")
    text = glued(nb, "ch1_best_vs_pixels")  # "'above'", a verdict word
    flipped = text.replace("above", "level with") if "above" in text else text.replace(text.strip("'"), "above")
    diffs = co.compare_notebooks(nb, set_glue(nb, "ch1_best_vs_pixels", flipped))
    assert len(diffs) == 1 and "words differ" in diffs[0].what


def test_a_reordered_ranking_fails_even_with_the_same_numbers():
    nb = load("01_pretext_tasks")
    text = glued(nb, "ch1_ranking")  # "'contrastive, masked, rotation, clustering'"
    first, second = text.strip("'").split(", ")[:2]
    swapped = text.replace(first, "@").replace(second, first).replace("@", second)
    assert co.compare_notebooks(nb, set_glue(nb, "ch1_ranking", swapped))


def test_a_sign_flip_is_a_number_but_a_verdict_word_is_not():
    assert co.compare_text("-0.3 points", "+0.2 points") == []  # within a point, across zero
    assert co.compare_text("below (-0.3 points)", "level with (+0.2 points)")


def test_a_new_or_missing_output_fails():
    nb = load("01_pretext_tasks")
    fewer = copy.deepcopy(nb)
    code = [c for c in fewer["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    code[-1]["outputs"] = []
    assert co.compare_notebooks(nb, fewer)


# --- what is not compared, and the exceptions ------------------------------------------------

def test_wall_clock_times_are_not_compared():
    assert co.compare_text("trained in 12.3 s", "trained in 40.1 s") == []
    assert co.compare_text("one step 812 ms", "one step 95 ms") == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_only_timing_cells_are_left_uncompared(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if co.IGNORE_TAG in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            assert re.search(r"seconds|perf_counter", source), f"{path.name}: an uncompared cell that is not a timing:\n{source[:300]}"


def test_every_exception_takes_its_tolerance_from_a_spread_its_page_prints():
    nb = load("04_clip")
    streams = "".join("".join(o["text"]) for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "stream")
    held_out_sd = float(re.search(r"held-out \d\.\d+ ± (\d\.\d+)", streams).group(1))
    pairs_sd = float(re.search(r"diagonal \d\.\d+ ± (\d\.\d+)", streams).group(1))
    assert {w.chapter for w in co.WIDER} == {"04_clip", "06_peft"}, "a new exception needs its spread checked here"
    tolerances = sorted(rule.absolute for _, rule in co.page_exceptions(nb, "04_clip"))
    assert tolerances == sorted([held_out_sd, 100 * held_out_sd, pairs_sd])
    lo, hi = map(float, re.search(r"minus live model: [^\n]*CI ([+-][\d.]+) to ([+-][\d.]+)", streams).groups())
    line = re.search(r"minus live model: [^\n]*", streams).group(0)
    assert set(co.interval_spreads(line).values()) == {(hi - lo) / 2}  # the difference moves at most half its interval

    peft = load("06_peft")
    se_points = float(glued(peft, "peft_se_points"))  # the standard error of one run's test accuracy, in points
    assert [rule.absolute for _, rule in co.page_exceptions(peft, "06_peft")] == [se_points / 100]


def test_an_estimate_and_its_interval_move_at_most_half_the_interval():
    narrow = "-1.8 points (95 % CI -2.2 to -1.3, 3 paired runs)"  # half-width 0.45 < the points rule's 1.0
    assert co.compare_text(narrow, "-1.5 points (95 % CI -1.9 to -1.0, 3 paired runs)") == []
    diffs = co.compare_text(narrow, "-1.1 points (95 % CI -1.5 to -0.6, 3 paired runs)")
    assert len(diffs) == 3 and all("±0.45" in d.what for d in diffs)


def test_an_exception_whose_spread_left_the_page_fails_loudly():
    nb = replace_in_streams(load("04_clip"), "mean ± sd: seen", "mean and sd: seen")
    with pytest.raises(LookupError, match="WIDER"):
        co.compare_notebooks(nb, nb, chapter="04_clip")


def test_the_clip_exception_covers_only_the_live_model():
    nb = load("04_clip")
    streams = "".join("".join(o["text"]) for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "stream")
    sd = float(re.search(r"held-out \d\.\d+ ± (\d\.\d+)", streams).group(1))  # the long runs' spread over seeds
    live = float(glued(nb, "clip_live_heldout"))
    assert co.compare_notebooks(nb, set_glue(nb, "clip_live_heldout", f"{live + 0.8 * sd:.3f}"), chapter="04_clip") == []
    assert co.compare_notebooks(nb, set_glue(nb, "clip_live_heldout", f"{live + 1.2 * sd:.3f}"), chapter="04_clip")
    assert co.compare_notebooks(nb, set_glue(nb, "clip_live_seen", f"{float(glued(nb, 'clip_live_seen')) + 0.02:.3f}"),
                                chapter="04_clip")  # the live model's seen accuracy keeps the fraction rule
    seen = float(glued(nb, "clip_zeroshot_heldout"))  # a checkpoint's mean, computed once: the fraction rule
    assert co.compare_notebooks(nb, set_glue(nb, "clip_zeroshot_heldout", f"{seen + 0.025:.3f}"), chapter="04_clip")


# --- the second numerical path -----------------------------------------------------------------

@pytest.mark.parametrize(("machine", "capability", "expected"), [
    ("x86_64", "AVX512", "ATEN_CPU_CAPABILITY=avx2"),
    ("x86_64", "AVX2", "ATEN_CPU_CAPABILITY=default"),
    ("arm64", "DEFAULT", "ATEN_CPU_CAPABILITY=default"),
])
def test_the_second_path_is_below_this_cpus_own(monkeypatch, machine, capability, expected):
    import torch

    monkeypatch.setattr(co.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    env = co.second_path_env()
    assert expected in [f"{k}={v}" for k, v in env.items()]
    if capability == "AVX512":
        assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
        assert env["OPENBLAS_CORETYPE"] == "Haswell"


def test_the_second_path_changes_numpys_openblas_kernels():
    env = co.second_path_env()
    if "OPENBLAS_CORETYPE" not in env:
        pytest.skip("no OpenBLAS setting on this CPU's second path")
    import numpy as np

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    if "openblas" not in blas.lower():
        pytest.skip(f"this NumPy links {blas}, not OpenBLAS: OPENBLAS_CORETYPE does not reach it")
    probe = "import numpy as np; a = np.ones((8, 8)); a @ a"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, **env, "OPENBLAS_VERBOSE": "2"})
    assert f"Core: {env['OPENBLAS_CORETYPE']}" in run.stdout + run.stderr


def test_the_second_path_changes_what_pytorch_runs():
    env = co.second_path_env()
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    here = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    there = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, **env}).stdout.strip()
    if here not in ("DEFAULT",):
        assert there != here, f"{env} left PyTorch on {here}"


# --- end to end: the pytest item executes a notebook and fails on a regression -----------------

def test_the_chapter_check_executes_and_catches_a_moved_number(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('print("accuracy 0.750, verdict: above")')])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.754, verdict: above\n")]
    assert co.execute_and_compare(nb, cwd=tmp_path) == []  # 0.754 -> 0.750: within noise
    nb.cells[0].outputs[0]["text"] = "accuracy 0.770, verdict: above\n"
    assert "became 0.750" in str(co.execute_and_compare(nb, cwd=tmp_path))
    nb.cells[0].outputs[0]["text"] = "accuracy 0.750, verdict: level with\n"
    assert "words differ" in str(co.execute_and_compare(nb, cwd=tmp_path))


def test_a_table_compares_whatever_order_the_kernel_sends_its_types_in(tmp_path):
    source = ('class Table:\n    def _repr_html_(self): return "<td>0.750</td>"\n    def __repr__(self): return "0.750"\n'
              'Table()')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", data={"text/html": "<td>0.752</td>", "text/plain": "0.752"},
                                                  execution_count=1)]
    assert co.execute_and_compare(nb, cwd=tmp_path) == []


def test_a_comparison_tables_interval_bounds_are_points():
    committed = "bottom 2 − full    +0.6    -6.5 to +7.8  1 each   level with"
    assert co.compare_text(committed, "bottom 2 − full    +0.9    -6.1 to +8.3  1 each   level with") == []
    assert co.compare_text(committed, "bottom 2 − full    +0.6    -8.0 to +7.8  1 each   level with") != []


def test_a_comparison_tables_negative_interval_is_in_points_too():
    header = "                   difference (points)  95 % interval     verdict\n"
    committed = header + "clustering (conv)                 -5.0   -8.6 to -1.3       below"
    moved = header + "clustering (conv)                 -5.1   -9.1 to -1.1       below"  # the second path's move
    assert co.compare_text(committed, moved) == []
    assert co.compare_text(committed, moved.replace("-5.1", "-5.9")) == []  # the difference too: a point
    assert "percentage points" in str(co.compare_text(committed, moved.replace("-5.1", "-6.1")))
    too_far = header + "clustering (conv)                 -5.0   -9.9 to -1.3       below"
    assert "percentage points" in str(co.compare_text(committed, too_far))
    # without the table's header, the same pair is a real number: 2 % of 8.6
    assert co.compare_text("range -8.6 to -1.3", "range -9.1 to -1.1") != []


def test_a_column_padded_to_a_shorter_number_is_the_same_words():
    committed = "[CLS] of the pair, linear head    0.533  0.478 to 0.587           level with"
    shifted = "[CLS] of the pair, linear head     0.53  0.475 to 0.584           level with"
    assert co.compare_text(committed, shifted) == []
    assert "words differ" in str(co.compare_text(committed, shifted.replace("level with", "above")))
    assert "words differ" in str(co.compare_text("a b", "a\nb"))  # a line break is not padding
