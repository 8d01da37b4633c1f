"""Small checkpoints that ship inside the package, each with its recipe and hash.

A chapter must run in about a minute on two CPU cores; some of its results need a
longer training than that. Such a model is trained once by a reproducible command
(``python -m lfd13.pretrain ...``) and its weights ship in ``lfd13/checkpoints`` as
``<name>.pt`` with ``<name>.json`` beside it: the model's config, the training recipe
(the command, steps, seed, data, final loss, seconds) and the weights' sha256, which
:func:`load_state` checks before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

#: Where the package's checkpoints live.
CHECKPOINT_DIR = Path(str(resources.files("lfd13") / "checkpoints"))


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(name_or_path: str | Path) -> Path:
    """``"mae_digits"`` -> ``lfd13/checkpoints/mae_digits.pt``; a path ending in ``.pt`` is kept."""
    path = Path(name_or_path)
    return path if path.suffix == ".pt" else CHECKPOINT_DIR / f"{name_or_path}.pt"


def save_state(model: torch.nn.Module, path: Path | str, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``model``'s weights to ``path`` (``.pt``) and ``meta`` + sha256 + size to the ``.json`` beside it.

    Returns:
        The metadata as written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, path)
    meta = {**meta, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_state(name_or_path: str | Path, *, command: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint's weights and metadata after checking the weights' sha256.

    Args:
        name_or_path: a shipped name (``"mae_digits"``) or a path to a ``.pt`` file with its ``.json``.
        command: the command that (re)creates it, quoted in the error when it is missing.

    Returns:
        ``(state_dict on the CPU, metadata)``.
    """
    path = resolve(name_or_path)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        shipped = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))
        raise FileNotFoundError(
            f"no checkpoint at {path} (with {meta_path.name}); shipped checkpoints: {shipped}. Create it with `{command}`"
        )
    meta = json.loads(meta_path.read_text())
    digest = sha256_file(path)
    if digest != meta["sha256"]:
        raise ValueError(f"sha256 of {path} is {digest}, expected {meta['sha256']}: the file is corrupt or was changed; re-create it with `{command}`")
    return torch.load(path, map_location="cpu", weights_only=True), meta
