"""Chapter 5b's character GPT-2: next-character pre-training on the course corpus, before SFT.

The model (:func:`lfd13.sft.build_char_gpt`, preset ``gpt-nano-char``) learns to predict the next
character of the corpus's training documents, cut into overlapping windows
(:func:`corpus_blocks`); the held-out documents measure it in bits per character,
beside a unigram model of the training text (character frequencies alone). It ships as the
checkpoint ``gpt-nano-char``; its JSON holds the settings and these measurements.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lfd13 import shipped, sft
from lfd13.data import load_corpus
from lfd13.experiments import Entry, command
from lfd13.runtime import IGNORE_INDEX, get_device, preset
from lfd13.train import History, Recipe, train

__all__ = ["NAME", "PLAIN", "clean_text", "corpus_blocks", "Settings", "SETTINGS", "TINY", "Result", "model_config", "held_out_loss",
           "train_char_gpt", "run", "load",
           "files", "write", "check", "ENTRIES"]

#: The checkpoint this experiment writes.
NAME = sft.PRETRAINED


#: Typographic characters of the corpus written as their plain equivalents; others outside CHARS are dropped.
PLAIN = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2013": "-", "`": "'"}


def clean_text(text: str, chars: str = sft.CHARS) -> str:
    """``text`` in the vocabulary ``chars``: curly quotes and dashes made plain, other unknown characters dropped, spaces collapsed."""
    known = set(chars)
    plain = "".join(c for c in (PLAIN.get(c, c) for c in text) if c in known)
    return " ".join(plain.split())


def corpus_blocks(
    texts: Sequence[str], tokenizer: sft.CharTokenizer, *, block: int, stride: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows of ``block`` characters over the documents, for next-character pre-training.

    Each document is cleaned (:func:`clean_text`) and ended by ``[EOS]``; the documents are
    concatenated and cut into windows that start every ``stride`` characters (default
    ``block``: no overlap). Every position is scored.

    Returns:
        ``(input_ids [N, block], attention_mask [N, block], labels [N, block])``, the format of
        :func:`encode_examples`, so :func:`lm_step` trains on them.
    """
    stride = stride or block
    if block < 2 or stride < 1:
        raise ValueError(f"need block >= 2 and stride >= 1, got block={block}, stride={stride}")
    stream = [i for t in texts for i in tokenizer.encode(clean_text(t, tokenizer.chars)) + [tokenizer.eos_id]]
    if len(stream) < block:
        raise ValueError(f"the texts hold {len(stream)} characters, fewer than one block of {block}")
    ids = torch.tensor(stream, dtype=torch.long).unfold(0, block, stride).contiguous()  # (N, block)
    return ids, torch.ones_like(ids), ids.clone()


@dataclass(frozen=True)
class Settings:
    """The pre-training run: data, model and recipe."""

    preset: str = "gpt-nano-char"  # model preset in lfd13.sft.PRESETS (n_positions is set to block)
    held_out: float = 0.1  # share of documents per source held out (lfd13.data.load_corpus)
    split_seed: int = 0  # seed of that split
    block: int = 32  # characters per training window (the model's n_positions)
    stride: int = 16  # a new window every 16 characters: consecutive windows overlap by half
    seed: int = 0  # seeds the initialisation, the batch order and dropout
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=2000, lr=3e-3, batch_size=64, weight_decay=0.1,
                                                          warmup=100, betas=(0.9, 0.98), max_grad_norm=1.0))


#: The shipped run, and a smoke run of a few steps of a smaller model (under the same checkpoint name).
SETTINGS = Settings()
TINY = Settings(preset="gpt-pico-char",
                recipe=Recipe(steps=3, lr=3e-3, batch_size=8, weight_decay=0.1, warmup=1, betas=(0.9, 0.98), max_grad_norm=1.0))


@dataclass(frozen=True)
class Result:
    """What the pre-training measured (stored in the checkpoint's JSON as ``result``)."""

    final_loss: float  # mean training loss of the last 50 steps (nats per character)
    held_out_loss: float  # next-character cross-entropy on the held-out documents (nats per character)
    held_out_bits_per_char: float  # the same in bits
    unigram_bits_per_char: float  # entropy of the training text's character frequencies (bits)
    seconds: float  # training time
    loss_per_50_steps: tuple[float, ...]  # the training loss curve, mean per 50 steps
    torch: str  # the torch version that trained it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"loss_per_50_steps": list(self.loss_per_50_steps)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(**(d | {"loss_per_50_steps": tuple(d["loss_per_50_steps"])}))


