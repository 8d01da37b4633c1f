"""Chapter 5a's image experiment: which layers of a CNN transfer (Yosinski et al. 2014, on digits).

A small CNN (:class:`SmallCNN`, three convolution blocks) is trained on the *source task*, the
digits 0-4 with all their labels, and ships as the checkpoint ``transfer_source_cnn``. New networks
for three *target tasks* (:func:`transfer_tasks`: new classes, inverted inputs, the unchanged task)
copy some of its blocks, frozen (:func:`transfer_accuracy`), learn the rest from a few labels per
class, and are tested; every variant runs over several seeds. Each variant gets its own learning
rate: the value of a grid with the best validation accuracy on the first seed (the other seeds then
train at it), the grid being extended until that value is not at its edge (:func:`choose_on_validation`). The test accuracies go
to ``lfd13/results/layer_transfer.json``.

The text runs (row ``transfer-text``) freeze the bottom or the top k transformer layers of MiniLM
on the four-newsgroups task (:func:`lfd13.finetune.freeze_bottom_layers`,
:func:`lfd13.finetune.freeze_top_layers`) and keep each arm's validation and test accuracy
(``lfd13/results/layer_transfer_text.json``). The same search can choose each arm's learning rate;
the shipped settings give every arm the recipe's rate (see :class:`TextSettings`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lfd13 import shipped
from lfd13.data import DigitsSplit, load_digits
from lfd13.evaluation import train_and_test
from lfd13.experiments import Entry, command
from lfd13.runtime import seeded
from lfd13.sampling import split_indices
from lfd13.train import Recipe, classification_step, train

__all__ = ["NAME", "SOURCE_CNN", "SmallCNN", "TaskRuns", "Settings", "SETTINGS", "TINY", "Result", "transfer_tasks",
           "train_source_cnn", "transfer_run", "transfer_accuracy", "choose_on_validation", "load_source_cnn", "run", "load",
           "files", "write", "check", "TEXT_NAME", "TextSettings", "TEXT_SETTINGS", "TEXT_TINY", "TextResult",
           "text_run", "run_text", "load_text", "ENTRIES"]

#: The result file this experiment writes.
NAME = "layer_transfer"

#: The checkpoint of the source network.
SOURCE_CNN = "transfer_source_cnn"

Pair = tuple[torch.Tensor, torch.Tensor]


class SmallCNN(nn.Module):
    """A small CNN for 8×8 digits whose layers can be copied block by block.

    Three conv blocks (``blocks``, bottom first) then global average pooling and a linear head,
    so :func:`lfd13.finetune.freeze_bottom_layers` freezes the first k blocks.
    """

    def __init__(self, *, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU()),  # (B, w, 8, 8)
                nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),  # (B, 2w, 4, 4)
                nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU()),  # (B, 2w, 4, 4)
            ]
        )
        self.head = nn.Linear(2 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 1, H, W] images -> [B, 2w] pooled features."""
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 1, H, W] images -> [B, C] logits."""
        return self.head(self.features(x))


@dataclass(frozen=True)
class TaskRuns:
    """The runs on one target task."""

    task: str  # a key of transfer_tasks: "new labels", "inverted inputs" or "same task"
    variants: tuple[str, ...]  # names of Settings.variants run on it
    seeds: tuple[int, ...]  # one run per seed: it draws the labelled examples and initialises the new blocks


_ALL_VARIANTS = ("none (scratch)", "first 2", "last 2", "all (frozen)")


@dataclass(frozen=True)
class Settings:
    """The source network, the target networks' budget, and which variants run on which task with which seeds."""

    width: int = 16  # channels of the CNN's first block (the others have twice as many)
    n_labels: int = 10  # labelled examples per class of a target task
    source_seed: int = 0  # initialisation and batch order of the source network
    # the source network: the digits 0-4, all their labels
    source_recipe: Recipe = field(default_factory=lambda: Recipe(steps=300, lr=3e-3))
    # every target network (its learning rate is chosen per variant and task from `lrs`)
    target_recipe: Recipe = field(default_factory=lambda: Recipe(steps=150, lr=3e-3, batch_size=50))
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # the learning-rate grid, extended by factors of 3 past an edge
    max_extensions: int = 3  # at most this many extensions of the grid per variant
    n_val: int = 20  # validation examples per class, from the task's pool, never among the labelled ones
    choose_seeds: int = 1  # the learning rate is chosen on the validation accuracy of the first this many seeds
    # variant name -> the blocks of the source network a target network copies, frozen
    variants: tuple[tuple[str, tuple[int, ...]], ...] = tuple(zip(_ALL_VARIANTS, ((), (0, 1), (1, 2), (0, 1, 2))))
    # the runs; the control (the unchanged task) gets more seeds, its effects being smaller
    runs: tuple[TaskRuns, ...] = (
        TaskRuns("new labels", _ALL_VARIANTS, tuple(range(5))),
        TaskRuns("inverted inputs", _ALL_VARIANTS, tuple(range(5))),
        TaskRuns("same task", ("none (scratch)", "first 2", "last 2"), tuple(range(10))),
    )

    @property
    def blocks(self) -> dict[str, tuple[int, ...]]:
        """Variant name -> the blocks it copies."""
        return dict(self.variants)

    @property
    def by_task(self) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
        """Task -> (the variants run on it, the seeds)."""
        return {r.task: (r.variants, r.seeds) for r in self.runs}


