"""A WordPiece vocabulary for the course corpus, and the corpus cut into fixed-length blocks.

BERT reads WordPiece tokens (Wu et al. 2016): frequent words are one token, rare ones are
split into pieces (``##ing``). The vocabulary here (~4k tokens) is learned with Hugging Face
``tokenizers`` on the training documents and wrapped as a transformers ``BertTokenizer``.

Shapes: N blocks, L tokens per block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BertTokenizer

#: Special tokens, in the order of their ids 0..4 (as in BERT's vocabulary).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


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


def block_documents(tokenizer: BertTokenizer, texts: Sequence[str], *, max_len: int = 64) -> torch.Tensor:
    """Which document each block of :func:`make_blocks` (same arguments) was cut from.

    Blocks of one document share its topic and characters, so a document, not a block, is the
    independent unit when an interval is computed over held-out text.

    Returns:
        [N] document index (into ``texts``) of each block, in the order of ``make_blocks``.
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a list of documents, not a single string")
    body = max_len - 2
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return torch.tensor([d for d, doc in enumerate(ids) for _ in range(0, len(doc) - body + 1, body)], dtype=torch.long)


__all__ = ["SPECIAL_TOKENS", "block_documents", "make_blocks", "tokenizer_from_vocab", "train_wordpiece", "vocab_list"]
