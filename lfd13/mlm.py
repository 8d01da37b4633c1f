"""A small BERT-style masked language model, pre-trained on the course corpus.

BERT (Devlin et al., 2018) learns context-sensitive word vectors by *masked language
modelling* (MLM): hide 15 % of the tokens and predict them from both sides. This module holds
the pieces a chapter needs to do that at course scale, on a CPU, in about a minute:

- ``train_wordpiece`` — a WordPiece vocabulary (~4k) trained with ``tokenizers`` on the
  corpus, wrapped as a transformers ``transformers.BertTokenizer``;
- ``make_blocks`` — documents cut into fixed-length blocks ``[CLS] … [SEP]``;
- ``mlm_collator`` — transformers' own ``transformers.DataCollatorForLanguageModeling``
  (the 80/10/10 rule lives there; lfd13 has no masking code of its own);
- ``PRESETS`` / ``build_model`` — tiny configurations of ``RoFormerForMaskedLM``
  (BERT with rotary position embeddings, Su et al. 2021) and its left-to-right twin
  ``RoFormerForCausalLM``; plain ``BertForMaskedLM`` for comparison;
- ``mlm_step`` / ``causal_step`` — step functions for :func:`lfd13.train.fit`; the MLM
  step runs the output head only at the masked positions (the other 85 % carry no loss);
- evaluation: ``masked_token_accuracy``, ``unigram_baseline``, ``accuracy_by_position``,
  ``fill_mask``;
- next-sentence prediction inputs: ``nsp_pairs``, ``encode_pair``;
- ``pretrain``, ``save_checkpoint``, ``load_checkpoint`` and ``python -m lfd13.mlm``,
  which reproduces the checkpoints shipped in ``lfd13/checkpoints/``.

Why rotary positions? A BERT of this size with learned absolute position embeddings sits on
the unigram plateau (predicting "the" everywhere) for well over a thousand steps; rotary
embeddings give every layer relative positions for free and the same model starts to use the
context within a few hundred steps.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertLMHeadModel,
    BertTokenizer,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    RoFormerConfig,
    RoFormerForCausalLM,
    RoFormerForMaskedLM,
)

from lfd13.shipped import CHECKPOINT_DIR, sha256_file
from lfd13.train import History, fit, warmup_cosine

#: Special tokens, in the order of their ids 0..4 (as in BERT's vocabulary).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")



# ----------------------------------------------------------------------------- tokenizer


def train_wordpiece(texts: Sequence[str], *, vocab_size: int = 4096, min_frequency: int = 2) -> BertTokenizer:
    """Train a lower-cased WordPiece vocabulary on ``texts`` and return a BERT tokenizer.

    The vocabulary is learned with Hugging Face ``tokenizers`` (as BERT's was, with its own
    WordPiece trainer); the result is a transformers ``BertTokenizer`` with the usual
    ``[CLS] A [SEP] B [SEP]`` template and segment ids.
    """
    from tokenizers import BertWordPieceTokenizer

    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings (documents), not a single string")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    wp.train_from_iterator(
        list(texts), vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    return tokenizer_from_vocab(wp.get_vocab())


def tokenizer_from_vocab(vocab: dict[str, int] | Sequence[str]) -> BertTokenizer:
    """A lower-casing BERT tokenizer for a vocabulary (dict token -> id, or tokens in id order)."""
    if not isinstance(vocab, dict):
        vocab = {tok: i for i, tok in enumerate(vocab)}
    for i, tok in enumerate(SPECIAL_TOKENS):
        if vocab.get(tok) != i:
            raise ValueError(f"the vocabulary must map {tok} to id {i} (found {vocab.get(tok)}); train it with train_wordpiece")
    return BertTokenizer(vocab=dict(vocab), do_lower_case=True, strip_accents=True)


def vocab_list(tokenizer: BertTokenizer) -> list[str]:
    """The tokenizer's vocabulary as a list, index = token id."""
    vocab = tokenizer.get_vocab()
    out = [""] * len(vocab)
    for tok, i in vocab.items():
        out[i] = tok
    return out


# ----------------------------------------------------------------------------- data


