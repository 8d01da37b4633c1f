"""Any family by name: build, train, probe and read back a pretext task."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lfd13 import shipped
from lfd13.evaluation import extract_features, linear_probe
from lfd13.runtime import get_device, make_generator, seeded
from lfd13.pretext.encoder import (FAMILIES, HEAD_SEED_OFFSET, LAYERS, VIEWS_SEED_OFFSET, ConvEncoder, PretextConfig,
                                   build_encoder, pretext_config)
from lfd13.pretext.tasks import ClusterPretext, ContrastivePretext, MaskedPixelPretext, RotationPretext, deepcluster
from lfd13.train import History, train

__all__ = [
    "family_of", "build_task", "train_task", "train_pretext", "layer_features", "probe_layers",
    "EncoderClassifier", "build_encoder_classifier", "task_config", "load_pretext_task",
]

# ---------------------------------------------------------------- all four
_TASKS: dict[str, Callable[[ConvEncoder], nn.Module]] = {
    "rotation": RotationPretext, "masked": MaskedPixelPretext, "contrastive": ContrastivePretext, "clustering": ClusterPretext,
}


def family_of(task: nn.Module) -> str:
    """The family name of a pretext-task module (``"rotation"``, ...)."""
    for name, cls in _TASKS.items():
        if type(task) is cls:
            return name
    raise TypeError(f"{type(task).__name__} is not one of the pretext tasks {FAMILIES}")


def build_task(family: str, config: PretextConfig | str = "pretext-digits", *, seed: int = 0) -> nn.Module:
    """A fresh pretext task: the encoder of :func:`build_encoder` (``seed``) and the family's head (``seed + HEAD_SEED_OFFSET``)."""
    if family not in _TASKS:
        raise KeyError(f"unknown pretext family {family!r}; choose one of {FAMILIES}")
    cfg = pretext_config(config) if isinstance(config, str) else config
    encoder = build_encoder(cfg, seed=seed)
    with seeded(seed + HEAD_SEED_OFFSET):
        return _TASKS[family](encoder)


def train_task(
    task: nn.Module, x: torch.Tensor, *, seed: int = 0, device: torch.device | str | None = None,
    progress: bool | None = None, callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
) -> History:
    """Pre-train a task of :func:`build_task` on unlabelled images ``x`` [N, 1, H, W] for ``config.steps`` steps.

    ``seed`` fixes the batches, and ``seed + VIEWS_SEED_OFFSET`` the random views / masks / rotations;
    ``callbacks`` (``callback(step, metrics)``) run after every step, as in :func:`lfd13.train.train`.
    """
    family, cfg = family_of(task), task.encoder.config
    dev = torch.device(device) if device is not None else get_device()
    if family == "clustering":
        return deepcluster(task, x, seed=seed, device=dev, progress=progress, callbacks=callbacks)  # type: ignore[arg-type]
    views = make_generator(seed + VIEWS_SEED_OFFSET)
    return train(task, (x,), lambda m, b: m.step(b, generator=views), cfg.recipe, seed=seed, device=dev,
                 progress=progress, desc=f"pretext: {family}", callbacks=callbacks)


def train_pretext(
    family: str, x: torch.Tensor, *, config: PretextConfig | str = "pretext-digits", seed: int = 0,
    device: torch.device | str | None = None, progress: bool | None = None,
) -> tuple[ConvEncoder, History]:
    """Pre-train a fresh :class:`ConvEncoder` with one of :data:`FAMILIES` on unlabelled images ``x`` [N, 1, H, W].

    ``config`` is a :class:`PretextConfig` or a preset name; ``seed`` fixes the initial weights,
    the batches and the random views / masks. Returns ``(encoder in eval mode, history)``.
    """
    task = build_task(family, config, seed=seed)
    history = train_task(task, x, seed=seed, device=device, progress=progress)
    return task.encoder.eval(), history


# ---------------------------------------------------------------- reading an encoder: probes and fine-tuning
def layer_features(
    encoder: ConvEncoder, x: torch.Tensor, layer: str = "last", *, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Frozen features [N, F] of images ``x`` [N, 1, H, W] at one of :data:`LAYERS` (F = 256 for "conv", D for "last").

    ``dtype=torch.float64`` runs a double-precision copy of the encoder (``encoder`` itself is
    left as it is) and returns float64 features. In float32 the last digits of a feature depend on
    the CPU's instruction set, and a probe fit on 100 labelled examples can turn such a difference
    into a different test prediction; in float64 it cannot, in practice. Apple's MPS has no
    float64: there the features stay float32.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    device = torch.device(device) if device is not None else get_device()
    if dtype == torch.float64 and device.type != "mps":
        encoder = copy.deepcopy(encoder).to(dtype)
    else:
        dtype = torch.float32
    encoder.eval()
    return extract_features(lambda b: encoder.features(b.to(dtype), layer), x, device=device)


def probe_layers(
    encoder: ConvEncoder, x: torch.Tensor, y: torch.Tensor, train_idx: torch.Tensor, eval_idx: torch.Tensor, *,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Linear-probe accuracy ``{layer: accuracy}`` of each of :data:`LAYERS`: fit on ``train_idx``, score on ``eval_idx``.

    The probe's regularisation is chosen by cross-validation on the ``train_idx`` examples
    (``linear_probe(c="cv")``). Give a validation subset of the training pool as ``eval_idx``
    (:func:`lfd13.sampling.split_indices`) to watch a run without touching the test set.
    """
    idx, n = torch.cat([train_idx, eval_idx]), len(train_idx)
    out = {}
    for layer in LAYERS:
        f = layer_features(encoder, x[idx], layer, device=device)
        out[layer] = linear_probe(f[:n], y[train_idx], f[n:], y[eval_idx], c="cv")
    return out


class EncoderClassifier(nn.Module):
    """A :class:`ConvEncoder` (pre-trained or random) with a linear head, fine-tuned end to end: [B, 1, H, W] -> [B, C]."""

    def __init__(self, encoder: ConvEncoder, num_classes: int = 10) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] -> [B, C] logits."""
        return self.head(self.encoder(x))


def build_encoder_classifier(encoder: ConvEncoder, *, num_classes: int = 10, seed: int) -> EncoderClassifier:
    """A trainable copy of ``encoder`` with a fresh linear head (initialised from ``seed``)."""
    copy = ConvEncoder(encoder.config)
    copy.load_state_dict(encoder.state_dict())
    with seeded(seed):
        return EncoderClassifier(copy, num_classes)


# ---------------------------------------------------------------- saved tasks
def task_config(task: nn.Module) -> dict[str, Any]:
    """What a saved task's JSON holds as ``config``: its family and its :class:`PretextConfig`, enough to rebuild it."""
    return {"family": family_of(task), **asdict(task.encoder.config)}


def load_pretext_task(name_or_path: str | Path, *, directory: Path | str | None = None) -> tuple[nn.Module, shipped.CheckpointInfo]:
    """A task saved by :func:`lfd13.shipped.save_model` (kind ``"pretext"``, config :func:`task_config`), hashes checked.

    Returns ``(task on the CPU in eval mode, info)``; the task's ``.encoder`` is the :class:`ConvEncoder`.
    """

    def build(info: shipped.CheckpointInfo, _: Path) -> nn.Module:
        fields = dict(info.config)
        return build_task(fields.pop("family"), PretextConfig(**fields))

    return shipped.load_model(name_or_path, kind="pretext", build=build, directory=directory)
