"""Next-sentence prediction (NSP): BERT's second pre-training objective, its inputs and a probe.

Devlin et al. (2018) also trained BERT to tell whether sentence B follows sentence A
(IsNext) or was drawn from another document (NotNext), half and half, reading
``[CLS] A [SEP] B [SEP]`` with segment ids 0 / 1 and classifying the final ``[CLS]`` vector.

This package does not pre-train with NSP; it measures how much of the task a frozen encoder
already solves: :func:`pair_features` gives the ``[CLS]`` vector of each pair (for a linear head, e.g.
:func:`lfd13.evaluation.linear_probe`), and :func:`sentence_similarity` the cosine of A's and
B's separate sentence embeddings, a pure topic cue (a random B from another document is
usually about something else; Liu et al. 2019, RoBERTa, argue that this makes NSP easy).

Shapes: N pairs, L tokens, D hidden width.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import BertTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lfd13.pretrained import mean_pool


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


def distinct_balanced(pairs: Sequence[SentencePair]) -> list[SentencePair]:
    """Drop repeated pairs, then keep as many IsNext as NotNext pairs (the first of each, in order).

    Sampled pairs repeat when the documents are few (there are only so many true next
    sentences); an evaluation set needs each pair once, and exactly half of each label for
    50 % to be the chance level.
    """
    unique = list(dict.fromkeys(pairs))
    k = min(sum(p.is_next for p in unique), sum(not p.is_next for p in unique))
    kept, count = [], {True: 0, False: 0}
    for p in unique:
        if count[p.is_next] < k:
            kept.append(p)
            count[p.is_next] += 1
    return kept


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


def nsp_labels(pairs: Sequence[SentencePair]) -> torch.Tensor:
    """The labels of ``pairs`` [N] in transformers' convention: 0 = IsNext, 1 = NotNext."""
    return torch.tensor([0 if p.is_next else 1 for p in pairs])


def _device(model: PreTrainedModel) -> torch.device:
    return next(model.parameters()).device


def _by_length(texts: Sequence[str]) -> list[int]:
    """Indices of ``texts``, longest first (batches of similar length need little padding)."""
    return sorted(range(len(texts)), key=lambda i: -len(texts[i]))


@torch.no_grad()
def pair_features(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[SentencePair],
    *,
    pooling: str = "cls",
    max_len: int = 64,
    batch_size: int = 64,
) -> torch.Tensor:
    """The encoder's last-layer vector of each pair, read as one sequence ``[CLS] A [SEP] B [SEP]``.

    The encoder is frozen (eval mode, no gradients); segment ids are 0 for A, 1 for B.

    Args:
        pooling: ``"cls"``, the vector at position 0 (what BERT's NSP head classifies), or
            ``"mean"``, the mean over the pair's tokens (:func:`lfd13.pretrained.mean_pool`).

    Returns:
        [N, D] float features on the CPU, in the order of ``pairs``.
    """
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    if not pairs:
        raise ValueError("pairs is empty")
    encoder.eval()
    order = _by_length([p.first + p.second for p in pairs])
    out = torch.empty(0)
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        enc = tokenizer([pairs[j].first for j in rows], [pairs[j].second for j in rows], truncation="longest_first",
                        max_length=max_len, padding=True, return_tensors="pt").to(_device(encoder))
        hidden = encoder(**enc).last_hidden_state  # (b, L, D)
        f = hidden[:, 0] if pooling == "cls" else mean_pool(hidden, enc["attention_mask"])  # (b, D)
        if i == 0:
            out = torch.empty(len(pairs), f.shape[-1])
        out[rows] = f.float().cpu()
    return out


@torch.no_grad()
def sentence_similarity(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[SentencePair],
    *,
    max_len: int = 64,
    batch_size: int = 128,
    cache: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cosine similarity of A's and B's sentence embeddings, each sentence encoded on its own.

    A sentence embedding is the mean of the encoder's last-layer token vectors
    (:func:`lfd13.pretrained.mean_pool`, as sentence-transformers does). The two sentences never
    see each other, so the score measures only how alike they are (topic, vocabulary, style).

    Args:
        cache: sentence -> unit embedding [D], from earlier calls with the same encoder; the
            sentences it holds are not encoded again, and the new ones are added to it.

    Returns:
        [N] cosine similarities on the CPU.
    """
    if not pairs:
        raise ValueError("pairs is empty")
    encoder.eval()
    table = {} if cache is None else cache  # sentence -> unit vector [D]
    sentences = sorted({s for p in pairs for s in (p.first, p.second)} - table.keys(), key=lambda t: (-len(t), t))  # longest first
    vectors = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[i : i + batch_size], truncation=True, max_length=max_len, padding=True,
                        return_tensors="pt").to(_device(encoder))
        hidden = encoder(**enc).last_hidden_state  # (b, L, D)
        vectors.append(torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1).float().cpu())
    table.update(zip(sentences, torch.cat(vectors)) if vectors else ())
    return torch.stack([table[p.first] @ table[p.second] for p in pairs])


__all__ = ["SentencePair", "distinct_balanced", "encode_pair", "nsp_labels", "nsp_pairs", "pair_features", "sentence_similarity"]
