"""Chapter 4's CLIPs: the design chosen on validation combinations, three runs shipped as checkpoints, a data-scaling curve.

Each run trains :func:`lfd13.clip.build_clip` with open_clip's ``ClipLoss``
(:func:`lfd13.clip.train_clip`) on the training pairs of
:func:`lfd13.data.shapes.compositional_split`, whose held-out colour-shape combinations the model
never sees; only the seed (initialisation and batch order) differs between the runs, so the
chapter's figures are means over independent pre-training runs. Each model ships as
``<name>_seed<seed>`` (:func:`lfd13.clip.load_trained_clip`), with its training run's
measurements (final loss, seconds, loss curve) in its JSON file::

    python -m lfd13.recreate clip

The design of those runs (the CNN's pooling, the learning rate, the background tint) is chosen
on *validation* combinations, never on the test ones (:class:`DesignSettings`, row ``clip-design``):
a twin of the world holds out eight other colour-shape combinations, disjoint from the test
combinations, and each design is trained on it and scored zero-shot on those validation
combinations. Row ``clip-scaling`` trains the shipped design on fewer pairs (the first n of its
training pairs, the same number of steps), for the data-scaling curve::

    python -m lfd13.recreate clip-design clip-scaling
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from open_clip.model import CLIP

from lfd13 import clip, shipped
from lfd13.data import shapes
from lfd13.evaluation import accuracy
from lfd13.experiments import Entry, command
from lfd13.runtime import preset
from lfd13.train import Recipe

#: This experiment's rows in :data:`lfd13.recreate.ENTRIES`.
NAME = "clip"
DESIGN_NAME = "clip-design"
DESIGN_RESULT = "clip_design"  # lfd13/results/clip_design.json
SCALING_NAME = "clip-scaling"
# Rungs the design search may add to its rate grid (each a full training run): a search whose validation
# accuracy saturates (ties go to the first rate) would otherwise extend downward forever.
MAX_LR_EXTENSIONS = 4
SCALING_RESULT = "clip_scaling"  # lfd13/results/clip_scaling.json

#: The prompt templates of zero-shot classification: two of the training captions' templates, averaged.
PROMPTS: tuple[str, ...] = ("a {colour} {shape}", "a drawing of a {colour} {shape}")


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
class DesignSettings:
    """The design choices, made on validation combinations (the data-scaling runs: :class:`ScalingSettings`)."""

    preset: str = "clip-shapes"  # model preset; its cnn_pool is replaced by each design's
    world: str = "shapes-24"  # the world of the shipped runs
    # the validation twin holds out these combinations instead of the test ones (disjoint from them; one per colour,
    # each shape twice, like the test combinations)
    validation_held_out: tuple[tuple[str, str], ...] = (
        ("red", "triangle"), ("green", "cross"), ("blue", "circle"), ("yellow", "square"),
        ("purple", "triangle"), ("orange", "cross"), ("cyan", "circle"), ("white", "square"),
    )
    n_train: int = 20_000  # training pairs of the validation twin (its seen combinations only)
    n_val_per_combo: int = 40  # validation images per combination
    split_seed: int = 1  # seed of the validation twin's split (the test split uses 0)
    seeds: tuple[int, ...] = (0,)  # runs per design (one: only large effects are resolved)
    pools: tuple[str, ...] = ("max", "mean")  # the CNN's global pooling
    # peak learning rates of AdamW, extended until the best is inside; one value = fixed beforehand, not searched
    lrs: tuple[float, ...] = (3e-3,)
    tints: tuple[float, ...] = (0.15,)  # background tints, chosen after pooling and rate; one value = fixed beforehand
    # the shipped recipe; its lr is replaced by each design's
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=2400, lr=3e-3, batch_size=128, weight_decay=0.1, warmup=20))
    name: str = DESIGN_RESULT  # the result file


#: The design search as run for the book.
DESIGN_SETTINGS = DesignSettings()

#: The same in a few seconds.
DESIGN_TINY = DesignSettings(preset="clip-tiny", world="shapes-tiny", validation_held_out=(("red", "square"), ("green", "triangle")),
                             n_train=64, n_val_per_combo=2, seeds=(0,), pools=("max", "mean"), lrs=(3e-3,), tints=(0.0,),
                             recipe=Recipe(steps=2, lr=3e-3, batch_size=16, weight_decay=0.1, warmup=1),
                             name="clip_design_tiny")


def design_key(pool: str, lr: float, tint: float) -> str:
    """``"max lr=0.003 tint=0.15"``: a design's name in the result file."""
    return f"{pool} lr={lr:g} tint={tint:g}"


