"""Supervised fine-tuning (SFT) of a pre-trained causal language model on instruction → response pairs.

SFT is the first of the three steps that turned GPT-3 into InstructGPT/ChatGPT
(Ouyang et al. 2022): a pre-trained language model is fine-tuned, with the ordinary
next-token loss, on demonstrations written for prompts. Common practice (Stanford
Alpaca, TRL's ``completion_only_loss``) scores only the *response*: the prompt's tokens
get the label :data:`~lfd13.runtime.IGNORE_INDEX` (-100), which PyTorch's cross-entropy
(and every transformers LM head) ignores. Shi et al. (2024) report cases where a loss on the
instruction too helps; :class:`SFTLoss` weights the prompt's terms and chooses the normaliser.
Steps two and three (a reward model, then PPO) are not reproduced here.

At course scale everything is characters: a tiny ``GPT2LMHeadModel`` (:func:`build_char_gpt`,
preset ``"gpt-nano-char"``: 2 layers, width 128) over :data:`CHARS` is pre-trained on English
text cut into windows (the shipped checkpoint ``gpt-nano-char``, read by
:func:`load_char_gpt`), then fine-tuned on generated instructions: ``reverse``, ``upper``,
``length`` and ``sort`` of a random string of lower-case letters. Exact match on *held-out*
strings (:func:`exact_match`, greedy decoding with transformers' ``generate``) measures what it learned.

Sequences: ``<prompt><response><eos>`` with a prompt such as ``"reverse:abc>"`` and
the response ``"cba"``. Shapes: B batch, L characters, V vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from lfd13 import shipped
from lfd13.runtime import IGNORE_INDEX, get_device, preset, seeded
from lfd13.train import History, Recipe, train, trim_padding

__all__ = [
    "CHARS", "TASK_CHARS", "TEXT_CHARS", "TASKS", "SEPARATOR", "PROMPT_END", "MIN_LEN", "MAX_LEN",
    "CharTokenizer", "Example", "make_prompt", "make_examples", "word_of", "encode_examples",
    "CharGPTConfig", "PRESETS", "build_char_gpt", "CHECKPOINT_KIND", "PRETRAINED", "load_char_gpt",
    "lm_step", "SFTLoss", "RESPONSE_ONLY", "EVERY_TOKEN", "EVERY_TOKEN_PER_RESPONSE", "sft_step", "sft_data", "train_sft",
    "generate", "response_scores", "exact_match",
]  # fmt: skip

#: The instructions and how to carry them out.
TASKS: dict[str, Callable[[str], str]] = {
    "reverse": lambda w: w[::-1],
    "upper": lambda w: w.upper(),
    "length": lambda w: str(len(w)),
    "sort": lambda w: "".join(sorted(w)),
}
SEPARATOR = ":"  # between instruction and word
PROMPT_END = ">"  # last character of every prompt
MIN_LEN, MAX_LEN = 3, 8  # letters in the strings the instructions apply to (by default)
#: The SFT tasks' characters: letters, digits, the separator and the prompt's end.
TASK_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:>"
#: What English text adds: space and punctuation.
TEXT_CHARS = " .,;!?'\"-()"
#: The character vocabulary shared by pre-training and SFT.
CHARS = TASK_CHARS + TEXT_CHARS


class CharTokenizer:
    """A character vocabulary: ``[PAD]`` = 0, ``[EOS]`` = 1, then one id per character."""

    pad_id = 0
    eos_id = 1

    def __init__(self, chars: str = CHARS) -> None:
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
        ids = [int(i) for i in ids]
        ids = ids[: ids.index(self.eos_id)] if self.eos_id in ids else ids
        return "".join(self.chars[i - 2] for i in ids if i != self.pad_id)


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


def make_examples(n: int, *, seed: int, tasks: Sequence[str] = tuple(TASKS), min_len: int = MIN_LEN, max_len: int = MAX_LEN,
                  exclude: set[str] | frozenset[str] = frozenset()) -> list[Example]:
    """``n`` random demonstrations, tasks drawn uniformly, on strings of ``min_len``–``max_len`` random letters.

    The strings are random letters ("ynbiqp"), not English words; "word" below means such a string.

    Args:
        exclude: strings never used (pass the held-out ones when making training data).
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
    """The letter string an example's instruction applies to."""
    return example.prompt.split(SEPARATOR, 1)[1][: -len(PROMPT_END)]


