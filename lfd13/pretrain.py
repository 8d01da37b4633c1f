"""Reproducible longer pre-training runs whose small checkpoints ship with the package.

A chapter must run in about a minute on two CPU cores; some results need a longer
pre-training than that. This module is the recipe: it trains the model with
:func:`lfd13.train.fit`, then writes ``lfd13/checkpoints/<name>.pt`` with a ``.json``
beside it holding the config, the recipe and the file's sha256, which
:func:`lfd13.mae.load_checkpoint` and :func:`lfd13.clip.load_checkpoint` check
(see :mod:`lfd13.shipped`). Run::

    python -m lfd13.pretrain mae          # Chapter 3's MAE (mask ratio 0.75)
    python -m lfd13.pretrain mae-sweep    # Chapter 3's mask-ratio sweep (0.25, 0.5, 0.75, 0.9), shorter runs
    python -m lfd13.pretrain clip         # Chapter 4's CLIP, three seeds

The numbers in the book come from these files, not from this run's log; re-running
on other hardware gives a model of the same quality but not bit-identical weights.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from open_clip.model import CLIP

from lfd13 import clip, shipped
from lfd13.data import load_digits
from lfd13.data.shapes import SHAPES_PRESETS, compositional_split
from lfd13.mae import MaskedAutoencoder, build_mae, mae_config, mae_step, save_checkpoint
from lfd13.runtime import setup
from lfd13.train import fit, warmup_cosine

# The recipe (MAE's: AdamW, betas (0.9, 0.95), weight decay 0.05, warm-up then cosine).
MAE_RECIPE: dict[str, Any] = {
    "preset": "mae-digits",
    "image_size": 16,  # digits upsampled from 8×8
    "steps": 6000,  # the loss leaves the mean-image plateau only after ~700 steps (Chapter 3)
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 0.05,
    "betas": (0.9, 0.95),
    "warmup": 50,
    "seed": 0,
}
SWEEP_RATIOS = (0.25, 0.5, 0.75, 0.9)
SWEEP_STEPS = 3000  # half the main run, so that the four-run sweep stays affordable
# Chapter 4's CLIP: the chapter trains 800 steps live; these run three times longer.
CLIP_RECIPE: dict[str, Any] = {
    "preset": "clip-shapes",
    "world": "shapes-24",
    "n_train": 20_000,  # compositional_split(world, n_train, n_test_per_combo=40, seed=split_seed)
    "split_seed": 0,
    "steps": 2400,
    "batch_size": 128,
    "lr": 3e-3,
}
CLIP_SEEDS = (0, 1, 2)


def pretrain_mae(*, mask_ratio: float = 0.75, steps: int | None = None, seed: int = 0, device: Any = None,
                 progress: bool | None = None) -> tuple[MaskedAutoencoder, dict[str, Any]]:
    """Pre-train the chapter's MAE on the digits' training images (labels unused)."""
    recipe = dict(MAE_RECIPE, mask_ratio=mask_ratio, seed=seed)
    if steps is not None:
        recipe["steps"] = steps
    data = load_digits(size=recipe["image_size"])
    model = build_mae(mae_config(recipe["preset"], mask_ratio=mask_ratio), seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"], betas=recipe["betas"])
    sched = warmup_cosine(opt, warmup=recipe["warmup"], total=recipe["steps"])
    start = time.perf_counter()
    def report(step: int, values: Any) -> None:
        if step % 250 == 0:
            print(f"  mask ratio {mask_ratio}: step {step}/{recipe['steps']}, loss {values['loss']:.4f}", flush=True)

    history = fit(model, (data.x_train,), mae_step, optimizer=opt, scheduler=sched, steps=recipe["steps"],
                  batch_size=recipe["batch_size"], seed=seed, device=device, progress=progress, desc=f"MAE {mask_ratio}",
                  callbacks=(report,))
    recipe["final_loss"] = round(history.last("loss", 50), 5)
    recipe["seconds"] = round(time.perf_counter() - start, 1)
    losses = history["loss"]
    recipe["loss_per_50_steps"] = [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 5) for i in range(0, len(losses), 50)]
    recipe["config"] = asdict(model.config)
    return model, recipe


def pretrain_clip(*, seed: int = 0, steps: int | None = None, device: Any = None,
                  progress: bool | None = None) -> tuple[CLIP, clip.CLIPConfig, dict[str, Any]]:
    """Train Chapter 4's CLIP on the coloured-shape captions (held-out combinations never seen)."""
    recipe = dict(CLIP_RECIPE, seed=seed)
    if steps is not None:
        recipe["steps"] = steps
    world = SHAPES_PRESETS[recipe["world"]]
    split = compositional_split(world, n_train=recipe["n_train"], n_test_per_combo=40, seed=recipe["split_seed"])
    config = clip.CLIP_PRESETS[recipe["preset"]]
    tokens = clip.tokenize(split.train.captions, context_length=config.context_length)
    model = clip.build_clip(config, texts=split.train.captions, seed=seed)
    start = time.perf_counter()
    history = clip.train_clip(model, split.train.images, tokens, steps=recipe["steps"], batch_size=recipe["batch_size"],
                              lr=recipe["lr"], seed=seed, device=device, progress=progress)
    recipe["final_loss"] = round(history.last("loss", 50), 4)
    recipe["seconds"] = round(time.perf_counter() - start, 1)
    return model, config, recipe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lfd13.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["mae", "mae-sweep", "clip"], help="which checkpoint(s) to (re)create")
    parser.add_argument("--out", type=Path, default=shipped.CHECKPOINT_DIR, help="output folder (default: the package's checkpoints)")
    args = parser.parse_args(argv)
    device = setup(seed=0, style=False)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "clip":
        for seed in CLIP_SEEDS:
            model, config, recipe = pretrain_clip(seed=seed, device=device)
            meta = clip.save_checkpoint(model.cpu(), config, args.out / f"clip_shapes_seed{seed}.pt",
                                        recipe={**recipe, "command": "python -m lfd13.pretrain clip"})
            print(f"clip_shapes_seed{seed}: loss {recipe['final_loss']}, {recipe['seconds']} s, {meta['bytes']} bytes, "
                  f"sha256 {meta['sha256'][:12]}")
        return
    jobs = [(0.75, None, "mae_digits")] if args.what == "mae" else [
        (r, SWEEP_STEPS, f"mae_digits_ratio{int(round(r * 100)):02d}") for r in SWEEP_RATIOS
    ]
    for ratio, steps, name in jobs:
        model, recipe = pretrain_mae(mask_ratio=ratio, steps=steps, device=device)
        recipe.pop("config")
        meta = save_checkpoint(model.cpu(), args.out / f"{name}.pt", recipe={**recipe, "command": f"python -m lfd13.pretrain {args.what}"})
        print(f"{name}: loss {recipe['final_loss']}, {recipe['seconds']} s, {meta['bytes']} bytes, sha256 {meta['sha256'][:12]}")


if __name__ == "__main__":
    main()
