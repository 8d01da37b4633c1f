"""Pretext tasks: four ways to make labels out of unlabelled images.

Self-supervised learning invents a task whose answers are in the data itself, trains an
encoder on it, and keeps the encoder. The survey of Ericsson et al. (2022) sorts pretext
tasks into four families; each has a tiny runnable example here, all training the same
small :class:`ConvEncoder` on digits:

- **transformation prediction** — rotate each image by 0/90/180/270° and predict the
  rotation (Gidaris et al. 2018, RotNet): :class:`RotationPretext`.
- **masked prediction** — hide random blocks of pixels and reconstruct them (Pathak et al.
  2016, context encoders; BERT and MAE are the same idea at scale): :class:`MaskedPixelPretext`.
  Hidden pixels are set to :data:`MASK_FILL`, a value outside the data range, so that a
  hidden block differs from blank background.
- **instance discrimination** — two augmented views of an image must be closer to each other
  than to every other image in the batch, with the InfoNCE loss (SimCLR, Chen et al. 2020;
  contrastive learning is this family's best-known member): :class:`ContrastivePretext`.
- **clustering** — cluster the current features with k-means and learn to predict the cluster
  ids as pseudo-labels, alternately (a simplified DeepCluster, Caron et al. 2018: no
  PCA-whitening of the features, no cluster-balanced sampling): :func:`deepcluster`.

:func:`train_pretext` runs any family by name with :func:`lfd13.train.train`. The encoder is
read at two layers (:data:`LAYERS`), its output and the last convolution's feature map,
because the best layer for a probe depends on the pretext task (Gidaris et al. 2018 find
their best rotation features in an intermediate block). A trained task is saved with
:func:`lfd13.shipped.save_model` (its config: :func:`task_config`) and read back with
:func:`load_pretext_task`. Shapes: B batch, H×W image, D feature width, C classes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from lfd13 import shipped
from lfd13.evaluation import extract_features, linear_probe
from lfd13.runtime import get_device, make_generator, preset, seeded
from lfd13.train import History, Recipe, train

__all__ = [
    "FAMILIES", "LAYERS", "MASK_FILL", "HEAD_SEED_OFFSET", "VIEWS_SEED_OFFSET", "PretextConfig", "PRESETS", "pretext_config",
    "ConvEncoder", "build_encoder", "rotate_batch", "random_rotation", "RotationPretext", "rotation_accuracy_per_class",
    "block_mask", "mask_pixels", "MaskedPixelPretext", "augment", "info_nce", "ContrastivePretext", "cluster_pseudo_labels",
    "ClusterPretext", "deepcluster", "family_of", "build_task", "train_task", "train_pretext", "layer_features",
    "probe_layers", "EncoderClassifier", "encoder_classifier", "task_config", "load_pretext_task",
]  # fmt: skip

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
    encoder: ConvEncoder, x: torch.Tensor, layer: str = "last", *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Frozen features [N, F] of images ``x`` [N, 1, H, W] at one of :data:`LAYERS` (F = 256 for "conv", D for "last")."""
    encoder.eval()
    return extract_features(lambda b: encoder.features(b, layer), x, device=device)


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


def encoder_classifier(encoder: ConvEncoder, *, num_classes: int = 10, seed: int) -> EncoderClassifier:
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
