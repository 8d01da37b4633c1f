"""One training loop for every chapter.

In the spirit of minGPT's ``Trainer``: the loop knows nothing about the model.
A chapter gives it a *step function* that turns a batch into a loss (and, if it
likes, other metrics), the data, and an optimiser; the loop does the rest —
shuffling with its own seeded generator, moving batches to the device, the
backward pass, gradient clipping, the learning-rate schedule, a progress bar and
a :class:`History` that the plots read.

Every chapter optimises the same way, so the optimiser is built in one place too:
a :class:`Recipe` (a frozen dataclass: steps, learning rate, batch size, weight decay,
warm-up, betas, clipping) becomes AdamW with a linear warm-up and a cosine decay
(:func:`build_optimizer`), with one weight-decay rule for every model
(:func:`param_groups`); :func:`train` is ``build_optimizer`` + :func:`fit`.

Randomness comes in as an argument: ``fit`` shuffles with a generator seeded by its
``seed``, and runs inside :func:`torch.random.fork_rng` seeded with the same ``seed``,
so that dropout is reproducible and the caller's global generator is left as it was.

Example::

    recipe = Recipe(steps=500, lr=3e-3, batch_size=64, weight_decay=0.01)
    history = train(model, (x_train, y_train), classification_step, recipe, seed=0)
    plotting.plot_history(history)
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from lfd13.optim import Recipe, build_optimizer, param_groups, warmup_cosine
from lfd13.runtime import get_device

# Recipe, build_optimizer, param_groups and warmup_cosine are lfd13.optim's (imported here for the loop and for callers).
__all__ = ["History", "StepFn", "classification_step", "fit", "seconds_per_step", "to_device", "train"]

Batch = Union[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]
StepOutput = Union[torch.Tensor, Mapping[str, torch.Tensor]]
StepFn = Callable[[nn.Module, Any], StepOutput]


@dataclass
class History:
    """What happened during training, one entry per optimiser step.

    Attributes:
        step: [S] step numbers, starting at 1.
        seconds: [S] wall-clock seconds since the start of training.
        metrics: name -> [S] values (always contains ``"loss"``).
        evals: name -> list of ``(step, value)`` from the optional ``evaluate`` callback.
    """

    step: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    evals: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[float]:
        if name not in self.metrics:
            raise KeyError(f"no metric {name!r} in history; recorded: {sorted(self.metrics)}")
        return self.metrics[name]

    def __len__(self) -> int:
        return len(self.step)

    def last(self, name: str = "loss", window: int = 1) -> float:
        """Mean of the last ``window`` values of metric ``name``."""
        values = self[name][-window:]
        return float(sum(values) / len(values))

    def record(self, step: int, seconds: float, values: Mapping[str, float]) -> None:
        self.step.append(step)
        self.seconds.append(seconds)
        for k, v in values.items():
            self.metrics.setdefault(k, []).append(float(v))

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds, "metrics": self.metrics, "evals": self.evals}


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to show progress bars.

    ``progress`` wins when given; otherwise ``LFD13_PROGRESS=0/1`` decides; otherwise bars
    show in an interactive terminal or a Jupyter kernel, and stay quiet in logs and CI.
    """
    if progress is not None:
        return progress
    env = os.environ.get("LFD13_PROGRESS")
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "")
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a tensor, or a tuple / list / dict of tensors, to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def trim_padding(attention_mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the right-padding columns that no row of a batch uses (short batches run faster).

    Args:
        attention_mask: [B, L], 1 on real tokens; rows are right-padded.
        tensors: more [B, L, ...] tensors aligned with it (input ids, labels).

    Returns:
        ``(attention_mask, *tensors)``, each cut to [B, L'] with L' the longest row.
    """
    length = int(attention_mask.sum(1).max())
    return tuple(t[:, :length] for t in (attention_mask, *tensors))


def tensor_batches(
    tensors: Sequence[torch.Tensor], *, batch_size: int, generator: torch.Generator, drop_last: bool = True
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless shuffled mini-batches from tensors that share their first dimension.

    Each pass over the data (an epoch) is a fresh permutation drawn from ``generator``.
    """
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"all tensors must have the same first dimension, got {[len(t) for t in tensors]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_last and batch_size > n:
        batch_size = n  # a tiny few-label set: use it whole
    while True:
        order = torch.randperm(n, generator=generator)
        stop = n - (n % batch_size) if drop_last else n
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size]
            yield tuple(t[idx] for t in tensors)


def _as_batches(
    data: Any, *, batch_size: int, generator: torch.Generator
) -> tuple[Callable[[], Iterator[Any]], int | None]:
    """An epoch factory and the number of batches per epoch (None if unknown)."""
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        n = len(data[0])
        per_epoch = max(1, n // min(batch_size, n))
        stream = tensor_batches(data, batch_size=batch_size, generator=generator)
        return (lambda: (next(stream) for _ in range(per_epoch))), per_epoch
    if isinstance(data, Iterable):
        try:
            per_epoch = len(data)  # type: ignore[arg-type]
        except TypeError:
            per_epoch = None
        return (lambda: iter(data)), per_epoch
    raise TypeError(
        "data must be a tensor, a tuple of tensors with a shared first dimension, "
        f"or an iterable of batches (e.g. a DataLoader); got {type(data).__name__}"
    )


def _unpack(out: StepOutput) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, torch.Tensor):
        loss, extra = out, {}
    elif isinstance(out, Mapping) and "loss" in out:
        loss = out["loss"]
        extra = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items() if k != "loss"}
    else:
        raise TypeError("the step function must return a loss tensor or a mapping with a 'loss' entry")
    if loss.ndim != 0:
        raise ValueError(f"the loss must be a scalar tensor, got shape {tuple(loss.shape)}; reduce it with .mean()")
    return loss, extra


