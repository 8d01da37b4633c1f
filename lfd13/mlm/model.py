"""A tiny BERT-style masked LM and its left-to-right twin, and their training steps.

``RoFormerForMaskedLM`` (BERT with rotary position embeddings, Su et al. 2021) reads the
whole block and predicts the selected tokens from both sides; ``RoFormerForCausalLM``, with
exactly the same parameters, reads left to right. Plain ``BertForMaskedLM`` (learned absolute
positions) is kept for comparison.

Why rotary positions? Rotary embeddings rotate each query and key by its position, so every
attention layer sees *relative* positions without learning a position table; BERT's learned
absolute table (``positions="absolute"``) must be learned from the data first, and this corpus
is small.

Shapes: B blocks, L tokens, D hidden width, V vocabulary, M selected positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertLMHeadModel,
    PreTrainedModel,
    RoFormerConfig,
    RoFormerForCausalLM,
    RoFormerForMaskedLM,
)

from lfd13.runtime import IGNORE_INDEX, preset, seeded

#: The architectures a checkpoint may name.
ARCHITECTURES = {c.__name__: c for c in (RoFormerForMaskedLM, RoFormerForCausalLM, BertForMaskedLM, BertLMHeadModel)}


@dataclass(frozen=True)
class MLMConfig:
    """A tiny BERT-style transformer encoder."""

    vocab_size: int = 4096  # WordPiece vocabulary size (ids 0..4 are SPECIAL_TOKENS)
    hidden: int = 128  # width D of every token vector
    layers: int = 2  # transformer blocks
    heads: int = 2  # attention heads (head width D / heads)
    intermediate: int = 512  # width of the feed-forward layer (4 D, as in BERT)
    max_len: int = 64  # tokens per block, [CLS] and [SEP] included
    dropout: float = 0.0  # dropout on hidden states and attention weights (short runs do not overfit)
    positions: str = "rotary"  # "rotary" (RoFormer) or "absolute" (BERT's learned position table)

    def __post_init__(self) -> None:
        if self.positions not in ("rotary", "absolute"):
            raise ValueError(f"positions must be 'rotary' or 'absolute', got {self.positions!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")


#: Named presets. ``bert-nano`` is the shipped masked LM and its twin (about 1M parameters); ``bert-pico`` is for tests.
PRESETS: dict[str, MLMConfig] = {
    "bert-nano": MLMConfig(),
    "bert-nano-absolute": MLMConfig(positions="absolute"),
    "bert-pico": MLMConfig(vocab_size=512, hidden=32, layers=1, heads=2, intermediate=64, max_len=16),  # for tests
}


def build_bert(config: MLMConfig | str, *, seed: int, causal: bool = False) -> PreTrainedModel:
    """A freshly initialised masked LM, or its left-to-right twin when ``causal=True``.

    Both variants have exactly the same parameters; as built here they differ only in the
    attention mask (bidirectional vs causal) and in the objective (the real GPT and BERT differ in
    more). Initialisation is seeded with ``seed``.

    Args:
        config: the model's sizes, or the name of one of :data:`PRESETS`.
    """
    if isinstance(config, str):
        config = preset(PRESETS, config, what="masked LM")
    common = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        intermediate_size=config.intermediate,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        max_position_embeddings=config.max_len,
        pad_token_id=0,
        is_decoder=causal,
        tie_word_embeddings=True,
    )
    with seeded(seed):  # seeded initialisation; the caller's generator is left alone
        if config.positions == "rotary":
            hf = RoFormerConfig(embedding_size=config.hidden, **common)
            return (RoFormerForCausalLM if causal else RoFormerForMaskedLM)(hf)
        hf = BertConfig(**common)
        return (BertLMHeadModel if causal else BertForMaskedLM)(hf)


def _encoder_and_head(model: PreTrainedModel) -> tuple[nn.Module, nn.Module]:
    return model.base_model, model.cls  # type: ignore[attr-defined]


def mlm_step(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masked-LM loss and accuracy, computing the output head only at the masked positions.

    Args:
        batch: ``input_ids`` [B, L] (already masked by the collator), ``labels`` [B, L]
            (-100 = not selected).

    Returns:
        ``{"loss": cross-entropy over the M selected positions, "acc": top-1 accuracy there}``.
    """
    encoder, head = _encoder_and_head(model)
    hidden = encoder(input_ids=batch["input_ids"]).last_hidden_state  # (B, L, D)
    selected = batch["labels"] != IGNORE_INDEX  # (B, L)
    logits = head(hidden[selected])  # (M, V): the head on 15 % of the tokens only
    targets = batch["labels"][selected]  # (M,)
    loss = F.cross_entropy(logits, targets)
    return {"loss": loss, "acc": (logits.argmax(-1) == targets).float().mean()}


def causal_step(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Left-to-right LM loss and accuracy at the *same* selected positions as ``mlm_step``.

    The causal model reads the original (unmasked) tokens and predicts token i from tokens < i.
    Computing the loss only at the positions the collator selected (15 %) gives both models the
    same number of predictions per step, and the same cost. It is a handicap for the causal
    model: a causal LM could learn from every next token of the same forward pass, about
    1 / 0.15 ≈ 6.7 times as many targets.

    Args:
        batch: a masked batch (``input_ids`` [B, L], ``labels`` [B, L], -100 = not selected), as
            ``MaskedBatches`` yields; the original tokens are recovered from it.
    """
    encoder, head = _encoder_and_head(model)
    labels = batch["labels"]
    originals = torch.where(labels != IGNORE_INDEX, labels, batch["input_ids"])  # (B, L) unmasked tokens
    hidden = encoder(input_ids=originals).last_hidden_state  # (B, L, D), causal attention
    selected = labels[:, 1:] != IGNORE_INDEX  # (B, L-1): targets at positions 1..L-1
    logits = head(hidden[:, :-1][selected])  # (M, V): the state at i-1 predicts token i
    targets = labels[:, 1:][selected]
    loss = F.cross_entropy(logits, targets)
    return {"loss": loss, "acc": (logits.argmax(-1) == targets).float().mean()}


__all__ = ["ARCHITECTURES", "PRESETS", "MLMConfig", "build_bert", "causal_step", "mlm_step"]