def encode_examples(
    examples: Sequence[Example], tokenizer: CharTokenizer, *, mask_prompt: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenise demonstrations for causal-LM training, right-padded.

    Args:
        examples: the demonstrations.
        tokenizer: the character vocabulary.
        mask_prompt: label the prompt ``IGNORE_INDEX`` (-100) so only the response (and ``[EOS]``) is
            learned, the common practice for SFT. False scores every token.

    Returns:
        ``(input_ids [N, L], attention_mask [N, L], labels [N, L])``; labels equal the ids
        except ``IGNORE_INDEX`` on padding and, with ``mask_prompt``, on the prompt. (The LM head
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
class CharGPTConfig:
    """A GPT-2 of course size over a character vocabulary."""

    chars: str = CHARS  # the vocabulary's characters (ids 2, 3, …; see CharTokenizer)
    n_layer: int = 2  # transformer blocks
    n_embd: int = 128  # width
    n_head: int = 4  # attention heads
    n_positions: int = 32  # longest sequence (prompt + response + [EOS]; the pre-training window)


#: Named configurations: the shipped model's, and a smaller one for tests and smoke runs.
PRESETS: dict[str, CharGPTConfig] = {
    "gpt-nano-char": CharGPTConfig(),
    "gpt-pico-char": CharGPTConfig(n_layer=1, n_embd=16, n_head=2),
}


def build_char_gpt(config: CharGPTConfig | str = "gpt-nano-char", *, seed: int, **overrides: Any) -> GPT2LMHeadModel:
    """A randomly initialised ``GPT2LMHeadModel`` over ``config.chars`` (GPT-2's dropout 0.1), in eval mode.

    Args:
        config: a :class:`CharGPTConfig` or the name of one in :data:`PRESETS`.
        seed: seeds the initialisation.
        overrides: fields of the config to replace (e.g. ``n_positions=64``).

    ``[PAD]`` and ``[EOS]`` get the ids of :class:`CharTokenizer`; ``[EOS]`` also starts a text.
    """
    config = preset(PRESETS, config, what="character GPT", **overrides) if isinstance(config, str) else replace(config, **overrides)
    gpt_config = GPT2Config(vocab_size=CharTokenizer(config.chars).vocab_size, n_positions=config.n_positions,
                            n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head,
                            bos_token_id=CharTokenizer.eos_id, eos_token_id=CharTokenizer.eos_id,
                            pad_token_id=CharTokenizer.pad_id)
    with seeded(seed):
        return GPT2LMHeadModel(gpt_config).eval()


#: The ``kind`` of a character GPT's checkpoint (its JSON's ``config`` holds the :class:`CharGPTConfig` fields).
CHECKPOINT_KIND = "sft"
#: The shipped character GPT-2, pre-trained on the course corpus.
PRETRAINED = "gpt-nano-char"


def load_char_gpt(
    name_or_path: str | Path = PRETRAINED, *, directory: Path | str | None = None
) -> tuple[GPT2LMHeadModel, CharTokenizer, shipped.CheckpointInfo]:
    """Load a character GPT-2 checkpoint (default: the shipped ``gpt-nano-char``) after checking its sha256.

    Returns:
        ``(model on the CPU in eval mode, its tokenizer, info)``; ``info.result`` holds what its pre-training measured.
    """

    def build(info: shipped.CheckpointInfo, folder: Path) -> GPT2LMHeadModel:
        return build_char_gpt(CharGPTConfig(**info.config), seed=0)

    model, info = shipped.load_model(name_or_path, kind=CHECKPOINT_KIND, build=build, directory=directory)
    return model, CharTokenizer(info.config["chars"]), info


def lm_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One step for :func:`lfd13.train.fit`: next-token cross-entropy, the mean over the labelled positions."""
    # the whole set is padded to its longest demonstration; causal attention never looks right,
    # so cutting the columns no row of this batch uses changes no real token's output
    input_ids, attention_mask, labels = batch
    attention_mask, input_ids, labels = trim_padding(attention_mask, input_ids, labels)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


@dataclass(frozen=True)
class SFTLoss:
    """Which tokens the SFT loss scores, and what the weighted sum is divided by.

    The loss of a batch is ``(sum of response terms + prompt_weight * sum of prompt terms) / Z``,
    each term a next-token cross-entropy. ``Z`` is the number of response tokens
    (``per_response_token=True``) or the total weight, i.e. the mean over the scored tokens
    (False; what a transformers LM head computes from its labels). With ``prompt_weight=0``
    both are the response-only loss.
    """

    prompt_weight: float = 0.0  # weight of a prompt token's term; a response token's is 1
    per_response_token: bool = True  # Z = number of response tokens (True) or total weight (False)

    def __post_init__(self) -> None:
        if self.prompt_weight < 0:
            raise ValueError(f"prompt_weight must be >= 0, got {self.prompt_weight}")


#: The response only (common SFT practice); every token with the LM head's mean; every token,
#: divided by the number of response tokens, so the response's terms weigh what they weigh in the first.
RESPONSE_ONLY = SFTLoss(prompt_weight=0.0)
EVERY_TOKEN = SFTLoss(prompt_weight=1.0, per_response_token=False)
EVERY_TOKEN_PER_RESPONSE = SFTLoss(prompt_weight=1.0, per_response_token=True)


def sft_step(
    model: nn.Module, batch: tuple[torch.Tensor, ...], *, loss: SFTLoss = RESPONSE_ONLY
) -> dict[str, torch.Tensor]:
    """One SFT step for :func:`lfd13.train.fit` with the weighting ``loss``.

    Args:
        batch: ``(input_ids [B, L], attention_mask [B, L], labels [B, L], response [B, L])``; ``labels``
            is ``IGNORE_INDEX`` on padding only, ``response`` is True where the label belongs to the response
            (its characters and ``[EOS]``), as :func:`sft_data` builds it.

    Returns:
        A dict: ``loss``, the weighted loss; ``response_loss``, the mean over response tokens;
        ``prompt_loss``, the mean over prompt tokens (the two means are logged whatever the weighting).
    """
    input_ids, attention_mask, labels, response = batch
    attention_mask, input_ids, labels, response = trim_padding(attention_mask, input_ids, labels, response)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]  # (B, L-1, V)
    target, is_response = labels[:, 1:], response[:, 1:]  # position t predicts token t+1
    nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none")  # (B, L-1)
    is_prompt = (target != IGNORE_INDEX) & ~is_response
    n_response, n_prompt = is_response.sum(), is_prompt.sum()
    weighted = (nll * is_response).sum() + loss.prompt_weight * (nll * is_prompt).sum()
    total = n_response + loss.prompt_weight * n_prompt
    out = weighted / (n_response if loss.per_response_token else total)
    return {"loss": out, "response_loss": (nll * is_response).sum() / n_response,
            "prompt_loss": (nll * is_prompt).sum() / n_prompt.clamp(min=1)}


def sft_data(examples: Sequence[Example], tokenizer: CharTokenizer) -> tuple[torch.Tensor, ...]:
    """``(input_ids, attention_mask, labels, response)`` [N, L] for :func:`sft_step`: every real token labelled,
    ``response`` True on the response's labels (see :func:`encode_examples`)."""
    ids, mask, labels = encode_examples(examples, tokenizer, mask_prompt=False)
    _, _, response_labels = encode_examples(examples, tokenizer, mask_prompt=True)
    return ids, mask, labels, response_labels != IGNORE_INDEX


def train_sft(
    model: GPT2LMHeadModel, examples: Sequence[Example], tokenizer: CharTokenizer, recipe: Recipe, *,
    loss: SFTLoss = RESPONSE_ONLY, seed: int = 0, device: torch.device | str | None = None,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None, eval_every: int | None = None,
    progress: bool | None = None,
) -> History:
    """Supervised fine-tuning of ``model`` on demonstrations with :func:`lfd13.train.train` and :func:`sft_step`.

    Args:
        loss: which tokens are scored and how the sum is normalised (:class:`SFTLoss`).
        seed: seeds the batch order and dropout.
        evaluate, eval_every: as in :func:`lfd13.train.fit` (e.g. exact match every 40 steps).

    Returns:
        The history: per step ``loss``, ``response_loss`` and ``prompt_loss``; the evaluations in ``evals``.
    """
    data = sft_data(examples, tokenizer)
    if data[0].shape[1] > model.config.n_positions:
        raise ValueError(f"sequences of {data[0].shape[1]} tokens exceed the model's n_positions={model.config.n_positions}")

    def step(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return sft_step(m, batch, loss=loss)

    return train(model, data, step, recipe, seed=seed, device=device, evaluate=evaluate, eval_every=eval_every,
                 progress=progress, desc="SFT")


@torch.no_grad()
def generate(model: GPT2LMHeadModel, prompts: Sequence[str], tokenizer: CharTokenizer, *, max_new_tokens: int = 10,
             device: torch.device | str | None = None) -> list[str]:
    """Greedy decoding with transformers' ``model.generate``: the most likely next character until ``[EOS]``.

    Prompts are left-padded into one batch (``generate`` counts each prompt's positions from its
    first real character, as in training); ``[PAD]`` is never generated. At most
    ``max_new_tokens`` characters, fewer where the prompt and the response would exceed the
    model's ``n_positions``.

    Returns:
        One response per prompt (the generated characters, without the prompt and ``[EOS]``).
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device).eval()
    encoded = [tokenizer.encode(p) for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_id, dtype=torch.long)  # (B, L), left-padded
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :] = torch.tensor(e)
        mask[i, width - len(e) :] = 1
    budget = min(max_new_tokens, model.config.n_positions - width)
    if budget <= 0:
        return [""] * len(encoded)
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False, num_beams=1,
                         max_new_tokens=budget, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
                         suppress_tokens=[tokenizer.pad_id])  # (B, L + new)
    return [tokenizer.decode(row) for row in out[:, width:].tolist()]


@torch.no_grad()
def response_scores(
    model: GPT2LMHeadModel, examples: Sequence[Example], tokenizer: CharTokenizer, *, batch_size: int = 500,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """How well the model predicts each response token given the prompt and the *correct* earlier response tokens.

    A finer measure than :func:`exact_match`, which needs every character right in a row:
    teacher-forced, as in training, over the response's characters and its ``[EOS]``.

    Returns:
        A dict: ``accuracy``, the share of response tokens whose most likely prediction is right;
        ``loss``, the mean cross-entropy per response token (nats).
    """
    if not examples:
        raise ValueError("no examples to evaluate")
    device = torch.device(device) if device is not None else get_device()
    model.to(device).eval()
    hits, nll, count = 0, 0.0, 0
    for i in range(0, len(examples), batch_size):
        ids, mask, labels = (t.to(device) for t in encode_examples(examples[i : i + batch_size], tokenizer, mask_prompt=True))
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, L-1, V)
        target = labels[:, 1:]
        scored = target != IGNORE_INDEX
        hits += int(((logits.argmax(-1) == target) & scored).sum())
        nll += float(F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="sum"))
        count += int(scored.sum())
    return {"accuracy": hits / count, "loss": nll / count}


def exact_match(model: GPT2LMHeadModel, examples: Sequence[Example], tokenizer: CharTokenizer, *, batch_size: int = 500,
                device: torch.device | str | None = None) -> dict[str, float]:
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
