"""Chapter 5a's image experiment: which layers of a CNN transfer (Yosinski et al. 2014, on digits).

A small CNN (:class:`SmallCNN`, three convolution blocks) is trained on the *source task*, the
digits 0-4 with all their labels, and ships as the checkpoint ``transfer_source_cnn``. New networks
for three *target tasks* (:func:`transfer_tasks`: new classes, inverted inputs, the unchanged task)
copy some of its blocks, frozen (:func:`transfer_accuracy`), learn the rest from a few labels per
class, and are tested; every variant runs over several seeds. The test accuracies go to
``lfd13/results/layer_transfer.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lfd13 import shipped
from lfd13.data import DigitsSplit, labelled_subset, load_digits
from lfd13.evaluation import train_and_test
from lfd13.experiments import Entry, command
from lfd13.runtime import seeded
from lfd13.train import Recipe, classification_step, train

__all__ = ["NAME", "SOURCE_CNN", "SmallCNN", "TaskRuns", "Settings", "SETTINGS", "TINY", "Result", "transfer_tasks",
           "train_source_cnn", "transfer_accuracy", "load_source_cnn", "run", "load", "files", "write", "check", "ENTRIES"]

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
    # every target network
    target_recipe: Recipe = field(default_factory=lambda: Recipe(steps=150, lr=3e-3, batch_size=50))
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
                runs=(TaskRuns("new labels", ("none (scratch)", "first 2"), (0,)),))


@dataclass(frozen=True)
class Result:
    """What the target networks scored."""

    runs: dict[str, dict[str, tuple[float, ...]]]  # task -> variant -> test accuracy of each seed, in seed order
    seeds: dict[str, tuple[int, ...]]  # task -> its seeds
    seconds: float  # the whole experiment's time, the source network's training included
    # the source network run() trained: it ships as a checkpoint, not in the result file (None when loaded)
    source: SmallCNN | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": {t: list(s) for t, s in self.seeds.items()}, "seconds": self.seconds,
                "runs": {t: {v: list(a) for v, a in by_v.items()} for t, by_v in self.runs.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(runs={t: {v: tuple(a) for v, a in by_v.items()} for t, by_v in d["runs"].items()},
                   seeds={t: tuple(s) for t, s in d["seeds"].items()}, seconds=d["seconds"])


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


def transfer_accuracy(
    source: SmallCNN,
    tasks: dict[str, tuple[Pair, Pair]],
    task: str,
    copy_blocks: Sequence[int],
    seed: int,
    *,
    settings: Settings = SETTINGS,
    edit: Callable[[SmallCNN], None] | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Test accuracy on ``task`` of a new :class:`SmallCNN` whose blocks ``copy_blocks`` come from ``source``, frozen.

    ``seed`` initialises the new blocks and the head and draws ``settings.n_labels`` labelled
    examples per class from the task's pool; the network trains with ``settings.target_recipe``.
    ``edit(model)``, if given, may change the copied weights before training.
    """
    (x, y), test_set = tasks[task]
    with seeded(seed):
        model = SmallCNN(num_classes=5, width=settings.width)
    for i in copy_blocks:
        model.blocks[i].load_state_dict(source.blocks[i].state_dict())
        model.blocks[i].requires_grad_(False)
    if edit is not None:
        edit(model)
    return train_and_test(model, labelled_subset(x, y, settings.n_labels, seed=seed), test_set, settings.target_recipe,
                          seed=seed, device=device).accuracy


def _build(info: shipped.CheckpointInfo, folder: Path) -> SmallCNN:
    return SmallCNN(**info.config)


def load_source_cnn(name_or_path: str | Path = SOURCE_CNN, *, directory: Path | str | None = None
                    ) -> tuple[SmallCNN, shipped.CheckpointInfo]:
    """The shipped source network (hashes checked), on the CPU in eval mode, and its JSON."""
    return shipped.load_model(name_or_path, kind="cnn", build=_build, directory=directory)


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Train the source network, then every target network of ``settings.runs`` (``Result.source`` holds the former)."""
    digits = load_digits()
    tasks = transfer_tasks(digits)
    start = time.perf_counter()
    source = train_source_cnn(digits, settings, device=device, progress=progress)
    runs: dict[str, dict[str, tuple[float, ...]]] = {}
    for r in settings.runs:
        for variant in r.variants:
            accs = [transfer_accuracy(source, tasks, r.task, settings.blocks[variant], s, settings=settings, device=device)
                    for s in r.seeds]
            runs.setdefault(r.task, {})[variant] = tuple(round(a, 5) for a in accs)
    return Result(runs=runs, seeds={r.task: r.seeds for r in settings.runs}, seconds=round(time.perf_counter() - start, 1),
                  source=source.cpu().eval())


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


#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (
    Entry(name="transfer", doc="Chapter 5a: the source CNN (digits 0-4) and its layer-transfer runs "
          "(checkpoints/transfer_source_cnn, results/layer_transfer.json)",
          settings=SETTINGS, tiny=TINY, files=files, write=write, check=check),
)
