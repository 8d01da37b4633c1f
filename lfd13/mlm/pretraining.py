"""Pre-training the tiny masked LM and its left-to-right twin on the course corpus.

One recipe (:class:`PretrainConfig`) for both models, through the package's one training loop
(:func:`lfd13.train.train`). :mod:`lfd13.experiments.mlm_pretraining` runs it long enough to
make the shipped checkpoints (:func:`lfd13.mlm.load_trained_bert`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import BertTokenizer, PreTrainedModel

from lfd13.data.corpus import SOURCES, load_corpus
from lfd13.mlm.masking import MaskedBatches, mlm_collator
from lfd13.mlm.model import PRESETS, build_bert, causal_step, mlm_step
from lfd13.mlm.tokenizer import make_blocks, train_wordpiece
from lfd13.runtime import preset
from lfd13.train import History, Recipe, train


@dataclass(frozen=True)
class PretrainConfig:
    """The pre-training recipe (the same for the masked and the left-to-right model)."""

    preset: str = "bert-nano"  # model preset in PRESETS
    steps: int = 2000  # optimiser steps
    batch_size: int = 32  # blocks per step
    lr: float = 2e-3  # peak learning rate (AdamW)
    warmup: int = 50  # linear warm-up steps, then cosine decay to 0
    weight_decay: float = 0.01  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    mlm_probability: float = 0.15  # fraction of tokens selected for prediction (MLM only)
    vocab_size: int = 4096  # WordPiece vocabulary size
    held_out: float = 0.1  # fraction of documents held out (lfd13.data.load_corpus)
    seed: int = 0  # seeds the split, initialisation, shuffling and masking

    @property
    def recipe(self) -> Recipe:
        """The optimisation part of the recipe, for :func:`lfd13.train.train`."""
        return Recipe(steps=self.steps, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay,
                      warmup=min(self.warmup, self.steps - 1), max_grad_norm=self.max_grad_norm)


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns."""

    model: PreTrainedModel
    history: History
    config: PretrainConfig


def pretrain(
    tokenizer: BertTokenizer,
    train_blocks: torch.Tensor,
    config: PretrainConfig = PretrainConfig(),
    *,
    causal: bool = False,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    callbacks: Sequence[Any] = (),
) -> PretrainResult:
    """Pre-train a fresh model of ``config.preset`` on ``train_blocks`` [N, L] with :func:`lfd13.train.train`."""
    model_cfg = preset(PRESETS, config.preset, what="masked LM")
    if len(tokenizer) != model_cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but preset {config.preset!r} expects {model_cfg.vocab_size}")
    if train_blocks.shape[1] > model_cfg.max_len:
        raise ValueError(f"blocks of {train_blocks.shape[1]} tokens exceed the preset's max_len {model_cfg.max_len}")
    model = build_bert(model_cfg, causal=causal, seed=config.seed)
    collator = mlm_collator(tokenizer, mlm_probability=config.mlm_probability, seed=config.seed)
    data = MaskedBatches(train_blocks, collator, batch_size=config.batch_size, seed=config.seed)
    step = causal_step if causal else mlm_step
    history = train(model, data, step, config.recipe, seed=config.seed, device=device, progress=progress,
                    callbacks=callbacks, desc="causal LM" if causal else "masked LM")
    return PretrainResult(model=model, history=history, config=config)


def prepare_corpus(
    config: PretrainConfig, tokenizer: BertTokenizer | None = None, *, sources: Sequence[str] = SOURCES
) -> tuple[BertTokenizer, torch.Tensor, torch.Tensor]:
    """Corpus split, tokenizer (trained on the training documents unless given) and blocks.

    Args:
        sources: which sources of :func:`lfd13.data.load_corpus` to read (default: all).

    Returns:
        ``(tokenizer, train_blocks [N, L], test_blocks [M, L])``.
    """
    corpus = load_corpus(sources=tuple(sources), held_out=config.held_out, seed=config.seed)
    if tokenizer is None:
        tokenizer = train_wordpiece(corpus.texts("train"), vocab_size=config.vocab_size)
    max_len = preset(PRESETS, config.preset, what="masked LM").max_len
    return tokenizer, make_blocks(tokenizer, corpus.texts("train"), max_len=max_len), make_blocks(tokenizer, corpus.texts("test"), max_len=max_len)


__all__ = ["PretrainConfig", "PretrainResult", "prepare_corpus", "pretrain"]
