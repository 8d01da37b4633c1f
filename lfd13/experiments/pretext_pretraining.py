"""Chapter 1b's pretext families pre-trained: one encoder per family and seed, probed on validation as it trains.

Every family of :mod:`lfd13.pretext` trains the same :class:`~lfd13.pretext.ConvEncoder` on the
digits' training images for the same number of steps, once per seed. Each run is a shipped
checkpoint ``pretext_<family>_seed<s>`` (weights, config, loss curve, seconds); the linear
probes of both layers on a validation split of the training pool, at the steps of
:attr:`Settings.probe_steps`, are this experiment's result (``lfd13/results/pretext_pretraining.json``).
No test image is used: the chapter chooses the layer and the family on these probes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lfd13 import pretext, shipped
from lfd13.data import load_digits
from lfd13.experiments import Entry, command
from lfd13.sampling import split_indices

__all__ = ["Settings", "SETTINGS", "TINY", "ValidationProbe", "Result", "checkpoint_name", "pretrain", "run", "load",
           "load_tasks", "settings_of", "training_recipe", "files", "write", "check", "ENTRIES"]

NAME = "pretext"  # the row of lfd13.recreate
RESULT = "pretext_pretraining"  # the result file, lfd13/results/pretext_pretraining.json


@dataclass(frozen=True)
class Settings:
    """What the pretext pre-training runs: which families and seeds, how long, and how it is probed."""

    families: tuple[str, ...] = pretext.FAMILIES  # one run per family and seed
    seeds: tuple[int, ...] = (0, 1, 2)  # a run's seed: its initial weights, batch order and random rotations / masks / views
    preset: str = "pretext-digits"  # encoder and optimiser preset of lfd13.pretext.PRESETS
    steps: int = 2000  # optimiser steps, the same for every family
    rounds: int = 20  # clustering: a fresh k-means every steps / rounds = 100 steps (about 10 epochs)
    probe_steps: tuple[int, ...] = (0, 100, 250, 500, 1000, 1500, 2000)  # when the validation probe runs (0 = initialisation)
    n_per_class: int = 10  # labelled images per class the validation probe is fitted on
    n_val_per_class: int = 30  # validation images per class it is scored on (training pool, disjoint; no test image)
    split_seed: int = 0  # seed of that split (lfd13.sampling.split_indices)


#: The shipped run.
SETTINGS = Settings()
#: Every family for two steps on the smallest encoder, one seed, probed once at the end on one label per class (no cross-validation).
TINY = Settings(seeds=(0,), preset="pretext-nano", steps=2, rounds=1, probe_steps=(2,), n_per_class=1, n_val_per_class=1)


@dataclass(frozen=True)
class ValidationProbe:
    """One run's linear probes on the validation split, by pre-training step."""

    steps: tuple[int, ...]  # the pre-training steps probed (Settings.probe_steps)
    accuracy: dict[str, tuple[float, ...]]  # layer of lfd13.pretext.LAYERS -> validation accuracy at each step
    seconds: float  # time spent probing (not counted in the run's training seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"step": list(self.steps), **{k: list(v) for k, v in self.accuracy.items()}, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationProbe:
        return cls(steps=tuple(d["step"]), accuracy={k: tuple(d[k]) for k in pretext.LAYERS}, seconds=d["seconds"])


