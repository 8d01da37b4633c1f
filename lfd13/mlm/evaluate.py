"""How well a (masked or causal) LM predicts hidden tokens, and what it guesses for a blank.

The yardstick is the accuracy at held-out masked positions, against the *unigram baseline*
(always guessing the most frequent token: what a model that ignores the context can do).

Shapes: N blocks, L tokens, V vocabulary; ``labels`` hold -100 where nothing was selected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BertTokenizer, PreTrainedModel

from lfd13.evaluation import Comparison
from lfd13.mlm.model import _encoder_and_head
from lfd13.runtime import IGNORE_INDEX
from lfd13.mlm.tokenizer import SPECIAL_TOKENS


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
        sel = labels[i : i + batch_size] != IGNORE_INDEX  # (b, L)
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
    sel = labels != IGNORE_INDEX
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
    sel = labels != IGNORE_INDEX
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
    sel = labels != IGNORE_INDEX
    correct = ((pred == labels) & sel).sum(0).float()
    count = sel.sum(0)
    return correct / count.clamp(min=1).where(count > 0, torch.tensor(float("nan"))), count


def grouped_difference(
    correct_a: torch.Tensor, correct_b: torch.Tensor, groups: torch.Tensor, *, n_boot: int = 2000, seed: int = 0
) -> Comparison:
    """Accuracy of ``a`` minus accuracy of ``b`` on the same scored tokens, with a 95 % interval over groups.

    Tokens of one group (a document, a block masked several times) are not independent, so the
    interval resamples whole groups with replacement (a paired cluster bootstrap, percentile
    interval), never single tokens. It counts the evaluation text's sampling noise only: each
    model is one training run, so ``n`` of the result is 1.

    Args:
        correct_a: [M] bool, whether model a got each scored token right.
        correct_b: [M] bool, the same for model b, token for token.
        groups: [M] int, the independent unit each token belongs to.

    Returns:
        A :class:`~lfd13.evaluation.Comparison` (fractions), ``n = 1``.
    """
    a, b, g = correct_a.flatten().double(), correct_b.flatten().double(), groups.flatten()
    if not (len(a) == len(b) == len(g)) or len(a) == 0:
        raise ValueError(f"correct_a, correct_b and groups must be non-empty and of equal length, got {len(a)}, {len(b)}, {len(g)}")
    ids, g = torch.unique(g, return_inverse=True)
    if len(ids) < 2:
        raise ValueError("the interval needs at least two groups to resample")
    count = torch.bincount(g, minlength=len(ids)).double()  # tokens per group
    diff = torch.bincount(g, weights=a - b, minlength=len(ids))  # summed a - b per group
    draws = torch.randint(len(ids), (n_boot, len(ids)), generator=torch.Generator().manual_seed(seed))
    boot = diff[draws].sum(1) / count[draws].sum(1)  # (n_boot,)
    low, high = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=boot.dtype)).tolist()
    return Comparison(float(diff.sum() / count.sum()), low, high, 1)


@torch.no_grad()
def _blank_distributions(model: PreTrainedModel, tokenizer: BertTokenizer, text: str) -> torch.Tensor:
    """The model's distribution over the vocabulary at each ``[MASK]`` of ``text``: [K, V], special tokens zeroed."""
    enc = tokenizer(text, return_tensors="pt")
    ids = enc["input_ids"]
    where = (ids[0] == tokenizer.mask_token_id).nonzero().flatten()
    if len(where) == 0:
        raise ValueError(f"text has no {tokenizer.mask_token}: {text!r}")
    model.eval()
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device)).logits[0].cpu()  # (L, V)
    causal = bool(getattr(model.config, "is_decoder", False))
    probs = logits[where - 1 if causal else where].softmax(-1)  # (K, V); a causal LM predicts i from the state at i-1
    probs[:, : len(SPECIAL_TOKENS)] = 0.0
    return probs


def fill_mask(model: PreTrainedModel, tokenizer: BertTokenizer, text: str, *, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-``k`` guesses (token, probability) for each ``[MASK]`` in ``text``.

    A causal model reads only the words left of each ``[MASK]`` (it predicts the blank from the
    text before it), which is exactly its limitation.
    """
    out = []
    for probs in _blank_distributions(model, tokenizer, text):
        top = probs.topk(k)
        out.append([(tokenizer.convert_ids_to_tokens(int(j)), round(float(p), 3)) for p, j in zip(top.values, top.indices)])
    return out


def word_probabilities(model: PreTrainedModel, tokenizer: BertTokenizer, text: str, words: Sequence[str]) -> list[float]:
    """The probability the model gives each of ``words`` at the single ``[MASK]`` of ``text``.

    Scores a chosen answer rather than the top guesses: ``P("dog" | "the [MASK] barked …")``.
    A causal model reads only the words left of the blank.

    Args:
        words: candidate words, each one token of the vocabulary.
    """
    ids = [tokenizer.convert_tokens_to_ids(w) for w in words]
    unknown = [w for w, i in zip(words, ids) if i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"not single tokens of the vocabulary: {unknown}; pick words the tokenizer keeps whole")
    probs = _blank_distributions(model, tokenizer, text)
    if len(probs) != 1:
        raise ValueError(f"text must have exactly one {tokenizer.mask_token}, got {len(probs)}: {text!r}")
    return [float(probs[0, i]) for i in ids]


__all__ = ["accuracy_by_position", "fill_mask", "grouped_difference", "masked_token_accuracy", "predict_masked", "unigram_baseline", "word_probabilities"]
