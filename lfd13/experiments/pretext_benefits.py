"""Chapter 1b's benefits of transfer: the digits CNN from scratch, and fine-tuning from pre-trained vs random weights.

Two of the lecture's benefits of pre-training, measured with the pretext encoders of
:mod:`lfd13.experiments.pretext_pretraining`:

- **data efficiency**: the chapter's linear probe on the best pre-trained encoder is compared
  with :func:`lfd13.cnn.build_digits_cnn` trained from scratch on the same labelled images;
  this experiment records the CNN's test accuracy for every budget and probe run (its label draw);
- **better initialisation, faster convergence**: the encoder of the family chosen on validation
  (:meth:`~lfd13.experiments.pretext_pretraining.Result.best_by_validation`) is fine-tuned with a
  fresh linear head, once from its pre-trained weights and once from the random weights its
  pre-training started from, with early stopping on a validation split.

Every arm (the CNN at each budget, each fine-tuning start) trains at its own learning rate, the
one of ``Settings.lr_grid`` with the best mean validation accuracy over its runs
(:func:`learning_rate_search`); the validation split is drawn from the training pool, disjoint from
the labelled images, and no test image is used for a choice.

The result is ``lfd13/results/pretext_benefits.json``; no weights are kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lfd13 import pretext, shipped
from lfd13.cnn import DIGITS_CNN_RECIPE, build_digits_cnn
from lfd13.data import load_digits
from lfd13.evaluation import TrainTestResult, accuracy_on, train_and_test
from lfd13.experiments import Entry, best_learning_rate, command
from lfd13.experiments import pretext_pretraining as pretraining
from lfd13.sampling import split_indices
from lfd13.train import Recipe

__all__ = ["Settings", "SETTINGS", "TINY", "Result", "STARTS", "scratch_arm", "scratch_accuracy", "finetune_run",
           "best_learning_rate", "learning_rate_search", "run", "load", "files", "write", "check", "ENTRIES"]

NAME = "pretext-benefits"  # the row of lfd13.recreate
RESULT = "pretext_benefits"  # the result file, lfd13/results/pretext_benefits.json

#: The two starts of the fine-tuning comparison: the pre-trained encoder, and the random weights its pre-training started from.
STARTS = ("pre-trained", "random weights")


@dataclass(frozen=True)
class Settings:
    """The trainings of the transfer comparison: budgets, label draws, recipe, and the pre-training they read."""

    pretraining: pretraining.Settings = pretraining.SETTINGS  # the pretext checkpoints fine-tuned (their families and seeds)
    probe_runs: tuple[int, ...] = tuple(range(6))  # run r draws its labels with seed r (its probe: pre-training seed r mod 3)
    budgets: tuple[int, ...] = (1, 10)  # labels per class of the data-efficiency comparison (the CNN from scratch)
    finetune_labels: int = 10  # labels per class of the fine-tuning comparison
    n_val_per_class: int = 30  # validation images per class, disjoint from the labels (learning rate, early stopping)
    eval_every: int = 20  # fine-tuning steps between two validation scores
    recipe: Recipe = DIGITS_CNN_RECIPE  # steps, batch and weight decay of every training; its lr is replaced by the arm's
    lr_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # the rates each arm chooses from on validation


#: The shipped run.
SETTINGS = Settings()
#: One budget, one draw, a few steps, reading the tiny pre-training (a second).
TINY = Settings(pretraining=pretraining.TINY, probe_runs=(0,), budgets=(1,), finetune_labels=1, n_val_per_class=1,
                eval_every=2, recipe=Recipe(steps=4, lr=3e-3, batch_size=8, weight_decay=1e-2), lr_grid=(1e-3, 3e-3))


def scratch_arm(n: int) -> str:
    """The name of the CNN-from-scratch arm with ``n`` labels per class, e.g. ``"scratch, 10 labels"``."""
    return f"scratch, {n} label{'s' if n > 1 else ''}"


@dataclass(frozen=True)
class Result:
    """What the transfer trainings measured."""

    family: str  # the family fine-tuned: the best on validation at the end of pre-training
    scratch: dict[int, tuple[float, ...]]  # labels per class -> the CNN's test accuracy per probe run
    finetune: dict[str, tuple[TrainTestResult, ...]]  # start of STARTS -> one fine-tuning run per pre-training seed
    seeds: tuple[int, ...]  # the pre-training seeds, in the order of the fine-tuning runs
    runs: tuple[int, ...]  # the probe runs, in the order of the scratch accuracies
    seconds: float  # wall-clock seconds of all these trainings, the learning-rate search included
    lr_search: dict[str, dict[float, float]]  # arm (scratch_arm(n) or a start) -> rate -> mean validation accuracy
    learning_rates: dict[str, float]  # arm -> the rate its test runs trained with (best_learning_rate of lr_search)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "seeds": list(self.seeds), "runs": list(self.runs), "seconds": self.seconds,
                "scratch": {str(n): list(a) for n, a in self.scratch.items()},
                "finetune": {start: [r.to_record() for r in rs] for start, rs in self.finetune.items()},
                "lr_search": {arm: [[lr, v] for lr, v in s.items()] for arm, s in self.lr_search.items()},
                "learning_rates": dict(self.learning_rates)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(family=d["family"], seeds=tuple(d["seeds"]), runs=tuple(d["runs"]), seconds=d["seconds"],
                   scratch={int(n): tuple(a) for n, a in d["scratch"].items()},
                   finetune={start: tuple(TrainTestResult.from_record(r) for r in rs) for start, rs in d["finetune"].items()},
                   lr_search={arm: {float(lr): v for lr, v in s} for arm, s in d["lr_search"].items()},
                   learning_rates={arm: float(lr) for arm, lr in d["learning_rates"].items()})


def scratch_run(digits: Any, n: int, draw: int, lr: float, *, settings: Settings = SETTINGS,
                device: Any = None) -> tuple[float, float]:
    """(validation, test) accuracy of :func:`lfd13.cnn.build_digits_cnn` trained from scratch at rate ``lr``.

    The labelled images are ``n`` per class of label draw ``draw`` (the probe's draw:
    :func:`lfd13.sampling.split_indices` starts with ``subset_indices(..., seed=draw)``); the
    validation images are ``settings.n_val_per_class`` further images per class. The last weights
    are scored on both.
    """
    tr, va = split_indices(digits.y_train, n, settings.n_val_per_class, seed=draw)
    model = build_digits_cnn(seed=draw)
    test = train_and_test(model, (digits.x_train[tr], digits.y_train[tr]), (digits.x_test, digits.y_test),
                          replace(settings.recipe, lr=lr), seed=draw, device=device).accuracy
    return accuracy_on(model, (digits.x_train[va], digits.y_train[va]), device=device), test


def scratch_accuracy(digits: Any, n: int, draw: int, *, lr: float, settings: Settings = SETTINGS,
                     device: Any = None) -> float:
    """Test accuracy of the CNN from scratch on ``n`` labels per class of label draw ``draw``, at rate ``lr``."""
    return scratch_run(digits, n, draw, lr, settings=settings, device=device)[1]


def finetune_run(encoder: pretext.ConvEncoder, digits: Any, seed: int, *, lr: float, settings: Settings = SETTINGS,
                 device: Any = None) -> TrainTestResult:
    """Fine-tune a copy of ``encoder`` with a fresh linear head on ``settings.finetune_labels`` labels per class.

    The labelled images are label draw ``seed``; ``settings.n_val_per_class`` further images per
    class are the validation split, scored every ``settings.eval_every`` steps, and the best step's
    weights are tested (:func:`lfd13.evaluation.train_and_test` with ``settings.recipe`` at rate ``lr``).
    """
    tr, va = split_indices(digits.y_train, settings.finetune_labels, settings.n_val_per_class, seed=seed)
    return train_and_test(pretext.build_encoder_classifier(encoder, seed=seed), (digits.x_train[tr], digits.y_train[tr]),
                          (digits.x_test, digits.y_test), replace(settings.recipe, lr=lr), seed=seed, device=device,
                          validation=(digits.x_train[va], digits.y_train[va]), eval_every=settings.eval_every)


def learning_rate_search(digits: Any, encoders: Mapping[str, list[pretext.ConvEncoder]], settings: Settings = SETTINGS, *,
                         device: Any = None) -> tuple[dict[str, dict[float, float]], dict[str, dict[float, list[Any]]]]:
    """Every arm trained at every rate of ``settings.lr_grid``, on all its runs.

    Returns ``(scores, runs)``: arm -> rate -> mean validation accuracy over the arm's runs, and
    arm -> rate -> the runs themselves (``(validation, test)`` for the CNN, a
    :class:`~lfd13.evaluation.TrainTestResult` for a fine-tuning start). Only the validation
    scores choose a rate.
    """
    seeds = settings.pretraining.seeds
    runs: dict[str, dict[float, list[Any]]] = {}
    for n in settings.budgets:
        runs[scratch_arm(n)] = {lr: [scratch_run(digits, n, r, lr, settings=settings, device=device)
                                     for r in settings.probe_runs] for lr in settings.lr_grid}
    for start in STARTS:
        runs[start] = {lr: [finetune_run(e, digits, s, lr=lr, settings=settings, device=device)
                            for s, e in zip(seeds, encoders[start])] for lr in settings.lr_grid}
    scores = {arm: {lr: round(float(np.mean([r[0] if isinstance(r, tuple) else r.best_validation for r in rs])), 5)
                    for lr, rs in by_lr.items()} for arm, by_lr in runs.items()}
    return scores, runs


def run(settings: Settings = SETTINGS, *, checkpoints: Path | str | None = None, results: Path | str | None = None,
        device: Any = None, progress: bool | None = None) -> Result:
    """Train the CNNs from scratch and fine-tune the family chosen on validation, each arm at the rate it chooses on
    validation, from the pre-training in ``checkpoints`` / ``results`` (default: the package's)."""
    digits = load_digits()
    seeds = settings.pretraining.seeds
    family, _ = pretraining.load(results).best_by_validation()
    tasks = [task for task, _ in pretraining.load_tasks(settings.pretraining, directory=checkpoints)[family]]
    start = time.perf_counter()
    encoders = {"pre-trained": [t.encoder for t in tasks],
                "random weights": [pretext.build_encoder(t.encoder.config, seed=s) for s, t in zip(seeds, tasks)]}
    scores, runs = learning_rate_search(digits, encoders, settings, device=device)
    rates = {arm: best_learning_rate(s) for arm, s in scores.items()}
    scratch = {n: tuple(round(test, 5) for _, test in runs[scratch_arm(n)][rates[scratch_arm(n)]]) for n in settings.budgets}
    finetune = {start: tuple(runs[start][rates[start]]) for start in STARTS}
    return Result(family=family, scratch=scratch, finetune=finetune, seeds=seeds, runs=settings.probe_runs,
                  seconds=round(time.perf_counter() - start, 1), lr_search=scores, learning_rates=rates)


def files(settings: Settings) -> tuple[str, ...]:
    """The result file alone."""
    return (f"{RESULT}.json",)


def write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> Result:
    """Run the trainings on the pre-training written to ``checkpoints`` / ``results``; save the result file."""
    result = run(settings, checkpoints=checkpoints, results=results, device=device, progress=progress)
    shipped.save_result(RESULT, command=command(NAME), settings=asdict(settings), result=result.to_dict(), directory=results)
    return result


def load(directory: Path | str | None = None) -> Result:
    """What the shipped run measured (or the result file in ``directory``)."""
    return Result.from_dict(shipped.load_result(RESULT, directory=directory).result)


def check(*, checkpoints: Path, results: Path) -> None:
    """Read the result file: a CNN accuracy per budget and run, one fine-tuning run per start and pre-training seed."""
    written = shipped.load_result(RESULT, directory=results)
    result, recorded = Result.from_dict(written.result), written.settings
    assert sorted(result.scratch) == sorted(recorded["budgets"]) and result.runs == tuple(recorded["probe_runs"])
    assert all(len(a) == len(result.runs) for a in result.scratch.values())
    assert set(result.finetune) == set(STARTS) and result.seeds == tuple(recorded["pretraining"]["seeds"])
    assert all(len(rs) == len(result.seeds) for rs in result.finetune.values())
    arms = [scratch_arm(n) for n in recorded["budgets"]] + list(STARTS)
    assert sorted(result.lr_search) == sorted(arms) and all(sorted(s) == sorted(recorded["lr_grid"]) for s in result.lr_search.values())
    assert all(result.learning_rates[arm] == best_learning_rate(result.lr_search[arm]) for arm in arms)


ENTRIES: tuple[Entry, ...] = (
    Entry(NAME, "the digits CNN from scratch and fine-tuning from pre-trained vs random weights, each at the learning rate "
          "it chooses on validation (result pretext_benefits); "
          "reads the pretext checkpoints", SETTINGS, TINY, files, write, check),
)
