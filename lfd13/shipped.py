"""What ships inside the package: model checkpoints and experiment results, one format each, one loader each.

A chapter runs in about a minute on two CPU cores; some of its results need longer training than
that. Such a model is trained once by a row of :mod:`lfd13.recreate` and ships in
``lfd13/checkpoints`` as

- ``<name>.safetensors`` — the weights (a plain tensor file: no pickle, nothing executed on load);
- ``<name>.json`` — the sidecar: the model's ``config``, the training ``recipe``, what the
  training measured (``result``: final loss, seconds, loss curve…), the ``command`` that
  recreates it, and the sha256 of every file of the checkpoint;
- optionally more files named ``<name>.<suffix>`` (e.g. a tokenizer's vocabulary).

Every model module saves with :func:`save_model` and loads with :func:`load_model`, which checks
every hash before anything is read, builds the model from the sidecar and loads the weights
strictly. What an experiment measured over many trainings (seeds, sweeps, arms) is not a
checkpoint's: it is a *result file* ``lfd13/results/<name>.json`` (:func:`save_result`,
:func:`load_result`), with the experiment's settings and the command that recreates it.
Every error says how to recreate what is missing or changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_DIR", "FORMAT", "RESULTS_DIR", "RESULT_FORMAT", "CheckpointInfo", "ResultFile", "extra_file",
    "load_model", "load_result", "save_model", "save_result", "sha256_file", "shipped_names",
]

#: Where the package's checkpoints live.
CHECKPOINT_DIR = Path(str(resources.files("lfd13") / "checkpoints"))

#: Where the package's experiment results live (one ``<name>.json`` per experiment, never inside a checkpoint).
RESULTS_DIR = Path(str(resources.files("lfd13") / "results"))

#: The format written into every result file.
RESULT_FORMAT = "lfd13-result/1"

#: What a missing file's error tells the reader to run.
RECREATE_HELP = "python -m lfd13.recreate --list names the command that creates each shipped file"

#: The format written into every checkpoint's JSON file.
FORMAT = "lfd13-checkpoint/1"


@dataclass(frozen=True)
class CheckpointInfo:
    """The JSON file of a checkpoint."""

    name: str  # e.g. "mae_digits"
    kind: str  # which module builds the model ("mae", "clip", "mlm", ...), or "record": the JSON file alone
    command: str  # the command that recreates the checkpoint
    config: dict[str, Any]  # the model's configuration (enough to build it before loading the weights)
    recipe: dict[str, Any]  # the training recipe
    result: dict[str, Any] = field(default_factory=dict)  # what the training run measured
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, weights first

    @property
    def weights(self) -> str:
        """File name of the weights, ``<name>.safetensors``."""
        return f"{self.name}.safetensors"

    @property
    def sha256(self) -> str:
        """sha256 of the weights file."""
        return self.files[self.weights]


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def locate(name_or_path: str | Path, directory: Path | str | None = None) -> tuple[str, Path]:
    """``"mae_digits"`` -> ``("mae_digits", lfd13/checkpoints)``; a path to ``x.json`` or ``x.safetensors`` -> ``("x", its folder)``."""
    path = Path(name_or_path)
    if path.suffix in (".json", ".safetensors"):
        return path.stem, path.parent
    if path.name != str(name_or_path):
        raise ValueError(f"{name_or_path!r} is neither a checkpoint name nor a path to its .json or .safetensors file")
    return str(name_or_path), Path(directory) if directory is not None else CHECKPOINT_DIR


def shipped_names(directory: Path | str = CHECKPOINT_DIR) -> list[str]:
    """Names of the checkpoints in ``directory``."""
    return sorted(p.stem for p in Path(directory).glob("*.safetensors"))


def save(
    name: str,
    state: dict[str, torch.Tensor],
    *,
    kind: str,
    command: str,
    config: dict[str, Any],
    recipe: dict[str, Any],
    result: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    directory: Path | str = CHECKPOINT_DIR,
) -> CheckpointInfo:
    """Write a checkpoint: ``<name>.safetensors``, the extra text files, and ``<name>.json``.

    Args:
        name: file stem.
        state: the weights (a ``state_dict``); copied to the CPU, contiguous.
        kind, command, config, recipe, result: see :class:`CheckpointInfo`.
        extra_files: suffix -> text, written as ``<name>.<suffix>`` (e.g. ``{"vocab.txt": ...}``).
        directory: where to write.

    Returns:
        The :class:`CheckpointInfo` as written.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.safetensors"
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}, str(weights), metadata={"format": "pt"})
    files = {weights.name: sha256_file(weights)}
    for suffix, text in (extra_files or {}).items():
        extra = directory / f"{name}.{suffix}"
        extra.write_text(text, encoding="utf-8")
        files[extra.name] = sha256_file(extra)
    info = CheckpointInfo(name=name, kind=kind, command=command, config=config, recipe=recipe, result=result or {}, files=files)
    _write_json(info, directory)
    return info


