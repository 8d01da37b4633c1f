"""Chapter 3's MAE pre-training on the digits, and its mask-ratio sweep (shipped checkpoints).

Two rows of :data:`lfd13.recreate.ENTRIES`:

- ``mae``: one MAE (:mod:`lfd13.mae`, preset ``mae-digits``, mask ratio 0.75) pre-trained for 6,000
  steps with MAE's AdamW recipe (betas 0.9/0.95, weight decay 0.05, warm-up, cosine), written as
  the checkpoint ``mae_digits``;
- ``mae-sweep``: the same model and recipe with mask ratios 0.25, 0.5, 0.75 and 0.9, each run half as
  long (3,000 steps, so that the four runs stay affordable), written as ``mae_digits_ratio25`` … ``90``.

Each checkpoint's JSON keeps what its training run measured (:class:`Training`); what the chapter
measures *with* the checkpoints (fine-tuning, probes) is :mod:`lfd13.experiments.mae_finetuning`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from lfd13 import shipped
from lfd13.data import load_digits
from lfd13.experiments import Entry, command
from lfd13.mae import KIND, MaskedAutoencoder, build_mae, load_mae, mae_config, mae_step
from lfd13.runtime import make_generator
from lfd13.train import Recipe, progress_enabled, train

__all__ = [
    "CHECKPOINT",
    "ENTRIES",
    "LOSS_WINDOW",
    "SETTINGS",
    "SWEEP",
    "TINY",
    "TINY_SWEEP",
    "Result",
    "Settings",
    "SweepSettings",
    "Training",
    "load",
    "load_sweep",
    "plateau_exit_step",
    "run",
    "sweep_checkpoint",
]

#: The file stem of the row ``mae``'s checkpoint.
CHECKPOINT = "mae_digits"

#: A checkpoint's loss curve is the training loss averaged over consecutive windows of this many steps.
LOSS_WINDOW = 50


def sweep_checkpoint(mask_ratio: float) -> str:
    """The file stem of the sweep's checkpoint for ``mask_ratio`` (0.25 -> ``"mae_digits_ratio25"``)."""
    return f"{CHECKPOINT}_ratio{round(100 * mask_ratio):02d}"


@dataclass(frozen=True)
class Settings:
    """One MAE pre-training run on the digits' training images (labels unused)."""

    preset: str = "mae-digits"  # model preset in lfd13.mae.PRESETS
    image_size: int = 16  # digits upsampled from 8×8 (the preset's image size)
    mask_ratio: float = 0.75  # share of patches removed per image
    seed: int = 0  # seeds the initialisation and the batch order
    mask_seed: int = 1  # seeds the masks' own generator (the run's seed + 1)
    # the loss leaves the mean-image plateau only after ~700 steps, hence a long run
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=6000, lr=2e-3, batch_size=64, weight_decay=0.05,
                                                          warmup=50, betas=(0.9, 0.95)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        """The settings as :func:`dataclasses.asdict` wrote them into a checkpoint's JSON (``recipe``)."""
        recipe = {**d["recipe"], "betas": tuple(d["recipe"]["betas"])}
        return cls(**{**d, "recipe": Recipe(**recipe)})


@dataclass(frozen=True)
class SweepSettings:
    """The mask-ratio sweep: one run of ``run``'s settings per ratio."""

    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)  # the mask ratios, one pre-training run each
    # the main run's model and recipe, half as many steps, so that the four runs stay affordable
    run: Settings = field(default_factory=lambda: replace(SETTINGS, recipe=replace(SETTINGS.recipe, steps=3000)))

    def runs(self) -> dict[str, Settings]:
        """Checkpoint name -> the settings of its run."""
        return {sweep_checkpoint(r): replace(self.run, mask_ratio=r) for r in self.ratios}


#: The shipped run (``mae_digits``).
SETTINGS = Settings()
#: The same run in a few steps of the unit-test model (8×8 digits).
TINY = Settings(preset="mae-nano", image_size=8, recipe=Recipe(steps=4, lr=2e-3, batch_size=16, warmup=1, betas=(0.9, 0.95)))
#: The shipped sweep (``mae_digits_ratio25`` … ``mae_digits_ratio90``).
SWEEP = SweepSettings()
#: The sweep in a few steps: the same ratios, each a tiny run.
TINY_SWEEP = replace(SWEEP, run=TINY)


@dataclass(frozen=True)
class Training:
    """What one pre-training run measured; kept in its checkpoint's JSON (``result``)."""

    final_loss: float  # mean loss over the last LOSS_WINDOW steps
    seconds: float  # wall-clock seconds of the training
    loss_per_50_steps: tuple[float, ...]  # the loss averaged over each LOSS_WINDOW steps, in order
    torch: str  # the torch version that trained it

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loss_per_50_steps": list(self.loss_per_50_steps)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Training:
        return cls(final_loss=d["final_loss"], seconds=d["seconds"], loss_per_50_steps=tuple(d["loss_per_50_steps"]),
                   torch=d["torch"])