def zero_shot_scores(model: CLIP, data: shapes.ShapesData, templates: tuple[str, ...] = PROMPTS) -> dict[str, float]:
    """Zero-shot accuracy of ``model`` on ``data`` over all the world's classes, prompts averaged over ``templates``."""
    world = data.config
    per_template = torch.stack([clip.encode_texts(model, [t.format(colour=c, shape=s) for c, s in world.combo_names()])
                                for t in templates])  # [T, C, D]
    classes = torch.nn.functional.normalize(per_template.mean(dim=0), dim=-1)  # [C, D]
    return {"accuracy": accuracy(clip.encode_images(model, data.images) @ classes.T, data.combo)}  # [N, C] scores


def _train_one(config: clip.CLIPConfig, train: shapes.ShapesData, recipe: Recipe, seed: int, device: Any,
               progress: bool | None) -> tuple[CLIP, float, float]:
    """One contrastive run: the model (CPU, eval), its final loss and its seconds."""
    model = clip.build_clip(config, texts=train.captions, seed=seed)
    tokens = clip.tokenize(train.captions, context_length=config.context_length)
    start = time.perf_counter()
    history = clip.train_clip(model, train.images, tokens, recipe, seed=seed, device=device, progress=progress)
    return model.cpu().eval(), round(history.last("loss", 50), 4), round(time.perf_counter() - start, 1)


def run_design(settings: DesignSettings = DESIGN_SETTINGS, *, device: Any = None,
               progress: bool | None = None) -> dict[str, Any]:
    """Choose pooling, then rate, then tint by zero-shot accuracy on the validation combinations.

    Returns the result record: ``validation`` (design -> per-seed zero-shot accuracy on the validation
    combinations, and on fresh images of the seen ones, final loss, seconds) and ``chosen``.
    """
    world = preset(shapes.PRESETS, settings.world, what="shapes world")
    base = preset(clip.PRESETS, settings.preset, what="CLIP")
    validation: dict[str, dict[str, list[float]]] = {}

    def evaluate(pool: str, lr: float, tint: float) -> float:
        twin = replace(world, held_out=settings.validation_held_out, background_tint=tint)
        split = shapes.compositional_split(twin, n_train=settings.n_train, n_test_per_combo=settings.n_val_per_combo,
                                           seed=settings.split_seed)
        row: dict[str, list[float]] = {"validation_held_out": [], "validation_seen": [], "final_loss": [], "seconds": []}
        for seed in settings.seeds:
            model, loss, seconds = _train_one(replace(base, cnn_pool=pool), split.train, replace(settings.recipe, lr=lr),
                                              seed, device, progress)
            row["validation_held_out"].append(round(zero_shot_scores(model, split.test_held_out)["accuracy"], 4))
            row["validation_seen"].append(round(zero_shot_scores(model, split.test_seen)["accuracy"], 4))
            row["final_loss"].append(loss)
            row["seconds"].append(seconds)
        validation[design_key(pool, lr, tint)] = row
        print(f"{design_key(pool, lr, tint)}: validation combinations {row['validation_held_out']}", flush=True)
        return sum(row["validation_held_out"]) / len(row["validation_held_out"])

    # one factor at a time, starting from the recipe's rate and the first tint: pooling, then rate, then tint
    scores: dict[tuple[str, float, float], float] = {}

    def score(pool: str, lr: float, tint: float) -> float:
        if (pool, lr, tint) not in scores:
            scores[(pool, lr, tint)] = evaluate(pool, lr, tint)
        return scores[(pool, lr, tint)]

    lr, tint = settings.recipe.lr, settings.tints[0]
    pool = max(settings.pools, key=lambda p: score(p, lr, tint))
    lrs = list(settings.lrs)
    for extension in range(MAX_LR_EXTENSIONS + 1):  # extend the rate grid until the best rate is inside it
        lr = max(lrs, key=lambda r: score(pool, r, tint))
        if len(lrs) < 2 or lr not in (lrs[0], lrs[-1]) or extension == MAX_LR_EXTENSIONS:
            break
        lrs = [lrs[0] ** 2 / lrs[1]] + lrs if lr == lrs[0] else lrs + [lrs[-1] ** 2 / lrs[-2]]
        lrs = [float(f"{r:.3g}") for r in lrs]
    tint = max(settings.tints, key=lambda t: score(pool, lr, t))
    return {"validation": validation, "chosen": {"pool": pool, "lr": lr, "tint": tint}}


def write_design(settings: DesignSettings = DESIGN_SETTINGS, *, checkpoints: Path, results: Path, device: Any = None,
                 progress: bool | None = None) -> dict[str, Any]:
    """Run :func:`run_design` and save its record as ``<settings.name>.json`` in ``results``."""
    result = run_design(settings, device=device, progress=progress)
    shipped.save_result(settings.name, command=command(DESIGN_NAME), settings=asdict(settings), result=result,
                        directory=results)
    return result


def load_design(directory: Path | str | None = None, settings: DesignSettings = DESIGN_SETTINGS) -> dict[str, Any]:
    """What the design search measured (the shipped record, or the one in ``directory``)."""
    return shipped.load_result(settings.name, directory=directory).result