def load(
    name_or_path: str | Path, *, kind: str, command: str, directory: Path | str | None = None
) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Read a checkpoint's weights and metadata after checking the sha256 of each of its files.

    Args:
        name_or_path: a shipped name (``"mae_digits"``) or a path to its ``.json`` / ``.safetensors``.
        kind: the kind the caller builds (``"mae"``, ``"clip"``, ``"mlm"``); another kind is an error.
        command: the command that recreates it, quoted when the checkpoint is missing.
        directory: where to look for a name (default: the package's checkpoints).

    Returns:
        ``(state_dict on the CPU, info)``.
    """
    from safetensors.torch import load_file

    name, folder = locate(name_or_path, directory)
    meta_path = folder / f"{name}.json"
    if not meta_path.is_file() or not (folder / f"{name}.safetensors").is_file():
        raise FileNotFoundError(
            f"no checkpoint {name!r} in {folder} (it needs {name}.json and {name}.safetensors); "
            f"checkpoints there: {shipped_names(folder) if folder.is_dir() else []}. Create it with `{command}`"
        )
    record = json.loads(meta_path.read_text(encoding="utf-8"))
    if record.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not an {FORMAT} checkpoint (format {record.get('format')!r}); re-create it with `{command}`")
    record.pop("format")
    info = CheckpointInfo(**record)
    if info.kind != kind:
        raise ValueError(f"{name!r} is a {info.kind!r} checkpoint, not a {kind!r} one: load it with the loader of "
                         f"lfd13.{info.kind} (it was written by `{info.command}`)")
    for fname, digest in info.files.items():
        got = sha256_file(folder / fname)
        if got != digest:
            raise ValueError(
                f"sha256 of {folder / fname} is {got}, expected {digest}: the file is corrupt or was changed; "
                f"re-create it with `{info.command}`"
            )
    return load_file(str(folder / info.weights)), info


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], info: CheckpointInfo) -> torch.nn.Module:
    """Load ``state`` into ``model`` strictly (every key, every shape); the error names the recreate command."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RuntimeError(
            f"the weights of checkpoint {info.name!r} do not fit the model built from its config: {err}\n"
            f"Re-create the checkpoint with `{info.command}`"
        ) from None
    return model