@dataclass(frozen=True)
class Result:
    """A pre-trained MAE with the settings that made it and what its run measured."""

    model: MaskedAutoencoder  # the pre-trained MAE (on the CPU, in eval mode once loaded)
    settings: Settings  # the run that made it
    training: Training  # what the run measured
    info: shipped.CheckpointInfo | None = None  # the checkpoint it was loaded from (None straight after run)


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Pre-train an MAE on the digits' training images with ``settings`` (see :func:`lfd13.mae.mae_step`)."""
    data = load_digits(size=settings.image_size)
    model = build_mae(mae_config(settings.preset, mask_ratio=settings.mask_ratio), seed=settings.seed)
    step = partial(mae_step, generator=make_generator(settings.mask_seed))
    steps = settings.recipe.steps

    def report(i: int, values: Any) -> None:
        if progress_enabled(progress) and i % 250 == 0:
            print(f"  mask ratio {settings.mask_ratio}: step {i}/{steps}, loss {values['loss']:.4f}", flush=True)

    start = time.perf_counter()
    history = train(model, (data.x_train,), step, settings.recipe, seed=settings.seed, device=device, progress=progress,
                    desc=f"MAE {settings.mask_ratio}", callbacks=(report,))
    losses = history["loss"]
    windows = [losses[i : i + LOSS_WINDOW] for i in range(0, len(losses), LOSS_WINDOW)]
    training = Training(final_loss=round(history.last("loss", LOSS_WINDOW), 5), seconds=round(time.perf_counter() - start, 1),
                        loss_per_50_steps=tuple(round(sum(w) / len(w), 5) for w in windows), torch=torch.__version__)
    return Result(model.cpu().eval(), settings, training)


def load(name: str = CHECKPOINT, directory: Path | str | None = None) -> Result:
    """A shipped pre-trained MAE (default ``mae_digits``), after a sha256 check of its files."""
    model, info = load_mae(name, directory=directory)
    return Result(model, Settings.from_dict(info.recipe), Training.from_dict(info.result), info)


def load_sweep(sweep: SweepSettings = SWEEP, directory: Path | str | None = None) -> dict[float, Result]:
    """The sweep's checkpoints: mask ratio -> :class:`Result`, in ``sweep.ratios`` order."""
    return {r: load(sweep_checkpoint(r), directory) for r in sweep.ratios}


def plateau_exit_step(loss_per_window: Sequence[float], baseline: float, *, margin: float = 0.9,
                      window: int = LOSS_WINDOW) -> int | None:
    """The step at which a pre-training run left the mean-image plateau, from its recorded loss.

    An MAE first learns to predict the mean training image and sits at that error (``baseline``)
    before it learns to use the visible patches. The run counts as off the plateau at the end of
    the first window whose mean loss is below ``margin · baseline``.

    Args:
        loss_per_window: the run's loss averaged over consecutive windows of ``window`` steps
            (:attr:`Training.loss_per_50_steps`).
        baseline: the plateau's loss, e.g. the MSE of predicting every pixel's training mean.
        margin: how far below the baseline counts as having left it (0.9: ten per cent below).
        window: steps per entry of ``loss_per_window``.

    Returns:
        The step (a multiple of ``window``), or ``None`` when the run never got below the margin.
    """
    if baseline <= 0 or not 0 < margin <= 1 or window < 1:
        raise ValueError(f"need baseline > 0, 0 < margin <= 1 and window >= 1, got {baseline}, {margin}, {window}")
    for i, loss in enumerate(loss_per_window):
        if loss < margin * baseline:
            return window * (i + 1)
    return None


# ----------------------------------------------------------------- the rows of lfd13.recreate
def _save(result: Result, name: str, row: str, checkpoints: Path) -> None:
    shipped.save_model(name, result.model, kind=KIND, command=command(row), config=asdict(result.model.config),
                       recipe=asdict(result.settings), result=result.training.to_dict(), directory=checkpoints)


def _check(names: Sequence[str], checkpoints: Path) -> None:
    """Load every checkpoint a row wrote (hashes verified); its settings must be those of its name."""
    for name in names:
        loaded = load(name, checkpoints)
        if name != CHECKPOINT and name != sweep_checkpoint(loaded.settings.mask_ratio):
            raise ValueError(f"{name} was pre-trained with mask ratio {loaded.settings.mask_ratio}; "
                             f"re-create it with `{loaded.info.command}`")


def _write_mae(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> None:
    _save(run(settings, device=device, progress=progress), CHECKPOINT, "mae", checkpoints)


def _write_sweep(sweep: SweepSettings, *, checkpoints: Path, results: Path, device: Any = None,
                 progress: bool | None = None) -> None:
    for name, settings in sweep.runs().items():
        _save(run(settings, device=device, progress=progress), name, "mae-sweep", checkpoints)


def _files(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{n}.{ext}" for n in names for ext in ("safetensors", "json"))


#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (
    Entry(name="mae", doc="Chapter 3's MAE on the digits, mask ratio 0.75, 6,000 steps -> checkpoint mae_digits",
          settings=SETTINGS, tiny=TINY, files=lambda s: _files([CHECKPOINT]), write=_write_mae,
          check=lambda *, checkpoints, results: _check([CHECKPOINT], checkpoints)),
    Entry(name="mae-sweep", doc="Chapter 3's mask-ratio sweep: 0.25, 0.5, 0.75, 0.9, 3,000 steps each -> mae_digits_ratio*",
          settings=SWEEP, tiny=TINY_SWEEP, files=lambda s: _files(list(s.runs())), write=_write_sweep,
          check=lambda *, checkpoints, results: _check(list(SWEEP.runs()), checkpoints)),
)
