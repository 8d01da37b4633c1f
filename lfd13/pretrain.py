"""Reproducible longer pre-training runs whose small checkpoints ship with the package.

A chapter must run in about a minute on two CPU cores; some results need a longer
pre-training than that. This module is the recipe: it trains the model with
:func:`lfd13.train.fit`, then writes ``lfd13/checkpoints/<name>.pt`` with a ``.json``
beside it holding the config, the recipe and the file's sha256, which
:func:`lfd13.mae.load_checkpoint` checks. Run::

    python -m lfd13.pretrain mae          # the chapter's MAE (mask ratio 0.75)
    python -m lfd13.pretrain mae-sweep    # the mask-ratio sweep (0.25, 0.5, 0.75, 0.9), shorter runs

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

from lfd13.data import load_digits
from lfd13.mae import MaskedAutoencoder, build_mae, mae_config, mae_step, save_checkpoint
from lfd13.runtime import setup
from lfd13.train import fit, warmup_cosine

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"

# The recipe (MAE's: AdamW, betas (0.9, 0.95), weight decay 0.05, warm-up then cosine).
MAE_RECIPE: dict[str, Any] = {
    "preset": "mae-digits",
    "image_size": 16,  # digits upsampled from 8×8
    "steps": 1000,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 0.05,
    "betas": (0.9, 0.95),
    "warmup": 50,
    "seed": 0,
}
SWEEP_RATIOS = (0.25, 0.5, 0.75, 0.9)
SWEEP_STEPS = 300  # shorter than the main run, so that the whole sweep stays cheap


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
    recipe["config"] = asdict(model.config)
    return model, recipe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lfd13.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["mae", "mae-sweep"], help="which checkpoint(s) to (re)create")
    parser.add_argument("--out", type=Path, default=CHECKPOINTS, help="output folder (default: the package's checkpoints)")
    args = parser.parse_args(argv)
    device = setup(seed=0, style=False)
    args.out.mkdir(parents=True, exist_ok=True)
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