def _write_json(info: CheckpointInfo, directory: Path) -> None:
    record = {"format": FORMAT, **{k: getattr(info, k) for k in ("name", "kind", "command", "config", "recipe", "result", "files")}}
    (directory / f"{info.name}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def extra_file(info: CheckpointInfo, suffix: str, name_or_path: str | Path, directory: Path | str | None = None) -> Path:
    """Path of the checkpoint's file ``<name>.<suffix>`` (its hash was checked by :func:`load`)."""
    _, folder = locate(name_or_path, directory)
    path = folder / f"{info.name}.{suffix}"
    if path.name not in info.files:
        raise FileNotFoundError(f"checkpoint {info.name!r} has no file {path.name}; re-create it with `{info.command}`")
    return path


# ---------------------------------------------------------------- models: one save, one load for every kind
def save_model(
    name: str,
    model: torch.nn.Module,
    *,
    kind: str,
    command: str,
    config: dict[str, Any],
    recipe: dict[str, Any],
    result: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    directory: Path | str = CHECKPOINT_DIR,
) -> CheckpointInfo:
    """Write ``model``'s weights and its sidecar JSON (see :func:`save`); ``config`` must be enough to rebuild it."""
    return save(name, model.state_dict(), kind=kind, command=command, config=config, recipe=recipe, result=result,
                extra_files=extra_files, directory=directory)


def load_model(
    name_or_path: str | Path,
    *,
    kind: str,
    build: Callable[[CheckpointInfo, Path], torch.nn.Module],
    directory: Path | str | None = None,
    convert: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.nn.Module, CheckpointInfo]:
    """Check a checkpoint's hashes, build its model from the sidecar, load the weights strictly, set eval mode.

    Args:
        name_or_path: a shipped name (``"mae_digits"``) or a path to its ``.json`` / ``.safetensors``.
        kind: the kind the caller expects (``"mae"``, ``"clip"``, …); another kind is an error.
        build: ``build(info, folder)`` -> the untrained model the weights fit (``folder`` holds the
            checkpoint's extra files, e.g. a vocabulary).
        directory: where to look for a name (default: the package's checkpoints).
        convert: applied to every tensor before loading (e.g. ``Tensor.float`` for float16 files).

    Returns:
        ``(model on the CPU in eval mode, info)``.
    """
    state, info = load(name_or_path, kind=kind, command=RECREATE_HELP, directory=directory)
    _, folder = locate(name_or_path, directory)
    if convert is not None:
        state = {k: convert(v) for k, v in state.items()}
    model = load_weights(build(info, folder), state, info)
    return model.eval(), info


# ---------------------------------------------------------------- results: what an experiment measured
@dataclass(frozen=True)
class ResultFile:
    """A result file ``<name>.json``: what one experiment measured, with the settings and command that produced it."""

    name: str  # e.g. "mae_finetuning"
    command: str  # the command that recreates it
    settings: dict[str, Any]  # the experiment's settings (its frozen dataclass, as a dict)
    result: dict[str, Any]  # what it measured
    torch: str = ""  # the torch version that computed it


def save_result(
    name: str,
    *,
    command: str,
    settings: dict[str, Any],
    result: dict[str, Any],
    directory: Path | str = RESULTS_DIR,
    torch_version: str | None = None,
) -> ResultFile:
    """Write ``<name>.json`` in ``directory``: an experiment's result, apart from any model checkpoint.

    ``torch_version`` is the torch that computed ``result`` (default: this one).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = ResultFile(name=name, command=command, settings=settings, result=result, torch=torch_version or torch.__version__)
    record = {"format": RESULT_FORMAT, **{k: getattr(out, k) for k in ("name", "command", "torch", "settings", "result")}}
    (directory / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return out


def load_result(name_or_path: str | Path, *, directory: Path | str | None = None) -> ResultFile:
    """Read a result file written by :func:`save_result` (a name in the package's results, or a path)."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        if path.name != str(name_or_path):
            raise ValueError(f"{name_or_path!r} is neither a result name nor a path to its .json file")
        path = Path(directory if directory is not None else RESULTS_DIR) / f"{name_or_path}.json"
    if not path.is_file():
        folder = path.parent
        known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise FileNotFoundError(f"no result {path.stem!r} in {folder}; results there: {known}. {RECREATE_HELP}")
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.pop("format", None) != RESULT_FORMAT:
        raise ValueError(f"{path} is not an {RESULT_FORMAT} result file; {RECREATE_HELP}")
    return ResultFile(**record)
