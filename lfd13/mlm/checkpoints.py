"""Saving and loading the tiny masked and causal LMs in the package's one checkpoint format.

A checkpoint is ``<name>.safetensors`` (float16 weights), ``<name>.vocab.txt`` (the WordPiece
vocabulary, one token per line, index = id) and ``<name>.json`` (see :mod:`lfd13.shipped`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import BertTokenizer, PreTrainedModel

from lfd13 import shipped
from lfd13.mlm.model import ARCHITECTURES
from lfd13.mlm.tokenizer import tokenizer_from_vocab, vocab_list

#: The command that (re)creates the shipped masked and causal LMs.
RECREATE = "python -m lfd13.pretrain mlm"


def save_checkpoint(
    name: str,
    model: PreTrainedModel,
    tokenizer: BertTokenizer,
    *,
    recipe: dict[str, Any],
    result: dict[str, Any],
    command: str = RECREATE,
    directory: Path | str = shipped.CHECKPOINT_DIR,
) -> shipped.CheckpointInfo:
    """Write checkpoint ``name``: float16 weights, the vocabulary, and the JSON (config, recipe, result, sha256)."""
    state = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
    config = {"architecture": type(model).__name__, "model_config": model.config.to_diff_dict()}
    vocab = "\n".join(vocab_list(tokenizer)) + "\n"
    return shipped.save(name, state, kind="mlm", command=command, config=config, recipe=recipe, result=result,
                        extra_files={"vocab.txt": vocab}, directory=directory)


def load_checkpoint(
    name_or_path: str | Path, *, device: torch.device | str | None = None, directory: Path | str | None = None
) -> tuple[PreTrainedModel, BertTokenizer, shipped.CheckpointInfo]:
    """Load a checkpoint written by :func:`save_checkpoint` (e.g. ``"bert-nano-mlm"``), after checking its sha256.

    Returns:
        ``(model in eval mode and float32, tokenizer, info)``; ``info`` holds the config, the
        training recipe, and what the run measured (loss history, held-out accuracy).
    """
    state, info = shipped.load(name_or_path, kind="mlm", command=RECREATE, directory=directory)
    cls = ARCHITECTURES[info.config["architecture"]]
    model = cls(cls.config_class(**info.config["model_config"]))
    shipped.load_weights(model, {k: v.float() for k, v in state.items()}, info)
    model.tie_weights()
    tokens = shipped.extra_file(info, "vocab.txt", name_or_path, directory).read_text(encoding="utf-8").splitlines()
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer_from_vocab(tokens), info
