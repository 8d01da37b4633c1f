"""Handwritten digits: a small, real image data set that ships with scikit-learn.

1,797 grey-scale 8×8 images of the digits 0–9 (UCI ML hand-written digits,
Alpaydin & Kaynak 1998, distributed with scikit-learn under the BSD licence).
:func:`load_digits` gives one fixed, stratified train/test split so that every
chapter measures on the same test images; :func:`lfd13.sampling.subset_indices` draws the
"n labels per class" subsets with which the label bottleneck is studied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split

from lfd13.sampling import subset_indices

__all__ = ["NATIVE_SIZE", "NUM_CLASSES", "DigitsSplit", "labelled_subset", "load_digits"]

NUM_CLASSES = 10
NATIVE_SIZE = 8


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed train/test split of the digits.

    Attributes:
        x_train: [N, 1, H, W] float images in [0, 1].
        y_train: [N] long labels in 0..9.
        x_test: [M, 1, H, W] float images in [0, 1].
        y_test: [M] long labels in 0..9.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES


def load_digits(*, size: int = NATIVE_SIZE, test_fraction: float = 0.3, split_seed: int = 0) -> DigitsSplit:
    """Load scikit-learn's digits as tensors, split once and for all.

    Args:
        size: side of the returned images; 8 is native, larger sizes (e.g. 16) are
            bilinearly upsampled, which gives patch-based models more patches.
        test_fraction: share of each class held out for testing.
        split_seed: seed of the stratified split; keep the default to compare across chapters.

    Returns:
        A :class:`DigitsSplit` with images [N, 1, size, size] in [0, 1].
    """
    if not isinstance(size, int) or size < NATIVE_SIZE:
        raise ValueError(f"size must be an int >= {NATIVE_SIZE} (the native resolution), got {size!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    bunch = _sk_load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # pixel values are 0..16
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=split_seed)
    x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 8, 8)
    if size != NATIVE_SIZE:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    y = torch.from_numpy(labels)
    train_t, test_t = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return DigitsSplit(x[train_t], y[train_t], x[test_t], y[test_t])


def labelled_subset(
    x: torch.Tensor, y: torch.Tensor, n_per_class: int | None, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The few-label training set: ``n_per_class`` examples of each class from ``(x, y)``.

    Args:
        x: [N, ...] inputs.
        y: [N] labels.
        n_per_class: examples per class (``None`` for all).
        seed: seed of the draw.

    Returns:
        ``(x_sub, y_sub)`` with [n_per_class · C, ...] and [n_per_class · C].
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    idx = subset_indices(y, n_per_class, seed=seed)
    return x[idx], y[idx]
