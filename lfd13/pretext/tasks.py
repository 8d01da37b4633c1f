"""The four pretext families: transformation prediction, masked prediction, instance discrimination, clustering."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from lfd13.evaluation import extract_features
from lfd13.pretext.encoder import MASK_FILL, ConvEncoder
from lfd13.runtime import get_device, seeded
from lfd13.train import History, train

__all__ = [
    "rotate_batch", "random_rotation", "RotationPretext", "rotation_accuracy_per_class", "block_mask",
    "mask_pixels", "MaskedPixelPretext", "augment", "info_nce", "ContrastivePretext", "cluster_pseudo_labels",
    "ClusterPretext", "deepcluster",
]

# ---------------------------------------------------------------- 1. transformation prediction
def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image, as in RotNet: [B, 1, H, W] square images ->
    ``(rotated [4B, 1, H, W], labels [4B])``, label k for a rotation by k·90° (all k = 0 first)."""
    rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
    return rotated, labels


def random_rotation(x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each image [B, 1, H, W] by a random multiple of 90°, drawn on the CPU from ``generator``.

    Returns:
        ``(rotated [B, 1, H, W], labels [B])`` with label k for a rotation by k·90°.
    """
    k = torch.randint(0, 4, (len(x),), generator=generator).to(x.device)
    every, _ = rotate_batch(x)  # [4B, 1, H, W], rotation j of image i at row j·B + i
    return every[k * len(x) + torch.arange(len(x), device=x.device)], k


class RotationPretext(nn.Module):
    """Transformation prediction: which of four rotations was applied?

    Training shows each image under one random rotation per step; RotNet feeds all four
    rotations of every image (:func:`rotate_batch`), four times the forward passes.
    """

    def __init__(self, encoder: ConvEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.feature_dim, 4)

    def step(self, batch: tuple[torch.Tensor, ...], *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        x, labels = random_rotation(batch[0], generator=generator)
        logits = self.head(self.encoder(x))  # [B, 4]
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.argmax(-1) == labels).float().mean()}


@torch.no_grad()
def rotation_accuracy_per_class(
    task: RotationPretext, x: torch.Tensor, y: torch.Tensor, *, num_classes: int = 10, device: Any = None
) -> torch.Tensor:
    """How often the rotation classifier names the rotation, for the images of each class.

    Every image of ``x`` [N, 1, H, W] is shown under all four rotations (:func:`rotate_batch`);
    ``y`` [N] (classes ``0 .. C - 1``) only groups them. Returns [C]: the accuracy over the 4·N_c
    rotated images of class c.
    """
    dev = torch.device(device) if device is not None else get_device()
    task.to(dev).eval()
    rotated, k = rotate_batch(x)
    pred = torch.cat([task.head(task.encoder(rotated[i : i + 512].to(dev))).argmax(-1).cpu()
                      for i in range(0, len(rotated), 512)])
    correct = (pred == k).float()
    classes = y.repeat(4)
    return torch.stack([correct[classes == c].mean() for c in range(num_classes)])


# ---------------------------------------------------------------- 2. masked prediction
def block_mask(
    batch_size: int, image_size: int, ratio: float, *, block: int = 2, device: Any = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A Bernoulli mask of ``block``×``block`` pixel blocks: [B, 1, H, W] float, 1 = hidden, 0 = visible.

    Each block is hidden independently with probability ``ratio``, drawn on the CPU from
    ``generator``; unlike MAE's per-sample shuffle, the number of hidden blocks varies from image to image.
    """
    side = image_size // block
    blocks = (torch.rand(batch_size, 1, side, side, generator=generator) < ratio).float()
    return blocks.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1).to(device)


