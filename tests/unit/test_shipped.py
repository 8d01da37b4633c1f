"""The one checkpoint mechanism (:mod:`lfd13.shipped`) and every file that ships with the package.

Every model module saves and loads through :func:`~lfd13.shipped.save_model` /
:func:`~lfd13.shipped.load_model`, and every experiment writes its result through
:func:`~lfd13.shipped.save_result`; so the format, the hash checks and the errors are tested
here once, and every shipped file is loaded once, by the recreate row that writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lfd13 import recreate, shipped
from lfd13.experiments import Entry


def _build(info: shipped.CheckpointInfo, folder: Path) -> nn.Module:
    return nn.Linear(info.config["inputs"], info.config["outputs"])


def _save(tmp_path: Path, seed: int = 0, **kw) -> tuple[nn.Linear, shipped.CheckpointInfo]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    info = shipped.save_model("lin", model, kind="linear", command="make it", config={"inputs": 3, "outputs": 2},
                              recipe={"steps": 1}, result={"loss": 0.5}, directory=tmp_path, **kw)
    return model, info


def test_a_model_round_trips_with_its_sidecar(tmp_path):
    model, info = _save(tmp_path, extra_files={"vocab.txt": "a\nb\n"})
    loaded, again = shipped.load_model("lin", kind="linear", build=_build, directory=tmp_path)
    assert again == info and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sidecar = json.loads((tmp_path / "lin.json").read_text())
    assert sidecar["format"] == shipped.FORMAT and sidecar["command"] == "make it"
    assert set(sidecar["files"]) == {"lin.safetensors", "lin.vocab.txt"}
    assert sidecar["files"]["lin.safetensors"] == shipped.sha256_file(tmp_path / "lin.safetensors")
    assert shipped.extra_file(info, "vocab.txt", "lin", tmp_path).read_text() == "a\nb\n"
    # a path to either file works as well as the name
    assert shipped.load_model(tmp_path / "lin.safetensors", kind="linear", build=_build)[1] == info


@pytest.mark.parametrize("changed", ["lin.safetensors", "lin.vocab.txt"])
def test_a_changed_file_is_refused_before_loading(tmp_path, changed):
    _save(tmp_path, extra_files={"vocab.txt": "a\n"})
    with open(tmp_path / changed, "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="sha256 of .* expected .*re-create it with `make it`"):
        shipped.load_model("lin", kind="linear", build=_build, directory=tmp_path)


def test_wrong_kind_missing_file_and_misfit_weights_say_what_to_do(tmp_path):
    _save(tmp_path)
    with pytest.raises(ValueError, match="'lin' is a 'linear' checkpoint, not a 'mae' one"):
        shipped.load_model("lin", kind="mae", build=_build, directory=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint 'nope' .*checkpoints there: \['lin'\].*recreate --list"):
        shipped.load_model("nope", kind="linear", build=_build, directory=tmp_path)
    with pytest.raises(RuntimeError, match="(?s)do not fit the model built from its config.*`make it`"):
        shipped.load_model("lin", kind="linear", build=lambda info, folder: nn.Linear(4, 2), directory=tmp_path)
    with pytest.raises(ValueError, match="neither a checkpoint name nor a path"):
        shipped.load_model("some/dir", kind="linear", build=_build)


def test_convert_is_applied_before_loading(tmp_path):
    model = nn.Linear(3, 2).half()
    shipped.save_model("half", model, kind="linear", command="c", config={"inputs": 3, "outputs": 2}, recipe={},
                       directory=tmp_path)
    loaded, _ = shipped.load_model("half", kind="linear", build=_build, directory=tmp_path, convert=torch.Tensor.float)
    assert loaded.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.weight, model.weight.float(), rtol=0, atol=0)


def test_a_result_round_trips_apart_from_any_checkpoint(tmp_path):
    out = shipped.save_result("cmp", command="make it", settings={"seeds": [0, 1]}, result={"acc": [0.5, 0.75]},
                              directory=tmp_path, torch_version="2.0")
    assert shipped.load_result("cmp", directory=tmp_path) == out == shipped.load_result(tmp_path / "cmp.json")
    assert out.torch == "2.0" and sorted(p.name for p in tmp_path.iterdir()) == ["cmp.json"]
    with pytest.raises(FileNotFoundError, match=r"no result 'other' .*results there: \['cmp'\]"):
        shipped.load_result("other", directory=tmp_path)
    _save(tmp_path)
    with pytest.raises(ValueError, match="not an lfd13-result/1 result file"):
        shipped.load_result("lin", directory=tmp_path)


@pytest.mark.parametrize("e", recreate.ENTRIES, ids=lambda e: e.name)
def test_every_shipped_file_loads_with_its_hashes_checked(e: Entry):
    """Each row reads back what its shipped run wrote; the row's command is written in its checkpoints' sidecars."""
    e.check(checkpoints=shipped.CHECKPOINT_DIR, results=shipped.RESULTS_DIR)
    for name in e.files(e.settings):
        if name.endswith(".json"):
            record = json.loads((_folder(name) / name).read_text())
            assert record["command"].startswith(e.command), f"{name} says it was made by {record['command']!r}"


def _folder(name: str) -> Path:
    return shipped.RESULTS_DIR if (shipped.RESULTS_DIR / name).is_file() else shipped.CHECKPOINT_DIR
