"""Masking for the masked-LM objective: transformers' own collator, seeded.

BERT selects 15 % of the tokens; a selected token becomes ``[MASK]`` (80 %), a random token
(10 %) or stays unchanged (10 %). That rule lives in transformers'
``DataCollatorForLanguageModeling``; lfd13 has no masking code of its own (masking is what
the course's assignment asks students to write).

Shapes: B or N blocks, L tokens; ``labels`` hold -100 where nothing was selected.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from transformers import BertTokenizer, DataCollatorForLanguageModeling


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


def evaluation_batch(tokenizer: BertTokenizer, blocks: torch.Tensor, *, seed: int = 1234, repeats: int = 4) -> dict[str, torch.Tensor]:
    """The fixed evaluation masks: ``repeats`` copies of ``blocks``, 15 % selected, every one a ``[MASK]``."""
    collator = mlm_collator(tokenizer, mask_replace_prob=1.0, random_replace_prob=0.0, seed=seed)
    return mask_batch(blocks.repeat(repeats, 1), collator)


__all__ = ["MaskedBatches", "evaluation_batch", "mask_batch", "mlm_collator"]