def mask_pixels(x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The masked-prediction input: images ``x`` [B, 1, H, W] in [0, 1] with the pixels where ``hidden``
    [B, 1, H, W] is 1 (:func:`block_mask`) set to :data:`MASK_FILL`, the others unchanged."""
    return torch.where(hidden.bool(), torch.full_like(x, MASK_FILL), x)


class MaskedPixelPretext(nn.Module):
    """Masked prediction: reconstruct hidden pixel blocks from the visible ones (loss on hidden pixels only).

    Hidden pixels enter the encoder as :data:`MASK_FILL` (:func:`mask_pixels`), so that it can
    tell a hidden block from background; context encoders fill the hole with the data's mean,
    MAE drops the hidden patches.
    """

    def __init__(self, encoder: ConvEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        n = encoder.config.image_size
        self.decoder = nn.Sequential(nn.Linear(encoder.config.feature_dim, 256), nn.ReLU(), nn.Linear(256, n * n))

    def step(self, batch: tuple[torch.Tensor, ...], *, generator: torch.Generator | None = None) -> torch.Tensor:
        x = batch[0]
        n, ratio = self.encoder.config.image_size, self.encoder.config.mask_ratio
        hidden = block_mask(len(x), n, ratio, device=x.device, generator=generator)  # [B, 1, H, W]
        pred = self.decoder(self.encoder(mask_pixels(x, hidden))).view_as(x)
        return (((pred - x) ** 2) * hidden).sum() / hidden.sum().clamp(min=1)


# ---------------------------------------------------------------- 3. instance discrimination
def augment(
    x: torch.Tensor, *, max_degrees: float = 15.0, max_shift: float = 0.15, scale: tuple[float, float] = (0.9, 1.1),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A random view of each image [B, 1, H, W] in [0, 1]: small rotation, scaling and translation, then
    pixel noise; returns [B, 1, H, W] in [0, 1]. Random numbers are drawn on the CPU from ``generator``."""
    b = len(x)
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_degrees)
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(b, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * max_shift * 2  # affine_grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1)
    noise = 0.05 * torch.randn(x.shape, generator=generator)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return (F.grid_sample(x, grid, align_corners=False, padding_mode="zeros") + noise.to(x.device)).clamp(0, 1)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The InfoNCE (NT-Xent) loss of SimCLR over B positive pairs: a scalar.

    ``z1``, ``z2`` [B, D]: embeddings of the first and second views (row i of one pairs with row i
    of the other). Each of the 2B embeddings must pick its partner view among the 2B − 1 others.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [B, D], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z = F.normalize(torch.cat([z1, z2]), dim=-1)  # [2B, D]
    sim = z @ z.T / temperature  # [2B, 2B]
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))  # not yourself
    b = len(z1)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, partner)


class ContrastivePretext(nn.Module):
    """Instance discrimination: two augmented views, a projection head, InfoNCE."""

    def __init__(self, encoder: ConvEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        d = encoder.config.feature_dim
        self.projector = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 64))

    def step(self, batch: tuple[torch.Tensor, ...], *, generator: torch.Generator | None = None) -> torch.Tensor:
        x = batch[0]
        z1 = self.projector(self.encoder(augment(x, generator=generator)))  # [B, 64]
        z2 = self.projector(self.encoder(augment(x, generator=generator)))
        return info_nce(z1, z2, self.encoder.config.temperature)


# ---------------------------------------------------------------- 4. clustering
@torch.no_grad()
def cluster_pseudo_labels(features: torch.Tensor, k: int, *, seed: int) -> torch.Tensor:
    """k-means cluster ids of the L2-normalised features [N, D], as pseudo-labels [N]."""
    f = F.normalize(features.float(), dim=-1).cpu().numpy()
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(f)
    return torch.from_numpy(km.labels_.astype(np.int64))


class ClusterPretext(nn.Module):
    """Clustering: predict the current k-means cluster of each image."""

    def __init__(self, encoder: ConvEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.feature_dim, encoder.config.clusters)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        x, pseudo = batch  # the pseudo-labels need no randomness
        logits = self.head(self.encoder(x))  # [B, k]
        return {"loss": F.cross_entropy(logits, pseudo), "acc": (logits.argmax(-1) == pseudo).float().mean()}


def deepcluster(
    task: ClusterPretext, x: torch.Tensor, *, seed: int, device: torch.device, progress: bool | None = None,
    callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
) -> History:
    """DeepCluster's alternation on images ``x`` [N, 1, H, W]: k-means on the features -> pseudo-labels -> train -> repeat.

    The classifier head is re-initialised every round (seed + round), because cluster ids are
    arbitrary; each round has its own optimiser and learning-rate schedule. The returned history
    runs over all rounds: steps and seconds count from the first round (the k-means time
    included), and ``callbacks`` receive those global step numbers.
    """
    cfg = task.encoder.config
    history = History()
    per_round = cfg.steps // cfg.rounds
    task.to(device)
    start = time.perf_counter()
    for r in range(cfg.rounds):
        features = extract_features(task.encoder, x, batch_size=512, device=device)
        task.train()
        pseudo = cluster_pseudo_labels(features, cfg.clusters, seed=seed + r)
        with seeded(seed + r):
            task.head.reset_parameters()
        offset_steps, offset_seconds = len(history), time.perf_counter() - start
        shifted = [lambda i, v, cb=cb, o=offset_steps: cb(o + i, v) for cb in callbacks]
        h = train(task, (x, pseudo), lambda m, b: m.step(b), replace(cfg.recipe, steps=per_round), seed=seed + r,
                  device=device, progress=progress, desc=f"deepcluster round {r + 1}", callbacks=shifted)
        history.step += [offset_steps + s for s in h.step]
        history.seconds += [offset_seconds + t for t in h.seconds]
        for k, v in h.metrics.items():
            history.metrics.setdefault(k, []).extend(v)
    return history
