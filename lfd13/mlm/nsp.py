"""Next-sentence prediction (NSP) inputs: BERT's second pre-training objective.

Devlin et al. (2018) also trained BERT to tell whether sentence B follows sentence A
(IsNext) or was drawn from another document (NotNext), half and half, reading
``[CLS] A [SEP] B [SEP]`` with segment ids 0 / 1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import BertTokenizer


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
