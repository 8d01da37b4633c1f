"""The tiny masked and causal LMs as checkpoints of :mod:`lfd13.shipped`.

A checkpoint is ``<name>.safetensors`` (the weights; the shipped ones in float16),
``<name>.vocab.txt`` (the WordPiece vocabulary, one token per line, index = id) and
``<name>.json``, whose ``config`` names the transformers architecture and its configuration
(:func:`checkpoint_config`). :func:`build_from_checkpoint` rebuilds the untrained model from
them, and :func:`load_trained_bert` loads one with its tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from transformers import BertTokenizer, PreTrainedModel

from lfd13 import shipped
from lfd13.mlm.model import ARCHITECTURES
from lfd13.mlm.tokenizer import tokenizer_from_vocab, vocab_list

#: The ``kind`` of a masked- or causal-LM checkpoint (:func:`lfd13.shipped.save_model`).
KIND = "mlm"

#: The suffix of the vocabulary file beside the weights: ``<name>.vocab.txt``.
VOCAB_SUFFIX = "vocab.txt"


def checkpoint_config(model: PreTrainedModel) -> dict[str, Any]:
    """What a checkpoint's JSON records to rebuild ``model``: its architecture and its transformers configuration."""
    return {"architecture": type(model).__name__, "model_config": model.config.to_diff_dict()}


def vocab_file(tokenizer: BertTokenizer) -> dict[str, str]:
    """The extra file of a checkpoint (``extra_files`` of :func:`lfd13.shipped.save_model`): the vocabulary, one token per line."""
    return {VOCAB_SUFFIX: "\n".join(vocab_list(tokenizer)) + "\n"}


def _tokenizer(info: shipped.CheckpointInfo, folder: Path) -> BertTokenizer:
    path = folder / f"{info.name}.{VOCAB_SUFFIX}"
    if path.name not in info.files:
        raise FileNotFoundError(f"checkpoint {info.name!r} has no file {path.name}; {shipped.RECREATE_HELP}")
    return tokenizer_from_vocab(path.read_text(encoding="utf-8").splitlines())


def build_from_checkpoint(info: shipped.CheckpointInfo, folder: Path) -> PreTrainedModel:
    """The untrained model a checkpoint's weights fit: its architecture and configuration, checked against its vocabulary."""
    architecture = info.config["architecture"]
    if architecture not in ARCHITECTURES:
        raise ValueError(f"checkpoint {info.name!r} names architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[architecture]
    model = cls(cls.config_class(**info.config["model_config"]))
    vocab = len(_tokenizer(info, folder))
    if vocab != model.config.vocab_size:
        raise ValueError(f"checkpoint {info.name!r}: its vocabulary has {vocab} tokens, its model {model.config.vocab_size}; "
                         f"{shipped.RECREATE_HELP}")
    return model


def load_trained_bert(
    name: str | Path, directory: Path | str | None = None
) -> tuple[PreTrainedModel, BertTokenizer, shipped.CheckpointInfo]:
    """A trained masked or causal LM (e.g. ``"bert-nano-mlm"``) and its tokenizer, hashes checked.

    Returns:
        ``(model on the CPU in eval mode and float32, tokenizer, info)``; ``info`` holds the config,
        the training recipe, and what the run measured (loss history, held-out accuracy).
    """
    model, info = shipped.load_model(name, kind=KIND, build=build_from_checkpoint, directory=directory,
                                     convert=torch.Tensor.float)
    _, folder = shipped.locate(name, directory)
    return cast(PreTrainedModel, model), _tokenizer(info, folder), info


__all__ = ["KIND", "VOCAB_SUFFIX", "build_from_checkpoint", "checkpoint_config", "load_trained_bert", "vocab_file"]