def fit(
    model: nn.Module,
    data: Any,
    step: StepFn,
    *,
    optimizer: torch.optim.Optimizer,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str | None = None,
    scheduler: Any | None = None,
    max_grad_norm: float | None = None,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
    progress: bool | None = None,
    desc: str = "train",
) -> History:
    """Train ``model`` with ``step`` on ``data`` for a number of ``steps`` or ``epochs``.

    Args:
        model: the module whose parameters ``optimizer`` updates; put in train mode and
            moved to ``device``.
        data: a tensor, a tuple of tensors [N, ...] (shuffled into batches with a generator
            seeded by ``seed``) or any iterable of batches such as a ``DataLoader``.
        step: ``step(model, batch) -> loss`` or ``-> {"loss": loss, "acc": ..., ...}``; the batch
            arrives on ``device``.
        optimizer: any ``torch.optim`` optimiser.
        steps: number of optimiser steps (exclusive with ``epochs``).
        epochs: number of passes over ``data``.
        batch_size: mini-batch size when ``data`` is tensors.
        seed: seeds the shuffling and, inside a :func:`torch.random.fork_rng`, the global
            generator (dropout); a seed fixes the run, and the caller's global generator is
            restored afterwards.
        device: where to train; default :func:`lfd13.get_device`.
        scheduler: a learning-rate scheduler stepped after every optimiser step.
        max_grad_norm: clip the gradient norm to this value if given.
        evaluate: ``evaluate(model) -> {"name": value}``, called every ``eval_every`` steps
            and at the end, in eval mode and without gradients.
        eval_every: evaluation period in steps.
        callbacks: ``callback(step, metrics)`` after every step.
        progress: show a tqdm bar (default: see :func:`progress_enabled`).
        desc: label of the progress bar.

    Returns:
        The :class:`History` of per-step metrics.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    if steps is not None and steps < 1 or epochs is not None and epochs < 1:
        raise ValueError(f"steps/epochs must be >= 1, got steps={steps}, epochs={epochs}")
    device = torch.device(device) if device is not None else get_device()
    # the whole run inside fork_rng: dropout draws from a generator seeded by `seed`, and the
    # caller's global generator is restored afterwards
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        new_epoch, per_epoch = _as_batches(data, batch_size=batch_size, generator=generator)
        if steps is None:
            total = per_epoch * epochs if per_epoch is not None else None
        else:
            total = steps
        model.to(device).train()
        history = History()
        start = time.perf_counter()
        bar = tqdm(total=total, desc=desc, disable=not progress_enabled(progress), leave=False, dynamic_ncols=True)
        done, epoch = 0, 0
        try:
            while (steps is None or done < steps) and (epochs is None or epoch < epochs):
                produced = False
                for batch in new_epoch():
                    produced = True
                    loss, extra = _unpack(step(model, to_device(batch, device)))
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss became {loss.item()} at step {done + 1}; lower the learning rate")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    done += 1
                    values = {"loss": float(loss.detach()), **extra}
                    history.record(done, time.perf_counter() - start, values)
                    for cb in callbacks:
                        cb(done, values)
                    if evaluate is not None and eval_every and done % eval_every == 0:
                        _run_eval(model, evaluate, done, history)
                    bar.update(1)
                    if done % 10 == 0:
                        bar.set_postfix(loss=f"{history.last('loss', 10):.4f}")
                    if steps is not None and done >= steps:
                        break
                if not produced:
                    raise ValueError("data produced no batch; is it empty?")
                epoch += 1
        finally:
            bar.close()
        if evaluate is not None and (not eval_every or done % eval_every != 0):
            _run_eval(model, evaluate, done, history)
        model.eval()
        return history


def _run_eval(model: nn.Module, evaluate: Callable[[nn.Module], Mapping[str, float]], done: int, history: History) -> None:
    model.eval()
    with torch.no_grad():
        results = evaluate(model)
    for k, v in results.items():
        history.evals.setdefault(k, []).append((done, float(v)))
    model.train()


def train(
    model: nn.Module,
    data: Any,
    step: StepFn,
    recipe: Recipe,
    *,
    seed: int,
    device: torch.device | str | None = None,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
    progress: bool | None = None,
    desc: str = "train",
) -> History:
    """Train ``model`` with ``recipe``: :func:`build_optimizer`, then :func:`fit` for ``recipe.steps`` steps.

    Args:
        model: the model; only parameters with ``requires_grad`` are optimised.
        data, step, evaluate, eval_every, callbacks, progress, desc: as in :func:`fit`.
        recipe: the optimisation recipe.
        seed: seeds the batch order and dropout (see :func:`fit`).
        device: where to train (default :func:`lfd13.get_device`).

    Returns:
        The :class:`History` of the run.
    """
    optimizer, scheduler = build_optimizer(model, recipe)
    return fit(
        model, data, step, optimizer=optimizer, scheduler=scheduler, steps=recipe.steps, batch_size=recipe.batch_size,
        seed=seed, device=device, max_grad_norm=recipe.max_grad_norm, evaluate=evaluate, eval_every=eval_every,
        callbacks=callbacks, progress=progress, desc=desc,
    )  # fmt: skip


# ----------------------------------------------------------------------------- common steps and measurements


def classification_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy step for :func:`fit` on ``(inputs [B, ...], labels [B])``; also reports the batch accuracy."""
    x, y = batch
    logits = model(x)  # (B, C)
    return {"loss": torch.nn.functional.cross_entropy(logits, y), "acc": (logits.argmax(-1) == y).float().mean()}


def seconds_per_step(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, int], torch.Tensor],
    *,
    steps: int = 4,
    repeats: int = 1,
    device: torch.device | str | None = None,
) -> float:
    """Median wall-clock seconds of one training step (forward, backward, AdamW update).

    Args:
        model: the model to time (moved to ``device``, put in train mode; its weights change).
        loss_fn: ``loss_fn(model, i) -> scalar loss`` of the i-th timed step (``i`` can seed its randomness).
        steps: timed steps per repeat; one untimed step warms up first.
        repeats: independent repeats; the median over all timed steps is returned.
        device: where to run (default :func:`lfd13.get_device`); CUDA is synchronised around each step.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(repeats):
        for i in range(steps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            loss = loss_fn(model, i)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i > 0:  # the first step warms up
                times.append(time.perf_counter() - start)
    return statistics.median(times)
