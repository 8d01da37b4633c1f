"""Chapter 3's fine-tuning comparison and mask-ratio probes, measured with the shipped MAE checkpoints.

One row of :data:`lfd13.recreate.ENTRIES`, ``mae-finetuning``, which reads the checkpoints of
:mod:`lfd13.experiments.mae_pretraining` and writes ``lfd13/results/mae_finetuning.json``:

- the **fine-tuning comparison**: four arms (:class:`Arm`) trained on the same few labelled digits
  per draw, each scored on validation images every ``eval_every`` steps and tested with its best
  weights (early stopping, :func:`lfd13.evaluation.train_and_test`): the digits CNN from scratch, the
  MAE's transformer from scratch, the same trained three times longer (does its budget bind?), and the
  transformer fine-tuned from ``mae_digits``. Every arm runs
  with every learning rate of its own grid (:meth:`Settings.lrs`) on every draw; its learning rate is
  the one of best mean validation accuracy over the draws (:meth:`Result.chosen_lr`), never a test score;
- the **sweep probes**: a linear probe on the [CLS] token of each mask-ratio checkpoint
  (:func:`cls_probe`), on the same labels and draws.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from lfd13 import shipped
from lfd13.cnn import DIGITS_CNN_RECIPE, build_digits_cnn
from lfd13.data import DigitsSplit, load_digits
from lfd13.evaluation import FewLabelResult, TrainTestResult, extract_features, few_label_evaluation, linear_probe, train_and_test
from lfd13.experiments import Entry, best_learning_rate, command
from lfd13.experiments import mae_pretraining as pretraining
from lfd13.mae import MAEClassifier, MaskedAutoencoder, build_mae, mae_config
from lfd13.runtime import seeded
from lfd13.sampling import split_indices
from lfd13.train import Recipe, progress_enabled

__all__ = ["ENTRIES", "ENTRY", "RESULT", "SETTINGS", "TINY", "Arm", "Result", "Settings", "cls_probe", "finetune_arm", "load",
           "run"]

#: The file stem of the result file in ``lfd13/results``.
RESULT = "mae_finetuning"


class Arm(str, Enum):
    """The arms of the fine-tuning comparison, in the chapter's order; the value is the arm's label."""

    CNN = "Chapter 1's CNN, from scratch"  # lfd13.cnn.build_digits_cnn on the 8×8 digits, its own recipe
    SCRATCH = "transformer, from scratch"  # the MAE encoder's architecture, the weights MAE pre-training started from
    SCRATCH_LONG = "transformer, from scratch, longer"  # the same, trained Settings.long_steps steps
    MAE = "transformer, from MAE"  # the shipped pre-trained MAE encoder

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class Settings:
    """The fine-tuning comparison and the sweep probes."""

    seeds: tuple[int, ...] = (0, 1, 2)  # the draws of labelled images; each also seeds the head and the batch order
    n_per_class: int = 10  # labelled training images per class (the probes' too)
    n_val: int = 10  # further images per class from the training pool, for early stopping
    eval_every: int = 20  # steps between validation scores
    # both transformer arms: a linear head on the mean of the patch tokens (lfd13.mae.MAEClassifier)
    transformer_recipe: Recipe = field(default_factory=lambda: Recipe(steps=160, lr=2e-3, batch_size=25,
                                                                      weight_decay=0.05, warmup=10))
    cnn_recipe: Recipe = field(default_factory=lambda: replace(DIGITS_CNN_RECIPE, steps=160))  # its own recipe, as long
    # each arm's learning-rate grid; the recipes' own lr is unused. Each grid is extended until the rate chosen
    # on validation is not at an edge (Result.chosen_lr; tests/unit/test_mae.py checks the shipped file)
    cnn_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    scratch_lrs: tuple[float, ...] = (1e-3, 2e-3, 4e-3)
    mae_lrs: tuple[float, ...] = (5e-4, 1e-3, 2e-3)
    # the transformer from scratch, trained longer: does the budget bind for it?
    long_steps: int = 480
    long_lrs: tuple[float, ...] = (2e-3, 4e-3, 8e-3)
    preset: str = "mae-digits"  # the transformer's architecture (that of the MAE checkpoint)
    init_seed: int = 0  # the transformer from scratch starts from the weights MAE pre-training started from
    checkpoint: str = pretraining.CHECKPOINT  # the pre-trained MAE fine-tuned by Arm.MAE
    sweep_ratios: tuple[float, ...] = pretraining.SWEEP.ratios  # the sweep checkpoints probed on their [CLS] token

    @property
    def steps(self) -> int:
        """The longest run of any arm."""
        return max(self.transformer_recipe.steps, self.cnn_recipe.steps, self.long_steps)

    def lrs(self, arm: Arm) -> tuple[float, ...]:
        """The learning rates ``arm`` is trained with, one run per rate and draw."""
        return {Arm.CNN: self.cnn_lrs, Arm.SCRATCH: self.scratch_lrs, Arm.SCRATCH_LONG: self.long_lrs,
                Arm.MAE: self.mae_lrs}[Arm(arm)]

    def recipe(self, arm: Arm, lr: float) -> Recipe:
        """``arm``'s recipe with learning rate ``lr``."""
        if Arm(arm) is Arm.SCRATCH_LONG:
            return replace(self.transformer_recipe, lr=lr, steps=self.long_steps)
        return replace(self.cnn_recipe if Arm(arm) is Arm.CNN else self.transformer_recipe, lr=lr)


