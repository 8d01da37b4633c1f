"""How every model in the book is optimised: a recipe, AdamW with decoupled weight decay, warm-up then cosine decay.

One :class:`Recipe` (steps, peak rate, batch, decay, warm-up, betas, clipping) describes a training;
:func:`build_optimizer` turns it into a fused AdamW over :func:`param_groups` and the
:func:`warmup_cosine` schedule. The schedule is written here rather than taken from transformers'
``get_cosine_schedule_with_warmup``: that one starts at a learning rate of 0 (step ``i`` of the
warm-up gets ``i / warmup``, so the first step does nothing), this one at ``1 / warmup``
(``(i + 1) / warmup``), and every shipped model and recorded comparison was trained with this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Recipe", "build_optimizer", "param_groups", "warmup_cosine"]


def warmup_cosine(optimizer: torch.optim.Optimizer, *, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for ``warmup`` steps, then cosine decay to zero at ``total`` steps."""
    if not 0 <= warmup < total:
        raise ValueError(f"need 0 <= warmup < total, got warmup={warmup}, total={total}")

    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (i - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class Recipe:
    """How one model is optimised: AdamW, a linear warm-up, then a cosine decay to zero."""

    steps: int  # optimiser steps
    lr: float  # peak learning rate
    batch_size: int = 64  # examples per step (a smaller data set is used whole)
    weight_decay: float = 0.0  # AdamW decoupled weight decay, on the parameters param_groups picks
    warmup: int = 0  # linear warm-up steps (a run shorter than that warms up for steps - 1)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's moment decay rates
    max_grad_norm: float | None = None  # clip the gradient norm to this value (None: no clipping)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got steps={self.steps}, batch_size={self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={self.lr}, weight_decay={self.weight_decay}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters of ``model`` in two AdamW groups: with and without weight decay.

    One rule for every model in the book, nanoGPT's: every tensor with two or more dimensions
    (weight matrices, convolution kernels, embedding tables) is decayed; biases,
    normalisation gains and scalars such as CLIP's ``logit_scale`` are not.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters; unfreeze some before training")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, recipe: Recipe) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``model``'s trainable parameters (:func:`param_groups`) and its warm-up + cosine schedule.

    The optimiser is ``fused``: one kernel updates every tensor (CPU, CUDA and MPS).
    """
    optimizer = torch.optim.AdamW(
        param_groups(model, recipe.weight_decay), lr=recipe.lr, betas=recipe.betas, fused=True
    )
    return optimizer, warmup_cosine(optimizer, warmup=min(recipe.warmup, recipe.steps - 1), total=recipe.steps)