#: The shipped experiment, and a smoke run (a few steps, two variants, one seed).
SETTINGS = Settings()
TINY = Settings(width=4, n_labels=2, source_recipe=Recipe(steps=2, lr=3e-3), target_recipe=Recipe(steps=2, lr=3e-3),
                lrs=(1e-3, 3e-3), max_extensions=0, n_val=2, choose_seeds=1, runs=(TaskRuns("new labels", ("none (scratch)", "first 2"), (0,)),))


@dataclass(frozen=True)
class Result:
    """What the target networks scored."""

    runs: dict[str, dict[str, tuple[float, ...]]]  # task -> variant -> test accuracy of each seed at its chosen lr
    seeds: dict[str, tuple[int, ...]]  # task -> its seeds
    seconds: float  # the whole experiment's time, the source network's training included
    lr: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> variant -> chosen learning rate
    # task -> variant -> every learning rate tried -> {"validation": [...], "test": [...]}, one per choosing seed
    grid: dict[str, dict[str, dict[float, dict[str, list[float]]]]] = field(default_factory=dict)
    # the source network run() trained: it ships as a checkpoint, not in the result file (None when loaded)
    source: SmallCNN | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": {t: list(s) for t, s in self.seeds.items()}, "seconds": self.seconds,
                "runs": {t: {v: list(a) for v, a in by_v.items()} for t, by_v in self.runs.items()},
                "lr": self.lr, "grid": {t: {v: {repr(lr): g for lr, g in by_lr.items()} for v, by_lr in by_v.items()}
                                        for t, by_v in self.grid.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(runs={t: {v: tuple(a) for v, a in by_v.items()} for t, by_v in d["runs"].items()},
                   seeds={t: tuple(s) for t, s in d["seeds"].items()}, seconds=d["seconds"], lr=d.get("lr", {}),
                   grid={t: {v: {float(lr): g for lr, g in by_lr.items()} for v, by_lr in by_v.items()}
                         for t, by_v in d.get("grid", {}).items()})


def transfer_tasks(digits: DigitsSplit) -> dict[str, tuple[Pair, Pair]]:
    """The target tasks, each as (labelled pool ``(x, y)``, test set ``(x, y)``) with labels 0-4.

    - ``"new labels"``: the digits 5-9, a change at the output;
    - ``"inverted inputs"``: the digits 0-4 with ``x -> 1 - x``, a change at the input;
    - ``"same task"``: the digits 0-4 themselves, the control.

    ``digits``: :func:`lfd13.data.load_digits` at its native 8×8 (x: [N, 1, 8, 8], y: [N]).
    """
    src, src_test = digits.y_train < 5, digits.y_test < 5
    return {
        "new labels": ((digits.x_train[~src], digits.y_train[~src] - 5), (digits.x_test[~src_test], digits.y_test[~src_test] - 5)),
        "inverted inputs": ((1 - digits.x_train[src], digits.y_train[src]), (1 - digits.x_test[src_test], digits.y_test[src_test])),
        "same task": ((digits.x_train[src], digits.y_train[src]), (digits.x_test[src_test], digits.y_test[src_test])),
    }


def train_source_cnn(digits: DigitsSplit, settings: Settings = SETTINGS, *, device: torch.device | str | None = None,
                     progress: bool | None = None) -> SmallCNN:
    """The source network: a :class:`SmallCNN` trained on the digits 0-4 with all their labels."""
    src = digits.y_train < 5
    with seeded(settings.source_seed):
        model = SmallCNN(num_classes=5, width=settings.width)
    train(model, (digits.x_train[src], digits.y_train[src]), classification_step, settings.source_recipe,
          seed=settings.source_seed, device=device, progress=progress)
    return model.eval()


def transfer_run(
    source: SmallCNN,
    tasks: dict[str, tuple[Pair, Pair]],
    task: str,
    copy_blocks: Sequence[int],
    seed: int,
    *,
    settings: Settings = SETTINGS,
    lr: float | None = None,
    edit: Callable[[SmallCNN], None] | None = None,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """(validation accuracy, test accuracy) on ``task`` of a new :class:`SmallCNN` whose blocks ``copy_blocks`` come from ``source``, frozen.

    ``seed`` initialises the new blocks and the head and draws ``settings.n_labels`` labelled
    examples per class and ``settings.n_val`` validation examples per class, disjoint, from the
    task's pool; the network trains with ``settings.target_recipe`` at learning rate ``lr``
    (default: the recipe's). ``edit(model)``, if given, may change the copied weights before training.
    """
    (x, y), test_set = tasks[task]
    with seeded(seed):
        model = SmallCNN(num_classes=5, width=settings.width)
    for i in copy_blocks:
        model.blocks[i].load_state_dict(source.blocks[i].state_dict())
        model.blocks[i].requires_grad_(False)
    if edit is not None:
        edit(model)
    train_idx, val_idx = split_indices(y, settings.n_labels, settings.n_val, seed=seed)
    recipe = settings.target_recipe if lr is None else replace(settings.target_recipe, lr=lr)
    # validation once, at the end: it scores the last weights, the ones tested
    result = train_and_test(model, (x[train_idx], y[train_idx]), test_set, recipe, seed=seed, device=device,
                            validation=(x[val_idx], y[val_idx]), eval_every=recipe.steps)
    return result.history.evals["validation"][-1][1], result.accuracy


def transfer_accuracy(source: SmallCNN, tasks: dict[str, tuple[Pair, Pair]], task: str, copy_blocks: Sequence[int],
                      seed: int, **kwargs: Any) -> float:
    """The test accuracy of :func:`transfer_run` (same arguments)."""
    return transfer_run(source, tasks, task, copy_blocks, seed, **kwargs)[1]


def choose_on_validation(
    run_at: Callable[[float], tuple[list[float], list[float]]], lrs: Sequence[float], *, max_extensions: int
) -> tuple[float, dict[float, dict[str, list[float]]]]:
    """The learning rate with the best mean validation score, from a grid extended until it is interior.

    Args:
        run_at: ``lr -> (validation scores, test scores)``, one of each per seed.
        lrs: the starting grid, ascending.
        max_extensions: how many times the grid may grow by a factor of 3 past the edge that won.

    Returns:
        ``(chosen lr, {lr: {"validation": [...], "test": [...]}})``; the test scores are never read to choose.
    """
    grid: dict[float, dict[str, list[float]]] = {}
    for lr in lrs:
        val, test = run_at(lr)
        grid[lr] = {"validation": [round(v, 5) for v in val], "test": [round(t, 5) for t in test]}
    for _ in range(max_extensions + 1):
        ordered = sorted(grid)
        best = max(ordered, key=lambda lr: float(np.mean(grid[lr]["validation"])))  # the lowest lr on ties
        if best not in (ordered[0], ordered[-1]) or _ == max_extensions:
            return best, grid
        lr = float(f"{best * (3 if best == ordered[-1] else 1 / 3):.3g}")
        val, test = run_at(lr)
        grid[lr] = {"validation": [round(v, 5) for v in val], "test": [round(t, 5) for t in test]}
    raise AssertionError("unreachable")


def _build(info: shipped.CheckpointInfo, folder: Path) -> SmallCNN:
    return SmallCNN(**info.config)


def load_source_cnn(name_or_path: str | Path = SOURCE_CNN, *, directory: Path | str | None = None
                    ) -> tuple[SmallCNN, shipped.CheckpointInfo]:
    """The shipped source network (hashes checked), on the CPU in eval mode, and its JSON."""
    return shipped.load_model(name_or_path, kind="cnn", build=_build, directory=directory)


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Train the source network, then every target network of ``settings.runs``, each variant at its chosen lr.

    A variant's learning rate is chosen on the first ``settings.choose_seeds`` seeds' validation
    accuracy (:func:`choose_on_validation`); the other seeds then train at that rate.

    ``Result.source`` holds the source network.
    """
    digits = load_digits()
    tasks = transfer_tasks(digits)
    start = time.perf_counter()
    source = train_source_cnn(digits, settings, device=device, progress=progress)
    runs: dict[str, dict[str, tuple[float, ...]]] = {}
    chosen: dict[str, dict[str, float]] = {}
    grids: dict[str, dict[str, dict[float, dict[str, list[float]]]]] = {}
    for r in settings.runs:
        for variant in r.variants:
            def run_at(lr: float, seeds: Sequence[int], r: TaskRuns = r, variant: str = variant
                       ) -> tuple[list[float], list[float]]:
                pairs = [transfer_run(source, tasks, r.task, settings.blocks[variant], s, settings=settings, lr=lr,
                                      device=device) for s in seeds]
                return [v for v, _ in pairs], [t for _, t in pairs]

            first, rest = r.seeds[: settings.choose_seeds], r.seeds[settings.choose_seeds :]
            lr, grid = choose_on_validation(partial(run_at, seeds=first), settings.lrs,
                                            max_extensions=settings.max_extensions)
            runs.setdefault(r.task, {})[variant] = tuple(grid[lr]["test"]) + tuple(round(t, 5) for t in run_at(lr, rest)[1])
            chosen.setdefault(r.task, {})[variant] = lr
            grids.setdefault(r.task, {})[variant] = grid
    return Result(runs=runs, seeds={r.task: r.seeds for r in settings.runs}, seconds=round(time.perf_counter() - start, 1),
                  lr=chosen, grid=grids, source=source.cpu().eval())


def load(directory: Path | str | None = None) -> Result:
    """What the shipped experiment measured, from ``lfd13/results/layer_transfer.json``."""
    return Result.from_dict(shipped.load_result(NAME, directory=directory).result)


def files(settings: Settings) -> tuple[str, ...]:
    """The files :func:`write` creates: the source network's checkpoint and the result file."""
    return (f"{SOURCE_CNN}.safetensors", f"{SOURCE_CNN}.json", f"{NAME}.json")


def write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> None:
    """Run the experiment; save the source network in ``checkpoints`` and the accuracies in ``results``."""
    result = run(settings, device=device, progress=progress)
    source = result.source
    assert source is not None, "run() returns the source network it trained"
    shipped.save_model(SOURCE_CNN, source, kind="cnn", command=command("transfer"),
                       config={"num_classes": source.head.out_features, "width": settings.width},
                       recipe=asdict(settings.source_recipe), directory=checkpoints)
    shipped.save_result(NAME, command=command("transfer"), settings=asdict(settings), result=result.to_dict(),
                        directory=results)


def check(*, checkpoints: Path, results: Path) -> None:
    """Load the source network and the result file back."""
    load_source_cnn(directory=checkpoints)
    load(results)


# ---- text: freezing the bottom or the top layers of MiniLM -------------------------------------------------

#: The result file of the text runs.
TEXT_NAME = "layer_transfer_text"


@dataclass(frozen=True)
class TextSettings:
    """The text arms: which end of MiniLM is frozen, the data, the recipe and each arm's learning-rate grid."""

    n_per_class: int = 16  # labelled posts per class
    n_val: int = 20  # validation posts per class, from the train pool, never among the labelled ones
    n_test_per_class: int = 40  # test posts per class: the first ones of lfd13.data.load_newsgroups
    max_tokens: int = 64  # tokens per post, [CLS] and [SEP] included
    seeds: tuple[int, ...] = (0,)  # label draws; a seed also initialises the head and orders the batches
    # Chapter 5's fine-tuning recipe for 16 labels per class; its learning rate is chosen per arm
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=24, lr=1e-4, batch_size=8, weight_decay=0.01,
                                                          warmup=2, max_grad_norm=1.0))
    # arm name -> (which end is frozen, k layers, the starting learning-rate grid). The shipped runs give every
    # arm the recipe's rate alone (a grid of one value): a grid of three per arm costs three times the runs.
    arms: tuple[tuple[str, str, int, tuple[float, ...]], ...] = (
        ("bottom 0 (full)", "bottom", 0, (1e-4,)),
        ("bottom 2", "bottom", 2, (1e-4,)),
        ("bottom 6 (head only)", "bottom", 6, (1e-4,)),
        ("top 2", "top", 2, (1e-4,)),
    )
    max_extensions: int = 0  # at most this many extensions of an arm's grid