def make_blocks(tokenizer: BertTokenizer, texts: Sequence[str], *, max_len: int = 64) -> torch.Tensor:
    """Cut each document into blocks of ``max_len`` tokens: ``[CLS]`` + ``max_len - 2`` tokens + ``[SEP]``.

    Blocks never cross documents; a document's last piece shorter than ``max_len - 2`` is
    dropped, so there is no padding.

    Returns:
        [N, L] token ids, L = ``max_len``.
    """
    if max_len < 3:
        raise ValueError(f"max_len must be at least 3 ([CLS] token [SEP]), got {max_len}")
    if isinstance(texts, str):
        raise ValueError("texts must be a list of documents, not a single string")
    body = max_len - 2
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    rows: list[list[int]] = []
    for doc in ids:
        for i in range(0, len(doc) - body + 1, body):
            rows.append([tokenizer.cls_token_id, *doc[i : i + body], tokenizer.sep_token_id])
    if not rows:
        raise ValueError(f"the texts are too short to fill a single block of {max_len} tokens")
    return torch.tensor(rows, dtype=torch.long)


def mlm_collator(
    tokenizer: BertTokenizer,
    *,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    seed: int = 0,
) -> DataCollatorForLanguageModeling:
    """transformers' ``DataCollatorForLanguageModeling``, seeded.

    It selects each non-special token with probability ``mlm_probability``; a selected token
    becomes ``[MASK]`` with probability ``mask_replace_prob``, a random token with probability
    ``random_replace_prob`` and stays as it is otherwise (BERT's 80/10/10). ``labels`` hold the
    original id at selected positions and -100 elsewhere. For evaluation use
    ``mask_replace_prob=1.0, random_replace_prob=0.0``: every selected token is a ``[MASK]``.
    """
    return DataCollatorForLanguageModeling(
        tokenizer,
        mlm=True,
        mlm_probability=mlm_probability,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        seed=seed,
        return_tensors="pt",
    )


class MaskedBatches:
    """Shuffled mini-batches of blocks, masked afresh by a collator each time they are drawn.

    An iterable for :func:`lfd13.train.fit`: one pass is one epoch. Shuffling uses its own
    generator seeded with ``seed``; masking uses the collator's own seeded generator.

    Yields:
        dicts with ``input_ids`` [B, L] (masked) and ``labels`` [B, L] (-100 = not selected).
    """

    def __init__(self, blocks: torch.Tensor, collator: DataCollatorForLanguageModeling, *, batch_size: int = 32, seed: int = 0):
        if blocks.ndim != 2:
            raise ValueError(f"blocks must be [N, L] token ids, got shape {tuple(blocks.shape)}")
        if not 1 <= batch_size <= len(blocks):
            raise ValueError(f"batch_size must be in [1, {len(blocks)}] (number of blocks), got {batch_size}")
        self.blocks, self.collator, self.batch_size = blocks, collator, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.blocks) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(len(self.blocks), generator=self.generator)
        for i in range(len(self)):
            rows = self.blocks[order[i * self.batch_size : (i + 1) * self.batch_size]]
            batch = self.collator(list(rows))
            yield {"input_ids": batch["input_ids"], "labels": batch["labels"]}


def mask_batch(blocks: torch.Tensor, collator: DataCollatorForLanguageModeling) -> dict[str, torch.Tensor]:
    """Mask ``blocks`` [B, L] with ``collator``; returns ``input_ids`` and ``labels`` [B, L]."""
    batch = collator(list(blocks))
    return {"input_ids": batch["input_ids"], "labels": batch["labels"]}


# ----------------------------------------------------------------------------- models


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


#: Named presets. ``bert-nano`` is the chapter's model (about 1M parameters).
PRESETS: dict[str, MLMConfig] = {
    "bert-nano": MLMConfig(),
    "bert-nano-absolute": MLMConfig(positions="absolute"),
    "bert-pico": MLMConfig(vocab_size=512, hidden=32, layers=1, heads=2, intermediate=64, max_len=16),  # for tests
}


