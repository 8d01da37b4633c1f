"""Chapter 5's transformer runs: fine-tuning a pretrained encoder vs training it from scratch, with few labels.

The pretrained encoder (all-MiniLM-L6-v2, :func:`lfd13.pretrained.load_text_encoder`, offline) gets
a linear head on the mean of its last layer's token vectors (how it was trained to embed a text,
and what the chapter's linear probe reads) and is fine-tuned on ``n`` labelled posts per class of
the four-newsgroups task; the same architecture from a random initialisation is trained at the
largest budget. Each arm's learning rate is chosen on validation: every rate of its grid is run
with the first label draw (for fine-tuning, at ``Settings.rate_budget``), the grid is extended by
a rung of :data:`LADDER` while the best rate sits at an edge, and the other draws and budgets run
at the chosen rate. Every run validates every few steps
on posts of the train pool that are never among the labelled ones and tests the best weights
(early stopping, :func:`lfd13.evaluation.train_and_test`). Test accuracies, chosen steps and
validation curves go to ``lfd13/results/finetune_comparison.json``; no weights are kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lfd13 import shipped
from lfd13.data.newsgroups import TextSplit, load_newsgroups
from lfd13.evaluation import TrainTestResult, train_and_test
from lfd13.experiments import Entry, best_learning_rate, command
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

__all__ = ["NAME", "RunKey", "LADDER", "Settings", "SETTINGS", "TINY", "Result", "chosen_rate",
           "label_draw", "early_stopped_run", "run", "load", "files", "write", "check", "ENTRIES"]

#: The result file this experiment writes.
NAME = "finetune_comparison"


class RunKey(NamedTuple):
    """Which run: a tuple, so ``runs[16, 0, True, 1e-4]`` and ``for (n, seed, pretrained, lr), run in runs.items()`` work."""

    n: int  # labelled posts per class
    seed: int  # the label draw, the head's initialisation (all of it from scratch) and the batch order
    pretrained: bool  # pretrained weights (True) or a random initialisation of the same architecture (False)
    lr: float  # the peak learning rate


#: The rates a grid may be extended to, one rung at a time, while its best rate sits at an edge.
LADDER: tuple[float, ...] = (3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


@dataclass(frozen=True)
class Settings:
    """The runs, their data, their two recipes and their learning-rate grids."""

    encoder: str = DEFAULT_TEXT_ENCODER  # the pretrained encoder, resolved offline by lfd13.pretrained
    budgets: tuple[int, ...] = (64,)  # labelled posts per class of the pretrained runs
    scratch_budgets: tuple[int, ...] = (64,)  # labelled posts per class of the runs from scratch
    seeds: tuple[int, ...] = (0, 1)  # label draws of the pretrained runs (from scratch: the first one)
    n_val: int = 20  # validation posts per class, from the train pool, never among the labelled ones
    eval_every: int = 8  # validation period in steps; the weights of the best check are tested
    max_tokens: int = 32  # tokens per post, [CLS] and [SEP] included
    n_test_per_class: int = 40  # test posts per class: the first ones of lfd13.data.load_newsgroups
    scratch_eval_every: int = 16  # the same, for the longer runs from scratch
    pooling: str = "mean"  # what the head reads (lfd13.finetune.build_sequence_classifier)
    # the fine-tuning preset for at most 48 steps: 1.5 passes over 64 posts per class
    pretrained_recipe: Recipe = field(default_factory=lambda: replace(FULL_FINETUNE, steps=48, warmup=5))
    # a random start: twice the steps
    scratch_recipe: Recipe = field(default_factory=lambda: replace(FULL_FINETUNE, steps=96, warmup=10))
    pretrained_rates: tuple[float, ...] = (3e-5, 1e-4, 3e-4)  # the grid fine-tuning starts from
    scratch_rates: tuple[float, ...] = (3e-4, 1e-3, 3e-3)  # the grid a run from scratch starts from
    max_extensions: int = 1  # rungs of LADDER a grid may gain at its edges
    # the budget whose first draw chooses fine-tuning's rate for every budget (None: each budget its own)
    rate_budget: int | None = 64

    def recipe(self, pretrained: bool, lr: float | None = None) -> Recipe:
        """The recipe of a pretrained run (True) or of a run from scratch (False), at ``lr`` if given."""
        recipe = self.pretrained_recipe if pretrained else self.scratch_recipe
        return recipe if lr is None else replace(recipe, lr=lr)

    def rates(self, pretrained: bool) -> tuple[float, ...]:
        return self.pretrained_rates if pretrained else self.scratch_rates

    def groups(self) -> tuple[tuple[int, bool], ...]:
        """``(n, pretrained)`` of every arm that searches its own grid, in the order they run."""
        pretrained = self.budgets if self.rate_budget is None else (self.rate_budget,)
        return (*((n, True) for n in pretrained), *((n, False) for n in self.scratch_budgets))

    def evaluation_period(self, pretrained: bool) -> int:
        return self.eval_every if pretrained else self.scratch_eval_every


#: The shipped comparison, and a smoke run (two posts per class, two steps, short posts, one rate).
SETTINGS = Settings()
TINY = Settings(budgets=(2,), scratch_budgets=(2,), seeds=(0,), n_val=1, eval_every=1, max_tokens=12,
                n_test_per_class=2, pretrained_recipe=replace(FULL_FINETUNE, steps=2, warmup=1),
                scratch_recipe=replace(FULL_FINETUNE, steps=2, warmup=1), pretrained_rates=(1e-4,),
                scratch_rates=(1e-3,), max_extensions=0, scratch_eval_every=1, rate_budget=None)


def chosen_rate(runs: Mapping[RunKey, TrainTestResult], n: int, pretrained: bool, seed: int) -> float:
    """The rate whose run with draw ``seed`` scored best on validation (the smaller rate on a tie)."""
    by_rate = {k.lr: r for k, r in runs.items() if (k.n, k.pretrained, k.seed) == (n, pretrained, seed)}
    if not by_rate:
        raise ValueError(f"no run with n={n}, pretrained={pretrained}, seed={seed}")
    return best_learning_rate({lr: r.best_validation for lr, r in by_rate.items()})


def _extend(rates: list[float], best: float) -> float | None:
    """The next rung of LADDER beyond the edge ``best`` sits at (None: not at an edge, or the ladder ends)."""
    if len(rates) < 3 or best not in (rates[0], rates[-1]):
        return None
    below = [r for r in LADDER if r < rates[0] * 0.99]
    above = [r for r in LADDER if r > rates[-1] * 1.01]
    if best == rates[0]:
        return below[-1] if below else None
    return above[0] if above else None


@dataclass(frozen=True)
class Result:
    """Every run's test accuracy, chosen step and validation curve, and each arm's chosen rate."""

    runs: dict[RunKey, TrainTestResult]  # in the order they ran; histories hold the validation curve and the seconds
    n_test: int  # test posts
    seconds: float  # every run together

    def rate(self, n: int, pretrained: bool) -> float:
        """The learning rate the arm runs at: the best on validation of the grid it shares (see :meth:`grid_budget`)."""
        m = self.grid_budget(n, pretrained)
        seed = min(k.seed for k in self.runs if (k.n, k.pretrained) == (m, pretrained))
        return chosen_rate(self.runs, m, pretrained, seed)

    def grid_budget(self, n: int, pretrained: bool) -> int:
        """The budget whose grid chose the rate of budget ``n`` (the budget that tried most rates)."""
        budgets = {k.n for k in self.runs if k.pretrained == pretrained}
        if n not in budgets:
            raise KeyError(f"no run with n={n}, pretrained={pretrained}")
        if len({k.lr for k in self.runs if (k.n, k.pretrained) == (n, pretrained)}) > 1:
            return n
        return max(budgets, key=lambda m: (len({k.lr for k in self.runs if (k.n, k.pretrained) == (m, pretrained)}), m))

    def grid(self, n: int, pretrained: bool) -> tuple[float, ...]:
        """Every rate of the grid that chose budget ``n``'s rate, in increasing order."""
        m = self.grid_budget(n, pretrained)
        return tuple(sorted({k.lr for k in self.runs if (k.n, k.pretrained) == (m, pretrained)}))

    def chosen(self, n: int, pretrained: bool) -> dict[int, TrainTestResult]:
        """The arm's runs at its chosen rate, by seed."""
        lr = self.rate(n, pretrained)
        return dict(sorted((k.seed, r) for k, r in self.runs.items() if (k.n, k.pretrained, k.lr) == (n, pretrained, lr)))

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "n_test": self.n_test,
                "runs": [{**key._asdict(), **run.to_record()} for key, run in self.runs.items()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        runs = {RunKey(row["n"], row["seed"], row["pretrained"], row["lr"]): TrainTestResult.from_record(row)
                for row in d["runs"]}
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
    model = build_sequence_classifier(encoder, num_labels=data.num_classes, pretrained=key.pretrained, seed=key.seed,
                                      pooling=settings.pooling)
    return train_and_test(model, encode(train_idx), test, settings.recipe(key.pretrained, key.lr), seed=key.seed,
                          step=sequence_classification_step, score=evaluate_accuracy, device=device,
                          validation=encode(val_idx), eval_every=settings.evaluation_period(key.pretrained))


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Every arm: its grid on the first draw (extended while the best rate is at an edge), then the other draws."""
    data = load_newsgroups(n_test_per_class=settings.n_test_per_class)
    tokenizer, encoder = load_text_encoder(settings.encoder, device=device)
    test = tokenize_texts(tokenizer, data.test_texts, data.test_labels, max_length=settings.max_tokens)
    start = time.perf_counter()
    runs: dict[RunKey, TrainTestResult] = {}

    def make(key: RunKey) -> None:
        if key not in runs:
            runs[key] = early_stopped_run(encoder, tokenizer, data, test, key, settings, device=device)

    for n, pretrained in settings.groups():
        first = settings.seeds[0]
        rates = list(settings.rates(pretrained))
        for _ in range(settings.max_extensions + 1):
            for lr in rates:
                make(RunKey(n, first, pretrained, lr))
            extra = _extend(rates, chosen_rate(runs, n, pretrained, first))
            if extra is None:
                break
            rates = sorted([*rates, extra])
        if pretrained:
            lr = chosen_rate(runs, n, pretrained, first)
            for m in (settings.budgets if settings.rate_budget is not None else (n,)):
                for seed in settings.seeds:
                    make(RunKey(m, seed, pretrained, lr))
    return Result(runs=runs, n_test=len(test.labels), seconds=round(time.perf_counter() - start, 1))


def load(directory: Path | str | None = None) -> Result:
    """What the shipped comparison measured, from ``lfd13/results/finetune_comparison.json``."""
    file = shipped.load_result(NAME, directory=directory)
    result = Result.from_dict(file.result)
    settings = file.settings
    expected = [(n, s, True) for n in settings["budgets"] for s in settings["seeds"]]
    expected += [(n, settings["seeds"][0], False) for n in settings["scratch_budgets"]]
    have = {(k.n, k.seed, k.pretrained) for k in result.runs}
    missing = [key for key in expected if key not in have]
    if missing:
        n, seed, pretrained = missing[0]
        raise ValueError(f"the result {NAME!r} has no run with n={n}, seed={seed}, pretrained={pretrained}; "
                         f"recreate it with `{command('finetune')}`")
    for n, seed, pretrained in expected:
        if (n, seed, pretrained, result.rate(n, pretrained)) not in result.runs:
            raise ValueError(f"the result {NAME!r} has no run with n={n}, seed={seed}, pretrained={pretrained} at its "
                             f"chosen rate; recreate it with `{command('finetune')}`")
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
    Entry(name="finetune", doc="Chapter 5: MiniLM fine-tuned vs from scratch on newsgroups, mean-pooled head, "
          "learning rates chosen on validation, early-stopped (results/finetune_comparison.json)", settings=SETTINGS, tiny=TINY, files=files, write=write, check=check),
)