TEXT_SETTINGS = TextSettings()
TEXT_TINY = TextSettings(n_per_class=2, n_val=1, n_test_per_class=2, max_tokens=12,
                         recipe=Recipe(steps=2, lr=1e-4, batch_size=4, warmup=1),
                         arms=(("bottom 6 (head only)", "bottom", 6, (1e-3,)), ("top 2", "top", 2, (1e-4,))),
                         max_extensions=0)


@dataclass(frozen=True)
class TextResult:
    """Each text arm's test accuracies at its chosen learning rate, the grid behind the choice, its trainable share."""

    runs: dict[str, tuple[float, ...]]  # arm -> test accuracy per seed at the chosen lr
    lr: dict[str, float]  # arm -> chosen learning rate
    grid: dict[str, dict[float, dict[str, list[float]]]]  # arm -> lr -> {"validation": [...], "test": [...]}
    trainable: dict[str, float]  # arm -> fraction of the parameters trained
    n_test: int  # test posts
    seconds: float  # every run together

    def to_dict(self) -> dict[str, Any]:
        return {"runs": {a: list(v) for a, v in self.runs.items()}, "lr": self.lr, "trainable": self.trainable,
                "grid": {a: {repr(lr): g for lr, g in by_lr.items()} for a, by_lr in self.grid.items()},
                "n_test": self.n_test, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextResult:
        return cls(runs={a: tuple(v) for a, v in d["runs"].items()}, lr=d["lr"], trainable=d["trainable"],
                   grid={a: {float(lr): g for lr, g in by_lr.items()} for a, by_lr in d["grid"].items()},
                   n_test=d["n_test"], seconds=d["seconds"])


def text_run(encoder: Any, tokenizer: Any, data: Any, test: Any, end: str, k: int, lr: float, seed: int,
             settings: TextSettings = TEXT_SETTINGS, *, device: Any = None) -> tuple[float, float, float]:
    """One text arm at one learning rate: (validation accuracy, test accuracy, fraction of parameters trained).

    The classifier (MiniLM with its classification head) has its ``end`` ("bottom" or "top") ``k``
    layers frozen, trains on ``settings.n_per_class`` posts per class of draw ``seed`` and is scored,
    after the last step, on that draw's validation posts and on ``test``.
    """
    from lfd13 import finetune as ft

    (tr_texts, tr_labels), (va_texts, va_labels) = data.train_validation(settings.n_per_class, settings.n_val, seed=seed)
    train_set = ft.tokenize_texts(tokenizer, tr_texts, tr_labels, max_length=settings.max_tokens)
    val_set = ft.tokenize_texts(tokenizer, va_texts, va_labels, max_length=settings.max_tokens)
    freeze = ft.freeze_bottom_layers if end == "bottom" else ft.freeze_top_layers
    model = freeze(ft.build_sequence_classifier(encoder, num_labels=data.num_classes, seed=seed), k)
    ft.train_classifier(model, train_set, replace(settings.recipe, lr=lr), seed=seed, device=device)
    return (ft.evaluate_accuracy(model, val_set, device=device), ft.evaluate_accuracy(model, test, device=device),
            ft.parameter_count(model).fraction)


def run_text(settings: TextSettings = TEXT_SETTINGS, *, device: Any = None, progress: bool | None = None) -> TextResult:
    """Every text arm over its grid (extended past a winning edge up to ``max_extensions`` times), every seed."""
    from lfd13 import finetune as ft
    from lfd13.data import load_newsgroups
    from lfd13.pretrained import load_text_encoder

    data = load_newsgroups(n_test_per_class=settings.n_test_per_class)
    tokenizer, encoder = load_text_encoder(device=device)
    test = ft.tokenize_texts(tokenizer, data.test_texts, data.test_labels, max_length=settings.max_tokens)
    start = time.perf_counter()
    runs, chosen, grids, trainable = {}, {}, {}, {}
    for name, end, k, lrs in settings.arms:
        def run_at(lr: float, end: str = end, k: int = k, name: str = name) -> tuple[list[float], list[float]]:
            triples = [text_run(encoder, tokenizer, data, test, end, k, lr, s, settings, device=device)
                       for s in settings.seeds]
            trainable[name] = round(triples[0][2], 5)
            return [v for v, _, _ in triples], [t for _, t, _ in triples]

        chosen[name], grids[name] = choose_on_validation(run_at, lrs, max_extensions=settings.max_extensions)
        runs[name] = tuple(grids[name][chosen[name]]["test"])
    return TextResult(runs=runs, lr=chosen, grid=grids, trainable=trainable, n_test=len(test.labels),
                      seconds=round(time.perf_counter() - start, 1))


def load_text(directory: Path | str | None = None) -> TextResult:
    """What the shipped text runs measured, from ``lfd13/results/layer_transfer_text.json``."""
    return TextResult.from_dict(shipped.load_result(TEXT_NAME, directory=directory).result)


def _text_files(settings: TextSettings) -> tuple[str, ...]:
    return (f"{TEXT_NAME}.json",)


def _write_text(settings: TextSettings, *, checkpoints: Path, results: Path, device: Any = None,
                progress: bool | None = None) -> None:
    result = run_text(settings, device=device, progress=progress)
    shipped.save_result(TEXT_NAME, command=command("transfer-text"), settings=asdict(settings), result=result.to_dict(),
                        directory=results)


def _check_text(*, checkpoints: Path, results: Path) -> None:
    load_text(results)


#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (
    Entry(name="transfer", doc="Chapter 5a: the source CNN (digits 0-4) and its layer-transfer runs "
          "(checkpoints/transfer_source_cnn, results/layer_transfer.json)",
          settings=SETTINGS, tiny=TINY, files=files, write=write, check=check),
    Entry(name="transfer-text", doc="Chapter 5a: MiniLM with its bottom or top layers frozen, one draw of 16 posts "
          "per class (results/layer_transfer_text.json)",
          settings=TEXT_SETTINGS, tiny=TEXT_TINY, files=_text_files, write=_write_text, check=_check_text),
)
