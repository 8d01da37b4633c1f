"""The small CNN for 8×8 digits that the book trains from scratch, and its recipe.

The book draws its label curve with it and compares pre-trained encoders with it. One
definition, so that "the CNN trained from scratch" is the same network on every page.
"""

from __future__ import annotations

from torch import nn

from lfd13.runtime import seeded
from lfd13.train import Recipe

__all__ = ["DIGITS_CNN_RECIPE", "build_digits_cnn"]


def build_digits_cnn(*, seed: int, num_classes: int = 10) -> nn.Sequential:
    """Two 3×3 convolutions, a pooling, two linear layers: [B, 1, 8, 8] images -> [B, C] logits.

    Args:
        seed: seeds the initial weights (the same seed, the same network).
        num_classes: C, the outputs of the last layer.
    """
    with seeded(seed):
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),  # (B, 16, 8, 8)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 4, 4)
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes),  # (B, C)
        )


#: Its training recipe (AdamW, cosine decay), the same on every page that trains it from scratch.
DIGITS_CNN_RECIPE = Recipe(steps=200, lr=3e-3, batch_size=64, weight_decay=1e-2)