@torch.no_grad()
def held_out_loss(
    model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], *, batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """Mean next-token cross-entropy (nats per character) over the labelled positions of ``data`` [N, L] each (eval mode)."""
    device = torch.device(device) if device is not None else get_device()
    model.to(device).eval()
    total, count = 0.0, 0
    for i in range(0, len(data[0]), batch_size):
        ids, mask, labels = (t[i : i + batch_size].to(device) for t in data)
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        total += float(model(input_ids=ids, attention_mask=mask, labels=labels).loss) * n
        count += n
    return total / count


def model_config(settings: Settings) -> sft.CharGPTConfig:
    """The model's configuration: the preset, with a window of ``settings.block`` characters."""
    return preset(sft.PRESETS, settings.preset, what="character GPT", n_positions=settings.block)


def _per_50_steps(history: History) -> tuple[float, ...]:
    losses = history["loss"]
    return tuple(round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 5) for i in range(0, len(losses), 50))


def train_char_gpt(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> tuple[Any, Result]:
    """Pre-train the character GPT-2 on the corpus's training documents; measure it on the held-out ones.

    Returns:
        ``(model on the CPU, result)``.
    """
    corpus = load_corpus(held_out=settings.held_out, seed=settings.split_seed)
    tokenizer = sft.CharTokenizer()
    train_data = corpus_blocks(corpus.texts("train"), tokenizer, block=settings.block, stride=settings.stride)
    test_data = corpus_blocks(corpus.texts("test"), tokenizer, block=settings.block)
    counts = Counter(train_data[0][:: settings.block // settings.stride].flatten().tolist())  # non-overlapping windows
    n = sum(counts.values())
    unigram_bits = -sum(c / n * math.log2(c / n) for c in counts.values())
    model = sft.build_char_gpt(model_config(settings), seed=settings.seed)
    start = time.perf_counter()
    history = train(model, train_data, sft.lm_step, settings.recipe, seed=settings.seed, device=device, progress=progress,
                    desc="char LM")
    seconds = time.perf_counter() - start
    loss = held_out_loss(model, test_data, device=device)
    result = Result(final_loss=round(history.last("loss", 50), 4), held_out_loss=round(loss, 4),
                    held_out_bits_per_char=round(loss / math.log(2), 4), unigram_bits_per_char=round(unigram_bits, 4),
                    seconds=round(seconds, 1), loss_per_50_steps=_per_50_steps(history), torch=torch.__version__)
    return model.cpu(), result


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Pre-train and measure (the model itself is discarded; :func:`write` saves it)."""
    return train_char_gpt(settings, device=device, progress=progress)[1]


def load(directory: Path | str | None = None) -> Result:
    """What the shipped pre-training measured, from ``gpt-nano-char.json`` (hashes checked)."""
    _, _, info = sft.load_char_gpt(NAME, directory=directory)
    return Result.from_dict(info.result)


def files(settings: Settings) -> tuple[str, ...]:
    """The files :func:`write` creates (the same names for every settings)."""
    return (f"{NAME}.safetensors", f"{NAME}.json")


def write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> None:
    """Pre-train and save the checkpoint :data:`NAME` in ``checkpoints`` (``results`` is unused)."""
    model, result = train_char_gpt(settings, device=device, progress=progress)
    shipped.save_model(NAME, model, kind=sft.CHECKPOINT_KIND, command=command("charlm"), config=asdict(model_config(settings)),
                       recipe=asdict(settings), result=result.to_dict(), directory=checkpoints)


def check(*, checkpoints: Path, results: Path) -> None:
    """Load the checkpoint written into ``checkpoints`` (hashes checked, weights loaded strictly)."""
    sft.load_char_gpt(NAME, directory=checkpoints)


#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (
    Entry(name="charlm", doc="Chapter 5b: the character GPT-2 pre-trained on the corpus (gpt-nano-char)",
          settings=SETTINGS, tiny=TINY, files=files, write=write,
          check=check),
)
