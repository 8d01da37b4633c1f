"""Supervised fine-tuning (SFT) of a causal language model on instruction → response pairs.

SFT is the first of the three steps that turned GPT-3 into InstructGPT/ChatGPT
(Ouyang et al. 2022): the model is trained, with the ordinary next-token loss, on
demonstrations written for prompts — and only the *response* is scored. The prompt's
tokens get the label ``-100``, which PyTorch's cross-entropy (and every transformers
LM head) ignores, so the model learns to answer instructions rather than to imitate
them. Steps two and three (a reward model, then PPO) are not reproduced here.

At course scale the instructions are generated: ``reverse``, ``upper``, ``length``
and ``sort`` of a random lower-case word, written character by character, so a tiny
``GPT2LMHeadModel`` (2 layers, width 128) with a character vocabulary learns them on a
CPU in a minute. Exact match on *held-out* words measures what it learned.

Sequences: ``<prompt><response><eos>`` with a prompt such as ``"reverse:abc>"`` and
the response ``"cba"``. Shapes: B batch, L characters, V vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from lfd13.runtime import get_device, seeded
from lfd13.train import History, Recipe, train, trim_padding

IGNORE_INDEX = -100  # labels with this value are ignored by the loss

#: The instructions and how to carry them out.
TASKS: dict[str, Callable[[str], str]] = {
    "reverse": lambda w: w[::-1],
    "upper": lambda w: w.upper(),
    "length": lambda w: str(len(w)),
    "sort": lambda w: "".join(sorted(w)),
}
SEPARATOR = ":"  # between instruction and word
PROMPT_END = ">"  # last character of every prompt


class CharTokenizer:
    """A character vocabulary: ``[PAD]`` = 0, ``[EOS]`` = 1, then one id per character."""

    pad_id = 0
    eos_id = 1

    def __init__(self, chars: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:>") -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("the character list has duplicates")
        self.chars = chars
        self.index = {c: i + 2 for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 2

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary {self.chars!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Characters up to the first ``[EOS]``; padding is skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.pad_id:
                out.append(self.chars[i - 2])
        return "".join(out)


@dataclass(frozen=True)
class Example:
    """One demonstration: an instruction prompt and the response it should get."""

    prompt: str  # e.g. "reverse:abc>"
    response: str  # e.g. "cba"


def make_prompt(task: str, word: str) -> str:
    """The prompt text for applying ``task`` to ``word``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    return f"{task}{SEPARATOR}{word}{PROMPT_END}"


def _random_word(rng: random.Random, min_len: int, max_len: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(min_len, max_len)))