@dataclass(frozen=True)
class Result:
    """The validation probes of every run: ``probes[family][i]`` is the run of seed ``Settings.seeds[i]``."""

    probes: dict[str, tuple[ValidationProbe, ...]]

    def final(self, family: str, layer: str) -> np.ndarray:
        """[seeds] the validation accuracy of ``layer`` at the end of pre-training, one per seed."""
        return np.array([p.accuracy[layer][-1] for p in self.probes[family]])

    def best_by_validation(self) -> tuple[str, str]:
        """The (family, layer) whose validation probe at the end of pre-training is best on average over seeds."""
        return max(((f, layer) for f in self.probes for layer in pretext.LAYERS), key=lambda k: float(self.final(*k).mean()))

    def to_dict(self) -> dict[str, Any]:
        return {"validation_probe": {f: [p.to_dict() for p in ps] for f, ps in self.probes.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(probes={f: tuple(ValidationProbe.from_dict(p) for p in ps) for f, ps in d["validation_probe"].items()})


def checkpoint_name(family: str, seed: int) -> str:
    """``"pretext_rotation_seed0"`` etc."""
    return f"pretext_{family}_seed{seed}"


def _per_10_steps(values: list[float]) -> list[float]:
    return [round(sum(values[i : i + 10]) / len(values[i : i + 10]), 5) for i in range(0, len(values), 10)]


def pretrain(
    family: str, seed: int, settings: Settings = SETTINGS, *, digits: Any = None, device: Any = None, progress: bool | None = None
) -> tuple[nn.Module, dict[str, Any], ValidationProbe]:
    """Pre-train one family on the digits' training images, probing both layers on the validation split at ``probe_steps``.

    Returns:
        ``(task on the CPU in eval mode, training, probe)``: ``training`` holds the final loss, the
        loss (and pretext accuracy) per 10 steps and the seconds of training, probes excluded.
    """
    data = digits if digits is not None else load_digits()
    config = pretext.pretext_config(settings.preset, steps=settings.steps, rounds=settings.rounds)
    task = pretext.build_task(family, config, seed=seed)
    train_idx, val_idx = split_indices(data.y_train, settings.n_per_class, settings.n_val_per_class, seed=settings.split_seed)
    probes: dict[str, list[float]] = {layer: [] for layer in pretext.LAYERS}
    steps: list[int] = []
    probe_seconds = [0.0]

    def probe(i: int, _: Any = None) -> None:
        if i not in settings.probe_steps:
            return
        start = time.perf_counter()
        acc = pretext.probe_layers(task.encoder, data.x_train, data.y_train, train_idx, val_idx, device=device)
        task.train()
        steps.append(i)
        for layer, value in acc.items():
            probes[layer].append(round(value, 4))
        probe_seconds[0] += time.perf_counter() - start

    probe(0)
    start = time.perf_counter()
    history = pretext.train_task(task, data.x_train, seed=seed, device=device, progress=progress, callbacks=(probe,))
    training: dict[str, Any] = {
        "final_loss": round(history.last("loss", 50), 5),
        "seconds": round(time.perf_counter() - start - probe_seconds[0], 1),
        "loss_per_10_steps": _per_10_steps(history["loss"]),
        "torch": torch.__version__,
    }
    if "acc" in history.metrics:
        training["pretext_acc_per_10_steps"] = _per_10_steps(history["acc"])
    validation = ValidationProbe(steps=tuple(steps), accuracy={k: tuple(v) for k, v in probes.items()},
                                 seconds=round(probe_seconds[0], 1))
    return task.cpu().eval(), training, validation


def run(
    settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None,
    on_trained: Callable[[str, int, nn.Module, dict[str, Any]], None] | None = None,
) -> Result:
    """Pre-train every family and seed; ``on_trained(family, seed, task, training)`` sees each run as it ends."""
    digits = load_digits()
    probes: dict[str, tuple[ValidationProbe, ...]] = {}
    for family in settings.families:
        per_seed = []
        for seed in settings.seeds:
            task, training, validation = pretrain(family, seed, settings, digits=digits, device=device, progress=progress)
            if on_trained is not None:
                on_trained(family, seed, task, training)
            per_seed.append(validation)
        probes[family] = tuple(per_seed)
    return Result(probes=probes)


def training_recipe(family: str, seed: int, settings: Settings) -> dict[str, Any]:
    """The ``recipe`` a checkpoint's JSON records: what its run trained, with which preset, seed and length."""
    return {"family": family, "preset": settings.preset, "seed": seed, "steps": settings.steps, "rounds": settings.rounds}


def files(settings: Settings) -> tuple[str, ...]:
    """The checkpoints ``pretext_<family>_seed<s>`` (weights and JSON) and the result file."""
    names = [checkpoint_name(f, s) for f in settings.families for s in settings.seeds]
    return (*(f"{n}.{ext}" for n in names for ext in ("safetensors", "json")), f"{RESULT}.json")


def write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> Result:
    """Pre-train every run, save each as a checkpoint as soon as it ends, then save the probes as the result file."""

    def save(family: str, seed: int, task: nn.Module, training: dict[str, Any]) -> None:
        shipped.save_model(checkpoint_name(family, seed), task, kind="pretext", command=command(NAME),
                           config=pretext.task_config(task), recipe=training_recipe(family, seed, settings),
                           result=training, directory=checkpoints)

    result = run(settings, device=device, progress=progress, on_trained=save)
    shipped.save_result(RESULT, command=command(NAME), settings=asdict(settings), result=result.to_dict(), directory=results)
    return result


def load(directory: Path | str | None = None) -> Result:
    """The validation probes of the shipped run (or of the result file in ``directory``)."""
    return Result.from_dict(shipped.load_result(RESULT, directory=directory).result)


def load_tasks(
    settings: Settings = SETTINGS, *, directory: Path | str | None = None
) -> dict[str, list[tuple[nn.Module, shipped.CheckpointInfo]]]:
    """family -> ``[(task, info)]``, one per seed of ``settings``: the pre-trained checkpoints, hashes checked."""
    return {f: [pretext.load_pretext_task(checkpoint_name(f, s), directory=directory) for s in settings.seeds]
            for f in settings.families}


def settings_of(record: dict[str, Any]) -> Settings:
    """The :class:`Settings` a result file recorded (JSON lists back to tuples)."""
    return Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})


def check(*, checkpoints: Path, results: Path) -> None:
    """Load every checkpoint of the run recorded in the result file; runs, steps and probes must agree."""
    written = shipped.load_result(RESULT, directory=results)
    settings, result = settings_of(written.settings), Result.from_dict(written.result)
    for family, per_seed in load_tasks(settings, directory=checkpoints).items():
        for (task, info), probe in zip(per_seed, result.probes[family], strict=True):
            assert pretext.family_of(task) == family and info.recipe["steps"] == settings.steps, info.name
            assert probe.steps == settings.probe_steps, info.name


ENTRIES: tuple[Entry, ...] = (
    Entry(NAME, "the four pretext families, three seeds each, probed on validation as they train "
          "(checkpoints pretext_<family>_seed<s>, result pretext_pretraining)",
          SETTINGS, TINY, files, write, check),
)
