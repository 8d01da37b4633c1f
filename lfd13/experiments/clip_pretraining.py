"""Chapter 4's CLIPs: three contrastive pre-training runs on the coloured-shape captions, shipped as checkpoints.

Each run trains :func:`lfd13.clip.build_clip` with open_clip's ``ClipLoss``
(:func:`lfd13.clip.train_clip`) on the training pairs of
:func:`lfd13.data.shapes.compositional_split`, whose held-out colour-shape combinations the model
never sees; only the seed (initialisation and batch order) differs between the runs, so the
chapter's figures are means over independent pre-training runs. Each model ships as
``<name>_seed<seed>`` (:func:`lfd13.clip.load_trained_clip`), with its training run's
measurements (final loss, seconds, loss curve) in its JSON file::

    python -m lfd13.recreate clip
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from open_clip.model import CLIP

from lfd13 import clip, shipped
from lfd13.data import shapes
from lfd13.experiments import Entry, command
from lfd13.runtime import preset
from lfd13.train import Recipe

#: This experiment's row in :data:`lfd13.recreate.ENTRIES`.
NAME = "clip"


@dataclass(frozen=True)
class Settings:
    """The shipped CLIP runs: one model, one world, one data split, one recipe, several seeds."""

    preset: str = "clip-shapes"  # model preset in lfd13.clip.PRESETS
    world: str = "shapes-24"  # the coloured-shape world in lfd13.data.shapes.PRESETS
    n_train: int = 20_000  # training pairs of compositional_split (seen combinations only)
    n_test_per_combo: int = 40  # test images per combination drawn by the same split (the chapter's test set)
    split_seed: int = 0  # seed of that split (the same for every run)
    seeds: tuple[int, ...] = (0, 1, 2)  # one model per seed; each seeds the initialisation and the batch order
    # AdamW with warm-up and cosine decay; the chapter's live run uses it for a quarter of the steps
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=2400, lr=3e-3, batch_size=128, weight_decay=0.1, warmup=20))
    name: str = "clip_shapes"  # checkpoint names: <name>_seed<seed>


#: The shipped run.
SETTINGS = Settings()

#: The same run in about a second (a tiny model and world, two steps, one seed).
TINY = Settings(preset="clip-tiny", world="shapes-tiny", n_train=64, n_test_per_combo=1, seeds=(0,),
                recipe=Recipe(steps=2, lr=3e-3, batch_size=16, weight_decay=0.1, warmup=1), name="clip_tiny")


@dataclass(frozen=True)
class TrainingRun:
    """What one pre-training run measured (the ``result`` of its checkpoint's JSON)."""

    final_loss: float  # mean contrastive loss of the last 50 steps
    seconds: float  # wall-clock seconds of training
    loss_per_50_steps: tuple[float, ...]  # the loss curve, averaged over blocks of 50 steps
    torch: str  # the torch version that trained it

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loss_per_50_steps": list(self.loss_per_50_steps)}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TrainingRun:
        return cls(final_loss=record["final_loss"], seconds=record["seconds"],
                   loss_per_50_steps=tuple(record["loss_per_50_steps"]), torch=record["torch"])


@dataclass(frozen=True)
class Result:
    """The trained CLIPs, one per seed, and what each training run measured."""

    runs: dict[int, TrainingRun]  # seed -> its training run
    models: dict[int, CLIP] = field(default_factory=dict, compare=False, repr=False)  # seed -> model (CPU, eval mode)

    def to_dict(self) -> dict[str, Any]:
        return {str(seed): run.to_dict() for seed, run in self.runs.items()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Result:
        return cls(runs={int(seed): TrainingRun.from_dict(run) for seed, run in record.items()})


def checkpoint_name(settings: Settings, seed: int) -> str:
    """``clip_shapes_seed0``: the checkpoint of one seed's run."""
    return f"{settings.name}_seed{seed}"


def files(settings: Settings) -> tuple[str, ...]:
    """The files this experiment writes (weights and JSON of each seed's checkpoint)."""
    return tuple(f"{checkpoint_name(settings, seed)}.{ext}" for seed in settings.seeds for ext in ("safetensors", "json"))


def data_split(settings: Settings) -> shapes.ShapesSplit:
    """The training pairs and the test images every run shares."""
    world = preset(shapes.PRESETS, settings.world, what="shapes world")
    return shapes.compositional_split(world, n_train=settings.n_train, n_test_per_combo=settings.n_test_per_combo,
                                      seed=settings.split_seed)


def _recipe_record(settings: Settings, seed: int) -> dict[str, Any]:
    """The ``recipe`` of one seed's checkpoint JSON: what this run was trained with."""
    return {"preset": settings.preset, "world": settings.world, "n_train": settings.n_train,
            "split_seed": settings.split_seed, "seed": seed, "recipe": asdict(settings.recipe)}


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Train one CLIP per seed of ``settings`` on the shared split; return the models and their runs."""
    split = data_split(settings)
    config = preset(clip.PRESETS, settings.preset, what="CLIP")
    tokens = clip.tokenize(split.train.captions, context_length=config.context_length)
    runs, models = {}, {}
    for seed in settings.seeds:
        model = clip.build_clip(config, texts=split.train.captions, seed=seed)
        start = time.perf_counter()
        history = clip.train_clip(model, split.train.images, tokens, settings.recipe, seed=seed, device=device,
                                  progress=progress)
        losses = history["loss"]
        blocks = [losses[i : i + 50] for i in range(0, len(losses), 50)]
        runs[seed] = TrainingRun(
            final_loss=round(history.last("loss", 50), 4), seconds=round(time.perf_counter() - start, 1),
            loss_per_50_steps=tuple(round(sum(b) / len(b), 5) for b in blocks), torch=torch.__version__,
        )
        models[seed] = model.cpu().eval()
        print(f"{checkpoint_name(settings, seed)}: loss {runs[seed].final_loss}, {runs[seed].seconds} s", flush=True)
    return Result(runs=runs, models=models)


def write(settings: Settings = SETTINGS, *, checkpoints: Path, results: Path, device: Any = None,
          progress: bool | None = None) -> Result:
    """Train (:func:`run`) and save each seed's model as a checkpoint in ``checkpoints`` (no result file)."""
    result = run(settings, device=device, progress=progress)
    config = preset(clip.PRESETS, settings.preset, what="CLIP")
    for seed, model in result.models.items():
        shipped.save_model(checkpoint_name(settings, seed), model, kind=clip.KIND, command=command(NAME),
                           config=clip.checkpoint_config(model, config), recipe=_recipe_record(settings, seed),
                           result=result.runs[seed].to_dict(), directory=checkpoints)
    return result


def load(directory: Path | str | None = None, settings: Settings = SETTINGS) -> Result:
    """The shipped models (or those in ``directory``) and what their training runs measured, hashes checked."""
    runs, models = {}, {}
    for seed in settings.seeds:
        models[seed], info = clip.load_trained_clip(checkpoint_name(settings, seed), directory=directory)
        runs[seed] = TrainingRun.from_dict(info.result)
    return Result(runs=runs, models=models)


def check(*, checkpoints: Path, results: Path) -> Result:
    """Load what this row wrote into ``checkpoints`` (the shipped run's, else the tiny run's), hashes checked."""
    return load(checkpoints, SETTINGS if (Path(checkpoints) / files(SETTINGS)[-1]).is_file() else TINY)


#: This module's rows of the recreate table (:data:`lfd13.recreate.ENTRIES`).
ENTRIES: tuple[Entry, ...] = (
    Entry(NAME, "Chapter 4: three CLIPs (seeds 0-2) trained contrastively on the coloured-shape captions",
          SETTINGS, TINY, files, write, check),
)

__all__ = ["NAME", "SETTINGS", "TINY", "ENTRIES", "Result", "Settings", "TrainingRun", "checkpoint_name", "check",
           "data_split", "files", "load", "run", "write"]