def make_examples(
    n: int,
    *,
    seed: int,
    tasks: Sequence[str] = tuple(TASKS),
    min_len: int = 3,
    max_len: int = 8,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[Example]:
    """``n`` random demonstrations, tasks drawn uniformly, words of ``min_len``–``max_len`` letters.

    Args:
        exclude: words never used (pass the held-out words when making training data).
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {sorted(TASKS)}")
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        word = _random_word(rng, min_len, max_len)
        if word in exclude:
            continue
        task = rng.choice(list(tasks))
        out.append(Example(make_prompt(task, word), TASKS[task](word)))
    return out


def word_of(example: Example) -> str:
    """The word an example's instruction applies to."""
    return example.prompt.split(SEPARATOR, 1)[1][: -len(PROMPT_END)]


def encode_examples(
    examples: Sequence[Example], tokenizer: CharTokenizer, *, mask_prompt: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenise demonstrations for causal-LM training, right-padded.

    Args:
        examples: the demonstrations.
        tokenizer: the character vocabulary.
        mask_prompt: label the prompt ``-100`` so only the response (and ``[EOS]``) is
            learned — SFT as in InstructGPT. False scores every token.

    Returns:
        ``(input_ids [N, L], attention_mask [N, L], labels [N, L])``; labels equal the ids
        except ``-100`` on padding and, with ``mask_prompt``, on the prompt. (The LM head
        shifts them by one position itself.)
    """
    seqs, n_prompt = [], []
    for ex in examples:
        p = tokenizer.encode(ex.prompt)
        seqs.append(p + tokenizer.encode(ex.response) + [tokenizer.eos_id])
        n_prompt.append(len(p))
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    if mask_prompt:
        for i, k in enumerate(n_prompt):
            labels[i, :k] = IGNORE_INDEX
    return ids, mask, labels


@dataclass(frozen=True)
class TinyGPTConfig:
    """A GPT-2 of course size."""

    n_layer: int = 2  # transformer blocks
    n_embd: int = 128  # width
    n_head: int = 4  # attention heads
    n_positions: int = 32  # longest sequence (prompt + response + [EOS])


def tiny_gpt(tokenizer: CharTokenizer, config: TinyGPTConfig = TinyGPTConfig(), *, seed: int = 0) -> GPT2LMHeadModel:
    """A randomly initialised ``GPT2LMHeadModel`` over the character vocabulary."""
    gpt_config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=tokenizer.eos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
    )
    with seeded(seed):
        return GPT2LMHeadModel(gpt_config).eval()


def lm_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One step for :func:`lfd13.train.fit`: next-token cross-entropy on the labelled positions."""
    # the whole set is padded to its longest demonstration; causal attention never looks right,
    # so cutting the columns no row of this batch uses changes no real token's output
    input_ids, attention_mask, labels = batch
    attention_mask, input_ids, labels = trim_padding(attention_mask, input_ids, labels)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


#: The SFT recipe of the book (AdamW, warm-up, cosine; see :class:`lfd13.train.Recipe`), and one for tests.
SFT_DEMO = Recipe(steps=500, lr=3e-3, batch_size=64, weight_decay=0.01, warmup=50, betas=(0.9, 0.98), max_grad_norm=1.0)
SFT_TINY = Recipe(steps=5, lr=3e-3, batch_size=8, weight_decay=0.01, warmup=1, betas=(0.9, 0.98), max_grad_norm=1.0)
#: Generated training demonstrations in the book's SFT run.
N_TRAIN = 20_000


def train_sft(
    model: GPT2LMHeadModel,
    examples: Sequence[Example],
    tokenizer: CharTokenizer,
    recipe: Recipe = SFT_DEMO,
    *,
    mask_prompt: bool = True,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> History:
    """Supervised fine-tuning of ``model`` on demonstrations with :func:`lfd13.train.train`.

    Args:
        mask_prompt: loss on the response only (True, InstructGPT's SFT) or on every token.
    """
    data = encode_examples(examples, tokenizer, mask_prompt=mask_prompt)
    if data[0].shape[1] > model.config.n_positions:
        raise ValueError(f"sequences of {data[0].shape[1]} tokens exceed the model's n_positions={model.config.n_positions}")
    return train(model, data, lm_step, recipe, seed=seed, device=device, desc="SFT")


@torch.no_grad()
def generate(
    model: GPT2LMHeadModel,
    prompts: Sequence[str],
    tokenizer: CharTokenizer,
    *,
    max_new_tokens: int = 10,
    device: torch.device | str | None = None,
) -> list[str]:
    """Greedy decoding: the most likely next character until ``[EOS]`` or ``max_new_tokens``.

    Prompts are left-padded into one batch; position ids count from each prompt's first
    real character, as in training.

    Returns:
        One response per prompt (the generated characters, without the prompt and ``[EOS]``).
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device).eval()
    encoded = [tokenizer.encode(p) for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :] = torch.tensor(e)
        mask[i, width - len(e) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    done = torch.zeros(len(encoded), dtype=torch.bool, device=device)
    steps = min(max_new_tokens, model.config.n_positions - width)
    for _ in range(steps):
        positions = (mask.cumsum(1) - 1).clamp(min=0)  # (B, L)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]  # (B, V)
        logits[:, tokenizer.pad_id] = float("-inf")
        nxt = logits.argmax(-1).masked_fill(done, tokenizer.pad_id)
        ids = torch.cat([ids, nxt[:, None]], 1)
        mask = torch.cat([mask, (~done).long()[:, None]], 1)
        done |= nxt == tokenizer.eos_id
        if bool(done.all()):
            break
    return [tokenizer.decode(row[width:].tolist()) for row in ids.cpu()]


def exact_match(
    model: GPT2LMHeadModel,
    examples: Sequence[Example],
    tokenizer: CharTokenizer,
    *,
    batch_size: int = 500,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Share of examples whose greedy response equals the reference exactly, overall and per task.

    Returns:
        ``{"all": acc, "reverse": acc, …}``.
    """
    if not examples:
        raise ValueError("no examples to evaluate")
    hits: dict[str, list[bool]] = {}
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        outs = generate(model, [e.prompt for e in chunk], tokenizer, max_new_tokens=12, device=device)
        for ex, out in zip(chunk, outs):
            hits.setdefault(ex.prompt.split(SEPARATOR, 1)[0], []).append(out == ex.response)
    every = [h for v in hits.values() for h in v]
    return {"all": sum(every) / len(every), **{t: sum(v) / len(v) for t, v in sorted(hits.items())}}