def check_design(*, checkpoints: Path, results: Path) -> dict[str, Any]:
    """Load what the design row wrote into ``results`` (the shipped run's, else the tiny run's)."""
    full = (Path(results) / f"{DESIGN_SETTINGS.name}.json").is_file()
    return load_design(results, DESIGN_SETTINGS if full else DESIGN_TINY)


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


@dataclass(frozen=True)
class ScalingSettings:
    """The shipped design trained on fewer pairs: the first n pairs of the shipped runs' training split."""

    run: Settings = field(default_factory=lambda: SETTINGS)  # model, world, split and recipe (the same number of steps)
    n_train: tuple[int, ...] = (2500,)  # training pairs per point of the curve (the shipped runs have run.n_train)
    seeds: tuple[int, ...] = (0,)  # runs per point
    name: str = SCALING_RESULT  # the result file


#: The data-scaling runs as run for the book.
SCALING_SETTINGS = ScalingSettings()

#: The same in a few seconds.
SCALING_TINY = ScalingSettings(run=TINY, n_train=(32,), seeds=(0,), name="clip_scaling_tiny")


def run_scaling(settings: ScalingSettings = SCALING_SETTINGS, *, device: Any = None,
                progress: bool | None = None) -> dict[str, Any]:
    """Train on the first n training pairs for each n; zero-shot accuracy on the test split's held-out and seen combinations."""
    split = data_split(settings.run)
    config = preset(clip.PRESETS, settings.run.preset, what="CLIP")
    scaling: dict[str, dict[str, list[float]]] = {}
    for n in settings.n_train:
        row: dict[str, list[float]] = {"held_out": [], "seen": [], "final_loss": [], "seconds": []}
        for seed in settings.seeds:
            model, loss, seconds = _train_one(config, split.train.subset(torch.arange(n)), settings.run.recipe, seed,
                                              device, progress)
            row["held_out"].append(round(zero_shot_scores(model, split.test_held_out)["accuracy"], 4))
            row["seen"].append(round(zero_shot_scores(model, split.test_seen)["accuracy"], 4))
            row["final_loss"].append(loss)
            row["seconds"].append(seconds)
        scaling[str(n)] = row
        print(f"{n} pairs: held-out {row['held_out']}, seen {row['seen']}", flush=True)
    return {"scaling": scaling}


def write_scaling(settings: ScalingSettings = SCALING_SETTINGS, *, checkpoints: Path, results: Path, device: Any = None,
                  progress: bool | None = None) -> dict[str, Any]:
    """Run :func:`run_scaling` and save its record as ``<settings.name>.json`` in ``results``."""
    result = run_scaling(settings, device=device, progress=progress)
    shipped.save_result(settings.name, command=command(SCALING_NAME), settings=asdict(settings), result=result,
                        directory=results)
    return result


def load_scaling(directory: Path | str | None = None, settings: ScalingSettings = SCALING_SETTINGS) -> dict[str, Any]:
    """What the scaling runs measured (the shipped record, or the one in ``directory``)."""
    return shipped.load_result(settings.name, directory=directory).result


def check_scaling(*, checkpoints: Path, results: Path) -> dict[str, Any]:
    """Load what the scaling row wrote into ``results`` (the shipped run's, else the tiny run's)."""
    full = (Path(results) / f"{SCALING_SETTINGS.name}.json").is_file()
    return load_scaling(results, SCALING_SETTINGS if full else SCALING_TINY)


#: This module's rows of the recreate table (:data:`lfd13.recreate.ENTRIES`).
ENTRIES: tuple[Entry, ...] = (
    Entry(DESIGN_NAME, "Chapter 4: CLIP's design chosen on validation combinations",
          DESIGN_SETTINGS, DESIGN_TINY, lambda settings: (f"{settings.name}.json",), write_design, check_design),
    Entry(NAME, "Chapter 4: three CLIPs (seeds 0-2) trained contrastively on the coloured-shape captions",
          SETTINGS, TINY, files, write, check),
    Entry(SCALING_NAME, "Chapter 4: the shipped CLIP design trained on fewer image-text pairs (the data-scaling curve)",
          SCALING_SETTINGS, SCALING_TINY, lambda settings: (f"{settings.name}.json",), write_scaling, check_scaling),
)

__all__ = ["DESIGN_NAME", "DESIGN_SETTINGS", "DESIGN_TINY", "NAME", "PROMPTS", "SETTINGS", "TINY", "ENTRIES",
           "DesignSettings", "Result", "Settings", "TrainingRun", "check", "check_design", "checkpoint_name",
           "data_split", "design_key", "files", "load", "load_design", "load_scaling", "run", "run_design", "run_scaling",
           "write", "write_design", "write_scaling", "zero_shot_scores", "SCALING_NAME", "SCALING_SETTINGS", "SCALING_TINY",
           "ScalingSettings"]