#: The shipped run.
SETTINGS = Settings()
#: The same measurement in seconds: one draw, a few steps, the tiny MAE checkpoints of mae_pretraining.TINY.
TINY = Settings(seeds=(0,), n_per_class=3, n_val=1, eval_every=2,
                transformer_recipe=Recipe(steps=4, lr=2e-3, batch_size=10, weight_decay=0.05, warmup=1),
                cnn_recipe=replace(DIGITS_CNN_RECIPE, steps=4, batch_size=10), cnn_lrs=(3e-3, 1e-2),
                scratch_lrs=(1e-3, 2e-3), mae_lrs=(1e-3, 2e-3), long_steps=6, long_lrs=(1e-3, 2e-3), preset=pretraining.TINY.preset, sweep_ratios=(0.75,))


@dataclass(frozen=True)
class Result:
    """What the comparison and the probes measured."""

    grid: dict[Arm, dict[float, dict[int, TrainTestResult]]]  # arm -> learning rate -> draw (seed) -> its run
    seconds: float  # wall-clock seconds of all fine-tuning runs
    sweep_probes: dict[float, FewLabelResult]  # mask ratio -> the [CLS] probe of its sweep checkpoint, one score per draw

    def validation(self, arm: Arm, lr: float) -> float:
        """Mean over the draws of the best validation accuracy that ``arm`` reached with ``lr``."""
        runs = self.grid[Arm(arm)][lr].values()
        return sum(r.best_validation for r in runs) / len(runs)

    def chosen_lr(self, arm: Arm) -> float:
        """``arm``'s learning rate: the best mean validation accuracy over the draws (the smallest rate on ties)."""
        # means rounded, so that float noise in a sum does not break a tie
        return best_learning_rate({lr: round(self.validation(arm, lr), 6) for lr in self.grid[Arm(arm)]})

    @property
    def runs(self) -> dict[Arm, dict[int, TrainTestResult]]:
        """arm -> draw (seed) -> its run with the arm's chosen learning rate: test accuracy, chosen step, validation."""
        return {arm: self.grid[arm][self.chosen_lr(arm)] for arm in self.grid}

    def accuracies(self, arm: Arm) -> list[float]:
        """The arm's test accuracies at its chosen learning rate, one per draw in seed order."""
        return [r.accuracy for _, r in sorted(self.runs[Arm(arm)].items())]

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds,
                "grid": {arm.value: {repr(lr): {str(s): r.to_record() for s, r in runs.items()} for lr, runs in lrs.items()}
                         for arm, lrs in self.grid.items()},
                "sweep_probes": {str(ratio): {"n_per_class": p.n_per_class, "accuracies": list(p.accuracies)}
                                 for ratio, p in self.sweep_probes.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(grid={Arm(a): {float(lr): {int(s): TrainTestResult.from_record(r) for s, r in runs.items()}
                                  for lr, runs in lrs.items()} for a, lrs in d["grid"].items()},
                   seconds=d["seconds"],
                   sweep_probes={float(r): FewLabelResult(p["n_per_class"], tuple(p["accuracies"]))
                                 for r, p in d["sweep_probes"].items()})


def finetune_arm(arm: Arm, seed: int, settings: Settings = SETTINGS, *, lr: float, checkpoints: Path | str | None = None,
                 device: Any = None) -> TrainTestResult:
    """Train one arm on draw ``seed`` with learning rate ``lr``; test its weights of best validation accuracy.

    Every arm trains on the same ``settings.n_per_class`` labelled images per class, is scored on
    ``settings.n_val`` further ones every ``settings.eval_every`` steps, and keeps the best
    (:func:`lfd13.evaluation.train_and_test`). The transformers get a linear head on the mean of the
    patch tokens (:class:`lfd13.mae.MAEClassifier`) on the digits at the MAE's image size; the CNN
    sees the native 8×8 digits. ``checkpoints``: where the MAE checkpoint is (default: the package's).
    """
    arm = Arm(arm)
    config = mae_config(settings.preset)
    digits = load_digits(size=config.image_size)
    if arm is Arm.CNN:
        data, model = load_digits(), build_digits_cnn(seed=seed)
    else:
        if arm in (Arm.SCRATCH, Arm.SCRATCH_LONG):
            encoder = build_mae(config, seed=settings.init_seed)
        else:
            encoder = pretraining.load(settings.checkpoint, checkpoints).model
            if replace(encoder.config, mask_ratio=config.mask_ratio) != config:
                raise ValueError(f"checkpoint {settings.checkpoint!r} is not a {settings.preset!r} MAE; set Settings.preset")
        with seeded(seed):  # the head's initialisation
            model = MAEClassifier(encoder, num_classes=10)
        data = digits
    assert torch.equal(data.y_train, digits.y_train)  # same split, same order: index i is the same image at both sizes
    train_i, val_i = split_indices(digits.y_train, settings.n_per_class, settings.n_val, seed=seed)
    return train_and_test(model, (data.x_train[train_i], data.y_train[train_i]), (data.x_test, data.y_test),
                          settings.recipe(arm, lr),
                          seed=seed, device=device, validation=(data.x_train[val_i], data.y_train[val_i]),
                          eval_every=settings.eval_every)


def cls_probe(model: MaskedAutoencoder, digits: DigitsSplit, *, n_per_class: int, seeds: Sequence[int],
              device: Any = None) -> FewLabelResult:
    """A linear probe of a frozen MAE on its [CLS] token, ``n_per_class`` labels per class, one score per seed.

    The regularisation is chosen by cross-validation on the labelled images (``linear_probe(c="cv")``);
    one BLAS thread, as in the chapter, so that a recorded probe and a live one compute alike.
    ``digits``: the digits at the model's image size.
    """
    with threadpool_limits(1):
        encode = partial(model.encode, pool="cls")
        train_f = extract_features(encode, digits.x_train, device=device)
        test_f = extract_features(encode, digits.x_test, device=device)
        return few_label_evaluation(train_f, digits.y_train, test_f, digits.y_test, n_per_class=(n_per_class,), seeds=seeds,
                                    fit_and_score=partial(linear_probe, c="cv"))[0]


def run(settings: Settings = SETTINGS, *, checkpoints: Path | str | None = None, device: Any = None,
        progress: bool | None = None) -> Result:
    """Every arm with every rate of its grid on every draw, then the [CLS] probe of every sweep checkpoint."""
    grid: dict[Arm, dict[float, dict[int, TrainTestResult]]] = {arm: {lr: {} for lr in settings.lrs(arm)} for arm in Arm}
    start = time.perf_counter()
    for arm in Arm:
        for lr in settings.lrs(arm):
            for seed in settings.seeds:
                grid[arm][lr][seed] = res = finetune_arm(arm, seed, settings, lr=lr, checkpoints=checkpoints, device=device)
                if progress_enabled(progress):
                    print(f"  {arm}, lr {lr:g}, seed {seed}: validation {max(v for _, v in res.history.evals['validation']):.2f}, "
                          f"accuracy {res.accuracy:.3f} at step {res.best_step}", flush=True)
    seconds = round(time.perf_counter() - start, 1)
    digits = load_digits(size=mae_config(settings.preset).image_size)
    probes = {}
    for ratio in settings.sweep_ratios:
        model = pretraining.load(pretraining.sweep_checkpoint(ratio), checkpoints).model
        probes[ratio] = cls_probe(model, digits, n_per_class=settings.n_per_class, seeds=settings.seeds, device=device)
    return Result(grid, seconds, probes)


def load(directory: Path | str | None = None) -> Result:
    """What the shipped run measured, from ``lfd13/results/mae_finetuning.json`` (or ``directory``)."""
    return Result.from_dict(shipped.load_result(RESULT, directory=directory).result)


def _write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> None:
    result = run(settings, checkpoints=checkpoints, device=device, progress=progress)
    shipped.save_result(RESULT, command=command("mae-finetuning"), settings=asdict(settings), result=result.to_dict(),
                        directory=results)


def _check(*, checkpoints: Path, results: Path) -> None:
    file = shipped.load_result(RESULT, directory=results)
    result = Result.from_dict(file.result)
    seeds = file.settings["seeds"]
    for arm in Arm:
        for lr in file.settings[{Arm.CNN: "cnn_lrs", Arm.SCRATCH: "scratch_lrs", Arm.SCRATCH_LONG: "long_lrs",
                                 Arm.MAE: "mae_lrs"}[arm]]:
            if sorted(result.grid[arm].get(lr, {})) != sorted(seeds):
                raise ValueError(f"{RESULT}: {arm} at lr {lr} lacks runs for draws {seeds}; re-create it with `{file.command}`")
    if any(len(p.accuracies) != len(seeds) for p in result.sweep_probes.values()):
        raise ValueError(f"{RESULT}: a sweep probe lacks a draw; re-create it with `{file.command}`")


#: This module's row of the recreate table.
ENTRY = Entry(name="mae-finetuning",
              doc="Chapter 3's fine-tuning arms (4 arms x their learning rates x 3 draws) and the [CLS] probes of the sweep -> mae_finetuning.json",
              settings=SETTINGS, tiny=TINY, files=lambda s: (f"{RESULT}.json",), write=_write, check=_check)

#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (ENTRY,)
