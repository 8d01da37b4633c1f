"""The encoder every pretext task trains, its presets, and the constants the four families share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lfd13.runtime import preset, seeded
from lfd13.train import Recipe

__all__ = [
    "FAMILIES", "LAYERS", "MASK_FILL", "HEAD_SEED_OFFSET", "VIEWS_SEED_OFFSET", "PretextConfig", "PRESETS",
    "pretext_config", "ConvEncoder", "build_encoder",
]

FAMILIES = ("rotation", "masked", "contrastive", "clustering")

#: The layers a probe can read: ``"conv"``, the last convolution's feature map flattened
#: (the input of the encoder's linear layer), and ``"last"``, the encoder's output.
LAYERS = ("conv", "last")

#: The value hidden pixels take in the masked-prediction input. The digits lie in [0, 1] and
#: their background is 0, so a hidden pixel set to 0 would look like blank paper.
MASK_FILL = -1.0

#: A task of pre-training seed s initialises its pretext head from seed s + HEAD_SEED_OFFSET
#: (the encoder from s itself), so that the encoder does not depend on the family.
HEAD_SEED_OFFSET = 1000
#: The random rotations, masks or augmented views of pre-training seed s come from seed s + VIEWS_SEED_OFFSET.
VIEWS_SEED_OFFSET = 2000


@dataclass(frozen=True)
class PretextConfig:
    """Encoder and training settings shared by the four pretext tasks."""

    image_size: int = 8  # side of the input digits (8 = native)
    channels: int = 32  # channels of the first convolution (the second and third have twice as many)
    feature_dim: int = 128  # D, width of the features the probes read
    steps: int = 300  # optimiser steps of pre-training
    batch_size: int = 128  # images per step
    lr: float = 2e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    mask_ratio: float = 0.5  # masked prediction: share of 2×2 pixel blocks hidden
    temperature: float = 0.2  # instance discrimination: InfoNCE temperature
    clusters: int = 40  # clustering: k of k-means (DeepCluster over-clusters, k > classes)
    rounds: int = 4  # clustering: k-means / training alternations (steps are split between them)

    def __post_init__(self) -> None:
        if self.image_size % 4 != 0:
            raise ValueError(f"image_size must be a multiple of 4 (two 2× poolings), got {self.image_size}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie strictly between 0 and 1, got {self.mask_ratio}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.rounds < 1 or self.steps < self.rounds:
            raise ValueError(f"need 1 <= rounds <= steps, got rounds={self.rounds}, steps={self.steps}")

    @property
    def recipe(self) -> Recipe:
        """The optimisation recipe of pre-training (AdamW, cosine decay of the learning rate over ``steps``)."""
        return Recipe(steps=self.steps, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay)


PRESETS: dict[str, PretextConfig] = {
    "pretext-nano": PretextConfig(channels=8, feature_dim=16, steps=4, batch_size=32, clusters=5, rounds=2),  # tests
    "pretext-digits": PretextConfig(),  # 8×8 digits, a few seconds per family
}


def pretext_config(name: str = "pretext-digits", **overrides: Any) -> PretextConfig:
    """The preset ``name`` of :data:`PRESETS` with optional overrides (e.g. ``steps=600``)."""
    return preset(PRESETS, name, what="pretext", **overrides)


class ConvEncoder(nn.Module):
    """The small CNN every pretext task trains: [B, 1, H, W] -> [B, D] features."""

    def __init__(self, config: PretextConfig) -> None:
        super().__init__()
        c = config.channels
        self.config = config
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),  # (B, c, H, W)
            nn.Conv2d(c, 2 * c, 3, padding=1, stride=2), nn.ReLU(),  # (B, 2c, H/2, W/2)
            nn.Conv2d(2 * c, 2 * c, 3, padding=1, stride=2), nn.ReLU(),  # (B, 2c, H/4, W/4)
        )
        side = config.image_size // 4
        self.proj = nn.Linear(2 * c * side * side, config.feature_dim)

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] -> [B, 2c·(H/4)²]: the last convolution's feature map, flattened (256 numbers for 8×8 digits)."""
        if x.shape[-1] != self.config.image_size or x.shape[-2] != self.config.image_size:
            raise ValueError(f"expected {self.config.image_size}×{self.config.image_size} images, got {tuple(x.shape[-2:])}")
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] -> [B, D]."""
        return F.relu(self.proj(self.conv_features(x)))

    def features(self, x: torch.Tensor, layer: str = "last") -> torch.Tensor:
        """The features of one of :data:`LAYERS`: ``"conv"`` -> :meth:`conv_features`, ``"last"`` -> :meth:`forward`."""
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose one of {LAYERS}")
        return self.conv_features(x) if layer == "conv" else self(x)


def build_encoder(config: PretextConfig, *, seed: int) -> ConvEncoder:
    """A randomly initialised :class:`ConvEncoder` (the same seed gives the same weights)."""
    with seeded(seed):
        return ConvEncoder(config)
