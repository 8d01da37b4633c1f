"""Chapter 5's transformer runs: fine-tuning a pretrained encoder vs training it from scratch, with few labels.

The pretrained encoder (all-MiniLM-L6-v2, :func:`lfd13.pretrained.load_text_encoder`, offline) gets
a classification head and is fine-tuned on ``n`` labelled posts per class of the four-newsgroups
task, for every budget and label draw; the same architecture from a random initialisation is
trained once, at the largest budget, since it costs twice as much. Every run validates every few
steps on posts of the train pool that are never among the labelled ones and tests the best
weights (early stopping, :func:`lfd13.evaluation.train_and_test`). Test accuracies, chosen steps
and validation curves go to ``lfd13/results/finetune_comparison.json``; no weights are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lfd13 import shipped
from lfd13.data.newsgroups import TextSplit, load_newsgroups
from lfd13.evaluation import TrainTestResult, train_and_test
from lfd13.experiments import Entry, command
from lfd13.finetune import (
    FULL_FINETUNE,
    EncodedTexts,
    build_sequence_classifier,
    evaluate_accuracy,
    sequence_classification_step,
    tokenize_texts,
)
from lfd13.pretrained import DEFAULT_TEXT_ENCODER, load_text_encoder
from lfd13.sampling import split_indices
from lfd13.train import Recipe

__all__ = ["NAME", "RunKey", "planned_runs", "Settings", "SETTINGS", "TINY", "Result", "label_draw", "early_stopped_run",
           "run", "load", "files", "write", "check", "ENTRIES"]

#: The result file this experiment writes.
NAME = "finetune_comparison"


class RunKey(NamedTuple):
    """Which run: a tuple, so ``runs[16, 0, True]`` and ``for (n, seed, pretrained), run in runs.items()`` work."""

    n: int  # labelled posts per class
    seed: int  # the label draw, the head's initialisation (all of it from scratch) and the batch order
    pretrained: bool  # pretrained weights (True) or a random initialisation of the same architecture (False)


def planned_runs(budgets: Sequence[int], seeds: Sequence[int]) -> tuple[RunKey, ...]:
    """Pretrained at every budget with every seed; from scratch once, at the largest budget with the first seed."""
    return (*(RunKey(n, s, True) for n in budgets for s in seeds), RunKey(max(budgets), seeds[0], False))


@dataclass(frozen=True)
class Settings:
    """The runs, their data and their two recipes."""

    encoder: str = DEFAULT_TEXT_ENCODER  # the pretrained encoder, resolved offline by lfd13.pretrained
    budgets: tuple[int, ...] = (16, 64)  # labelled posts per class
    seeds: tuple[int, ...] = (0, 1)  # label draws of the pretrained runs (from scratch: the first one)
    n_val: int = 20  # validation posts per class, from the train pool, never among the labelled ones
    eval_every: int = 8  # validation period in steps; the weights of the best check are tested
    max_tokens: int = 64  # tokens per post, [CLS] and [SEP] included
    n_test_per_class: int = 40  # test posts per class: the first ones of lfd13.data.load_newsgroups
    # the default fine-tuning recipe for at most 32 steps
    pretrained_recipe: Recipe = field(default_factory=lambda: replace(FULL_FINETUNE, steps=32, warmup=3))
    # a random start: twice the steps and a larger learning rate
    scratch_recipe: Recipe = field(default_factory=lambda: replace(FULL_FINETUNE, steps=64, warmup=6, lr=5e-4))

    def recipe(self, pretrained: bool) -> Recipe:
        """The recipe of a pretrained run (True) or of a run from scratch (False)."""
        return self.pretrained_recipe if pretrained else self.scratch_recipe

    @property
    def runs(self) -> tuple[RunKey, ...]:
        """Every run, in the order they are made (:func:`planned_runs`)."""
        return planned_runs(self.budgets, self.seeds)


#: The shipped comparison, and a smoke run (two posts per class, two steps, short posts).
SETTINGS = Settings()
TINY = Settings(budgets=(2,), seeds=(0,), n_val=1, eval_every=1, max_tokens=12, n_test_per_class=2,
                pretrained_recipe=replace(FULL_FINETUNE, steps=2, warmup=1),
                scratch_recipe=replace(FULL_FINETUNE, steps=2, warmup=1, lr=5e-4))


@dataclass(frozen=True)
class Result:
    """Every run's test accuracy, chosen step and validation curve."""

    runs: dict[RunKey, TrainTestResult]  # in Settings.runs order; histories hold the validation curve and the seconds
    n_test: int  # test posts
    seconds: float  # every run together

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "n_test": self.n_test,
                "runs": [{**key._asdict(), **run.to_record()} for key, run in self.runs.items()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        runs = {RunKey(row["n"], row["seed"], row["pretrained"]): TrainTestResult.from_record(row) for row in d["runs"]}
        return cls(runs=runs, n_test=d["n_test"], seconds=d["seconds"])


def label_draw(labels: torch.Tensor, n: int, seed: int, settings: Settings = SETTINGS) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``n`` labelled posts per class and of the seed's validation posts (the same for every ``n``).

    Args:
        labels: [N] labels of the train pool.

    Returns:
        ``(train [n · C], validation [settings.n_val · C])`` indices into the pool, disjoint.
    """
    train_idx, _ = split_indices(labels, n, settings.n_val, seed=seed)
    _, val_idx = split_indices(labels, max(settings.budgets), settings.n_val, seed=seed)
    return train_idx, val_idx


def early_stopped_run(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: TextSplit,
    test: EncodedTexts,
    key: RunKey,
    settings: Settings = SETTINGS,
    *,
    device: torch.device | str | None = None,
) -> TrainTestResult:
    """One run: train on ``key.n`` posts per class, validate every ``settings.eval_every`` steps, test the best weights.

    Args:
        encoder, tokenizer: the pretrained encoder (copied, never modified) and its tokenizer.
        data: :func:`lfd13.data.load_newsgroups`'s split; the labelled and validation posts come from its train pool.
        test: the encoded test posts.
        key: which run.

    Returns:
        The :class:`lfd13.evaluation.TrainTestResult` (test accuracy, chosen step, validation curve).
    """
    def encode(idx: torch.Tensor) -> EncodedTexts:
        return tokenize_texts(tokenizer, [data.train_texts[i] for i in idx.tolist()], data.train_labels[idx],
                              max_length=settings.max_tokens)

    train_idx, val_idx = label_draw(data.train_labels, key.n, key.seed, settings)
    model = build_sequence_classifier(encoder, num_labels=data.num_classes, pretrained=key.pretrained, seed=key.seed)
    return train_and_test(model, encode(train_idx), test, settings.recipe(key.pretrained), seed=key.seed,
                          step=sequence_classification_step, score=evaluate_accuracy, device=device,
                          validation=encode(val_idx), eval_every=settings.eval_every)


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Every run of ``settings.runs`` (progress bars follow ``LFD13_PROGRESS``: the runs are early-stopped ones)."""
    data = load_newsgroups(n_test_per_class=settings.n_test_per_class)
    tokenizer, encoder = load_text_encoder(settings.encoder, device=device)
    test = tokenize_texts(tokenizer, data.test_texts, data.test_labels, max_length=settings.max_tokens)
    start = time.perf_counter()
    runs = {key: early_stopped_run(encoder, tokenizer, data, test, key, settings, device=device) for key in settings.runs}
    return Result(runs=runs, n_test=len(test.labels), seconds=round(time.perf_counter() - start, 1))


def load(directory: Path | str | None = None) -> Result:
    """What the shipped comparison measured, from ``lfd13/results/finetune_comparison.json``."""
    file = shipped.load_result(NAME, directory=directory)
    result = Result.from_dict(file.result)
    missing = [key for key in planned_runs(file.settings["budgets"], file.settings["seeds"]) if key not in result.runs]
    if missing:
        raise ValueError(f"the result {NAME!r} has no run {missing[0]}; recreate it with `{command('finetune')}`")
    return result


def files(settings: Settings) -> tuple[str, ...]:
    """The file :func:`write` creates."""
    return (f"{NAME}.json",)


def write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> None:
    """Run the comparison; save the result in ``results`` (it reads no checkpoint: the encoder ships in a package)."""
    result = run(settings, device=device, progress=progress)
    shipped.save_result(NAME, command=command("finetune"), settings=asdict(settings), result=result.to_dict(),
                        directory=results)


def check(*, checkpoints: Path, results: Path) -> None:
    """Read the result file back."""
    load(results)


#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (
    Entry(name="finetune", doc="Chapter 5: MiniLM fine-tuned vs from scratch on newsgroups, early-stopped "
          "(results/finetune_comparison.json)", settings=SETTINGS, tiny=TINY, files=files, write=write, check=check),
)