def build_model(config: MLMConfig | str = "bert-nano", *, causal: bool = False, seed: int = 0) -> PreTrainedModel:
    """A freshly initialised masked LM, or its left-to-right twin when ``causal=True``.

    Both variants have exactly the same parameters; they differ only in the attention mask
    (bidirectional vs causal) and in the objective. Initialisation is seeded with ``seed``.
    """
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown preset {config!r}; choose from {sorted(PRESETS)}")
        config = PRESETS[config]
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
    torch.manual_seed(seed)
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
    selected = batch["labels"] != -100  # (B, L)
    logits = head(hidden[selected])  # (M, V): the head on 15 % of the tokens only
    targets = batch["labels"][selected]  # (M,)
    loss = F.cross_entropy(logits, targets)
    return {"loss": loss, "acc": (logits.argmax(-1) == targets).float().mean()}


def causal_step(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Left-to-right LM loss and accuracy at the *same* selected positions as ``mlm_step``.

    The causal model reads the original (unmasked) tokens and predicts token i from tokens < i.
    Computing the loss only at the positions the collator selected (15 %) gives both models the
    same number of predictions per step, and the same cost.

    Args:
        batch: a masked batch (``input_ids`` [B, L], ``labels`` [B, L], -100 = not selected), as
            ``MaskedBatches`` yields; the original tokens are recovered from it.
    """
    encoder, head = _encoder_and_head(model)
    labels = batch["labels"]
    originals = torch.where(labels != -100, labels, batch["input_ids"])  # (B, L) unmasked tokens
    hidden = encoder(input_ids=originals).last_hidden_state  # (B, L, D), causal attention
    selected = labels[:, 1:] != -100  # (B, L-1): targets at positions 1..L-1
    logits = head(hidden[:, :-1][selected])  # (M, V): the state at i-1 predicts token i
    targets = labels[:, 1:][selected]
    loss = F.cross_entropy(logits, targets)
    return {"loss": loss, "acc": (logits.argmax(-1) == targets).float().mean()}


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_masked(
    model: PreTrainedModel, masked: dict[str, torch.Tensor], *, originals: torch.Tensor | None = None, batch_size: int = 256
) -> torch.Tensor:
    """Top-1 predictions at the selected positions (``labels != -100``) of a masked batch.

    A masked LM reads the masked input ``masked["input_ids"]`` [N, L]. A causal LM
    (``config.is_decoder``) reads the *original* blocks ``originals`` [N, L] and predicts
    token i from tokens < i. The output head runs only at the selected positions.

    Returns:
        [N, L] predicted token ids, -1 where nothing was selected (and at position 0).
    """
    model.eval()
    device = next(model.parameters()).device
    encoder, head = _encoder_and_head(model)
    causal = bool(getattr(model.config, "is_decoder", False))
    if causal and originals is None:
        raise ValueError("a causal model needs originals= (the unmasked blocks): it reads the true left context")
    source = originals if causal else masked["input_ids"]
    labels = masked["labels"]
    pred = torch.full_like(labels, -1)
    for i in range(0, len(source), batch_size):
        hidden = encoder(input_ids=source[i : i + batch_size].to(device)).last_hidden_state.cpu()  # (b, L, D)
        sel = labels[i : i + batch_size] != -100  # (b, L)
        sel[:, 0] = False
        if causal:  # the state at i-1 predicts token i
            hidden = torch.cat([hidden[:, :1], hidden[:, :-1]], dim=1)
        logits = head(hidden[sel].to(device))  # (M, V)
        block = pred[i : i + batch_size]
        block[sel] = logits.argmax(-1).cpu()
    return pred


def masked_token_accuracy(
    model: PreTrainedModel, masked: dict[str, torch.Tensor], *, originals: torch.Tensor | None = None
) -> float:
    """Top-1 accuracy at the selected positions (``labels != -100``) of a masked batch."""
    labels = masked["labels"]
    sel = labels != -100
    if not sel.any():
        raise ValueError("no position is selected (all labels are -100)")
    pred = predict_masked(model, masked, originals=originals)
    return float((pred[sel] == labels[sel]).float().mean())


def unigram_baseline(train_blocks: torch.Tensor, labels: torch.Tensor, *, n_special: int = len(SPECIAL_TOKENS)) -> tuple[float, int]:
    """Accuracy of always guessing the most frequent training token (no context at all).

    Args:
        train_blocks: [N, L] training token ids (to count frequencies).
        labels: [M, L] evaluation labels, -100 where not selected.

    Returns:
        ``(accuracy, token_id)`` of that constant guess.
    """
    counts = torch.bincount(train_blocks.flatten())
    counts[:n_special] = 0
    top = int(counts.argmax())
    sel = labels != -100
    if not sel.any():
        raise ValueError("no position is selected (all labels are -100)")
    return float((labels[sel] == top).float().mean()), top


def accuracy_by_position(pred: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 accuracy at each sequence position over the selected tokens.

    Args:
        pred: [N, L] predicted ids; labels: [N, L] (-100 = not selected).

    Returns:
        ``(accuracy [L], count [L])``; positions with no selected token get NaN.
    """
    sel = labels != -100
    correct = ((pred == labels) & sel).sum(0).float()
    count = sel.sum(0)
    return correct / count.clamp(min=1).where(count > 0, torch.tensor(float("nan"))), count


@torch.no_grad()
def fill_mask(model: PreTrainedModel, tokenizer: BertTokenizer, text: str, *, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-``k`` guesses (token, probability) for each ``[MASK]`` in ``text``.

    A causal model reads only the words left of each ``[MASK]`` (it predicts the blank from the
    text before it), which is exactly its limitation.
    """
    enc = tokenizer(text, return_tensors="pt")
    ids = enc["input_ids"]
    where = (ids[0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    if not where:
        raise ValueError(f"text has no {tokenizer.mask_token}: {text!r}")
    model.eval()
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device)).logits[0].cpu()  # (L, V)
    causal = bool(getattr(model.config, "is_decoder", False))
    out = []
    for i in where:
        row = logits[i - 1] if causal else logits[i]
        probs = row.softmax(-1)
        probs[: len(SPECIAL_TOKENS)] = 0.0
        top = probs.topk(k)
        out.append([(tokenizer.convert_ids_to_tokens(int(j)), round(float(p), 3)) for p, j in zip(top.values, top.indices)])
    return out


# ----------------------------------------------------------------------------- next-sentence prediction


@dataclass(frozen=True)
class SentencePair:
    """One next-sentence-prediction example."""

    first: str  # sentence A
    second: str  # sentence B: the true next sentence (IsNext) or one from another document (NotNext)
    is_next: bool  # label: True = IsNext, False = NotNext


def nsp_pairs(documents: Sequence[Sequence[str]], *, n: int, seed: int = 0) -> list[SentencePair]:
    """Build ``n`` NSP pairs as BERT did: half IsNext, half NotNext.

    Each pair takes a random sentence A of a random document; B is the sentence that follows
    it (IsNext) or, with probability 1/2, a random sentence of a *different* document (NotNext).

    Args:
        documents: each document as its list of sentences (at least two documents).
    """
    docs = [list(d) for d in documents if len(d) >= 2]
    if len(docs) < 2:
        raise ValueError("need at least two documents with two or more sentences each")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        d = rng.randrange(len(docs))
        i = rng.randrange(len(docs[d]) - 1)
        if rng.random() < 0.5:
            pairs.append(SentencePair(docs[d][i], docs[d][i + 1], True))
        else:
            other = rng.choice([j for j in range(len(docs)) if j != d])
            pairs.append(SentencePair(docs[d][i], rng.choice(docs[other]), False))
    return pairs


def encode_pair(tokenizer: BertTokenizer, pair: SentencePair, *, max_len: int = 64) -> dict[str, torch.Tensor]:
    """BERT's input for a sentence pair: ``[CLS] A [SEP] B [SEP]`` with segment ids 0 / 1.

    Returns:
        ``input_ids``, ``token_type_ids`` (0 = sentence A and its [CLS]/[SEP], 1 = sentence B),
        ``attention_mask`` — each [1, L] with L ≤ ``max_len`` — and ``next_sentence_label``
        [1] (0 = IsNext, 1 = NotNext, transformers' convention).
    """
    enc = tokenizer(pair.first, pair.second, truncation="longest_first", max_length=max_len, return_tensors="pt")
    return {
        "input_ids": enc["input_ids"],
        "token_type_ids": enc["token_type_ids"],
        "attention_mask": enc["attention_mask"],
        "next_sentence_label": torch.tensor([0 if pair.is_next else 1]),
    }


# ----------------------------------------------------------------------------- pre-training and checkpoints


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


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns."""

    model: PreTrainedModel
    history: History
    config: PretrainConfig
    extra: dict[str, Any] = field(default_factory=dict)


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
    """Pre-train a fresh model of ``config.preset`` on ``train_blocks`` [N, L] with :func:`lfd13.train.fit`."""
    model_cfg = PRESETS[config.preset]
    if len(tokenizer) != model_cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but preset {config.preset!r} expects {model_cfg.vocab_size}")
    if train_blocks.shape[1] > model_cfg.max_len:
        raise ValueError(f"blocks of {train_blocks.shape[1]} tokens exceed the preset's max_len {model_cfg.max_len}")
    model = build_model(model_cfg, causal=causal, seed=config.seed)
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    sched = warmup_cosine(opt, warmup=min(config.warmup, config.steps - 1), total=config.steps)
    collator = mlm_collator(tokenizer, mlm_probability=config.mlm_probability, seed=config.seed)
    data = MaskedBatches(train_blocks, collator, batch_size=config.batch_size, seed=config.seed)
    step = causal_step if causal else mlm_step
    history = fit(
        model, data, step, optimizer=opt, scheduler=sched, steps=config.steps, batch_size=config.batch_size, seed=config.seed,
        device=device, max_grad_norm=config.max_grad_norm, progress=progress, callbacks=callbacks,
        desc="causal LM" if causal else "masked LM",
    )  # fmt: skip
    return PretrainResult(model=model, history=history, config=config)


def save_checkpoint(
    name: str, model: PreTrainedModel, tokenizer: BertTokenizer, *, record: dict[str, Any], directory: Path | str = CHECKPOINT_DIR
) -> Path:
    """Write ``<name>.safetensors`` (float16 weights), ``<name>.json`` (config, record, sha256) and ``<name>.vocab.txt``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.safetensors"
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "pt"})
    vocab = directory / f"{name}.vocab.txt"
    vocab.write_text("\n".join(vocab_list(tokenizer)) + "\n", encoding="utf-8")
    meta = {
        "model_config": model.config.to_diff_dict(),
        "architecture": type(model).__name__,
        "sha256": {weights.name: sha256_file(weights), vocab.name: sha256_file(vocab)},
        **record,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return path


def load_checkpoint(
    name: str, *, directory: Path | str = CHECKPOINT_DIR, device: torch.device | str | None = None
) -> tuple[PreTrainedModel, BertTokenizer, dict[str, Any]]:
    """Load a checkpoint written by ``save_checkpoint``, after checking its sha256.

    Returns:
        ``(model in eval mode and float32, tokenizer, record)``; ``record`` is the JSON file
        (training recipe, history, measured accuracies, hashes).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.json"))
        raise FileNotFoundError(
            f"no checkpoint {name!r} in {directory} (found: {known}); rebuild it with `python -m lfd13.mlm`"
        )
    meta = json.loads(path.read_text(encoding="utf-8"))
    for fname, digest in meta["sha256"].items():
        got = sha256_file(directory / fname)
        if got != digest:
            raise ValueError(f"{directory / fname} has sha256 {got}, expected {digest}: the file is corrupt or was replaced")
    arch = meta["architecture"]
    classes = {c.__name__: c for c in (RoFormerForMaskedLM, RoFormerForCausalLM, BertForMaskedLM, BertLMHeadModel)}
    cls = classes[arch]
    config = cls.config_class(**meta["model_config"])
    model = cls(config)
    state = {k: v.float() for k, v in load_file(str(directory / f"{name}.safetensors")).items()}
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    tokens = (directory / f"{name}.vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = tokenizer_from_vocab(tokens)
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer, meta


def prepare_corpus(config: PretrainConfig, tokenizer: BertTokenizer | None = None) -> tuple[BertTokenizer, torch.Tensor, torch.Tensor]:
    """Corpus split, tokenizer (trained on the training documents unless given) and blocks.

    Returns:
        ``(tokenizer, train_blocks [N, L], test_blocks [M, L])``.
    """
    from lfd13.data.corpus import load_corpus

    corpus = load_corpus(held_out=config.held_out, seed=config.seed)
    if tokenizer is None:
        tokenizer = train_wordpiece(corpus.texts("train"), vocab_size=config.vocab_size)
    max_len = PRESETS[config.preset].max_len
    return tokenizer, make_blocks(tokenizer, corpus.texts("train"), max_len=max_len), make_blocks(tokenizer, corpus.texts("test"), max_len=max_len)


def evaluation_batch(tokenizer: BertTokenizer, blocks: torch.Tensor, *, seed: int = 1234, repeats: int = 4) -> dict[str, torch.Tensor]:
    """The fixed evaluation masks: ``repeats`` copies of ``blocks``, 15 % selected, every one a ``[MASK]``."""
    collator = mlm_collator(tokenizer, mask_replace_prob=1.0, random_replace_prob=0.0, seed=seed)
    return mask_batch(blocks.repeat(repeats, 1), collator)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lfd13.mlm``: pre-train the shipped masked LM and its left-to-right twin."""
    parser = argparse.ArgumentParser(prog="python -m lfd13.mlm", description=main.__doc__)
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    parser.add_argument("--name", default="bert-nano")
    parser.add_argument("--only", choices=("mlm", "causal"), default=None)
    parser.add_argument("--vocab", type=Path, default=None, help="use this vocabulary (one token per line) instead of training one")
    args = parser.parse_args(argv)
    from lfd13.runtime import setup

    device = setup(seed=0, style=False)
    config = PretrainConfig(steps=args.steps)
    # tokenizers' WordPiece trainer breaks frequency ties in a run-dependent order, so both models
    # must share one trained vocabulary: train it once, or pass the shipped one with --vocab
    given = tokenizer_from_vocab(args.vocab.read_text(encoding="utf-8").splitlines()) if args.vocab else None
    tokenizer, train_blocks, test_blocks = prepare_corpus(config, tokenizer=given)
    evalb = evaluation_batch(tokenizer, test_blocks)
    base, top = unigram_baseline(train_blocks, evalb["labels"])
    print(f"train blocks {tuple(train_blocks.shape)}, held-out blocks {tuple(test_blocks.shape)}, unigram baseline {base:.4f} ({tokenizer.convert_ids_to_tokens(top)})")
    for causal in (False, True):
        kind = "causal" if causal else "mlm"
        if args.only and args.only != kind:
            continue
        t0 = time.perf_counter()
        def report(step: int, values: Any, kind: str = kind) -> None:
            if step % 100 == 0:
                print(f"  {kind} step {step}: loss {values['loss']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)

        res = pretrain(tokenizer, train_blocks, config, causal=causal, device=device, progress=False, callbacks=[report])
        seconds = time.perf_counter() - t0
        # evaluate exactly what ships: the float16 weights, read back
        tmp_name = f"{args.name}-{kind}"
        record = {
            "pretrain_config": asdict(config),
            "command": f"python -m lfd13.mlm --steps {args.steps}" + (f" --vocab {args.vocab.name}" if args.vocab else ""),
            "torch": torch.__version__,
            "seconds": round(seconds, 1),
            "history": {"loss": [round(v, 4) for v in res.history["loss"]], "acc": [round(v, 4) for v in res.history["acc"]]},
        }
        save_checkpoint(tmp_name, res.model, tokenizer, record=record, directory=args.out)
        model, _, _ = load_checkpoint(tmp_name, directory=args.out, device=device)
        acc = masked_token_accuracy(model, evalb, originals=test_blocks.repeat(4, 1))
        record["held_out_masked_accuracy"] = round(acc, 4)
        record["unigram_baseline"] = round(base, 4)
        save_checkpoint(tmp_name, res.model, tokenizer, record=record, directory=args.out)
        print(f"{kind}: {seconds:.0f} s, final loss {res.history.last('loss', 50):.3f}, held-out accuracy at masked positions {acc:.4f} ({acc / base:.2f}x baseline)")


if __name__ == "__main__":
    main()
