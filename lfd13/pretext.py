"""Pretext tasks: four ways to make labels out of unlabelled images.

Self-supervised learning invents a task whose answers are in the data itself,
trains an encoder on it, and keeps the encoder. The lecture (following the survey
of Ericsson et al. 2022) sorts pretext tasks into four families; each has a tiny
runnable example here, all training the same small :class:`ConvEncoder` on digits:

- **transformation prediction** — rotate each image by 0/90/180/270° and predict the
  rotation (Gidaris et al. 2018, RotNet): :class:`RotationPretext`.
- **masked prediction** — hide random blocks of pixels and reconstruct them
  (Pathak et al. 2016, context encoders; BERT and MAE in later chapters):
  :class:`MaskedPixelPretext`. Hidden pixels are set to :data:`MASK_FILL`, a value outside
  the data range, so that a hidden block differs from blank background.
- **instance discrimination** — two augmented views of an image must be closer to each
  other than to every other image in the batch, with the InfoNCE loss (SimCLR,
  Chen et al. 2020; contrastive learning is this family's best-known member):
  :class:`ContrastivePretext`.
- **clustering** — cluster the current features with k-means and learn to predict the
  cluster ids as pseudo-labels, alternately (a simplified DeepCluster, Caron et al. 2018:
  no PCA-whitening of the features, no cluster-balanced sampling): :func:`deepcluster`.

Each family is trained with :func:`lfd13.train.fit`; :func:`train_pretext` runs any of
them by name. The encoder is read at two layers (:data:`LAYERS`): its last output and the
last convolution's feature map, because the best layer for a probe depends on the pretext
task (Gidaris et al. 2018 find their best rotation features in an intermediate block).
Longer runs ship as checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`;
``python -m lfd13.pretrain pretext``). Shapes: B batch, H×W image, D feature width, C classes.
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
from lfd13.evaluation import TrainTestResult, extract_features, linear_probe, train_and_test
from lfd13.cnn import DIGITS_CNN_RECIPE, build_digits_cnn
from lfd13.runtime import get_device, make_generator, seeded
from lfd13.sampling import split_indices, subset_indices
from lfd13.train import History, Recipe, train

FAMILIES = ("rotation", "masked", "contrastive", "clustering")

#: The layers a probe can read: ``"conv"``, the last convolution's feature map flattened
#: (the input of the encoder's linear layer), and ``"last"``, the encoder's output.
LAYERS = ("conv", "last")

#: The value hidden pixels take in the masked-prediction input. The digits lie in [0, 1] and
#: their background is 0, so a hidden pixel set to 0 would look like blank paper.
MASK_FILL = -1.0


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
    "pretext-digits": PretextConfig(),  # the chapter's setting: 8×8 digits, a few seconds per family
}


def pretext_config(name: str = "pretext-digits", **overrides: Any) -> PretextConfig:
    """A named preset with optional overrides (e.g. ``steps=600``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown pretext preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class ConvEncoder(nn.Module):
    """The small CNN every pretext task trains: [B, 1, H, W] -> [B, D] features."""

    def __init__(self, config: PretextConfig) -> None:
        super().__init__()
        c = config.channels
        self.config = config
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1, stride=2), nn.ReLU(),  # H/2
            nn.Conv2d(2 * c, 2 * c, 3, padding=1, stride=2), nn.ReLU(),  # H/4
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
    """All four rotations of every image, as in RotNet.

    Args:
        x: [B, 1, H, W] square images.

    Returns:
        ``(rotated [4B, 1, H, W], labels [4B])`` with label k for a rotation by k·90°.
    """
    rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
    return rotated, labels


def random_rotation(x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each image by a random multiple of 90°, drawn on the CPU from ``generator``.

    Args:
        x: [B, 1, H, W] square images.
        generator: the source of the random rotations.

    Returns:
        ``(rotated [B, 1, H, W], labels [B])`` with label k for a rotation by k·90°.
    """
    k = torch.randint(0, 4, (len(x),), generator=generator).to(x.device)
    every = torch.stack([torch.rot90(x, j, dims=(-2, -1)) for j in range(4)])  # [4, B, 1, H, W]
    return every[k, torch.arange(len(x), device=x.device)], k


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
        logits = self.head(self.encoder(x))
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.argmax(-1) == labels).float().mean()}


@torch.no_grad()
def rotation_accuracy_per_class(
    task: RotationPretext, x: torch.Tensor, y: torch.Tensor, *, num_classes: int = 10, device: Any = None
) -> torch.Tensor:
    """How often the rotation classifier names the rotation, for the images of each class.

    Every image is shown under all four rotations (:func:`rotate_batch`).

    Args:
        task: a trained :class:`RotationPretext`.
        x: [N, 1, H, W] images.
        y: [N] their class labels in ``0 .. num_classes - 1`` (used only to group the images).

    Returns:
        [C] float: the pretext accuracy over the 4·N_c rotated images of class c.
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
    """A Bernoulli mask of ``block``×``block`` pixel blocks, for masked-pixel prediction.

    Each block is hidden independently with probability ``ratio``, drawn on the CPU from
    ``generator``. Unlike MAE's per-sample shuffle, the number of hidden blocks varies from
    image to image.

    Returns:
        [B, 1, H, W] float, 1 = hidden, 0 = visible.
    """
    side = image_size // block
    blocks = (torch.rand(batch_size, 1, side, side, generator=generator) < ratio).float()
    return blocks.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1).to(device)


def mask_pixels(x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The masked-prediction input: hidden pixels set to :data:`MASK_FILL`.

    Args:
        x: [B, 1, H, W] images in [0, 1].
        hidden: [B, 1, H, W], 1 = hidden, 0 = visible (:func:`block_mask`).

    Returns:
        [B, 1, H, W]: visible pixels unchanged, hidden ones :data:`MASK_FILL`.
    """
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
    """A random view of each image: small rotation, scaling and translation, then pixel noise.

    Random numbers are drawn on the CPU from ``generator``.

    Args:
        x: [B, 1, H, W] in [0, 1].
        generator: the source of the random views.

    Returns:
        [B, 1, H, W] augmented images.
    """
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
    """The InfoNCE (NT-Xent) loss of SimCLR over a batch of positive pairs.

    Each of the 2B embeddings must pick its partner view among the 2B − 1 others.

    Args:
        z1: [B, D] embeddings of the first views.
        z2: [B, D] embeddings of the second views (row i pairs with row i of ``z1``).
        temperature: softmax temperature.

    Returns:
        Scalar loss.
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
        z1 = self.projector(self.encoder(augment(x, generator=generator)))
        z2 = self.projector(self.encoder(augment(x, generator=generator)))
        return info_nce(z1, z2, self.encoder.config.temperature)


# ---------------------------------------------------------------- 4. clustering
@torch.no_grad()
def cluster_pseudo_labels(features: torch.Tensor, k: int, *, seed: int) -> torch.Tensor:
    """k-means cluster ids of L2-normalised features, as pseudo-labels [N]."""
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
        logits = self.head(self.encoder(x))
        return {"loss": F.cross_entropy(logits, pseudo), "acc": (logits.argmax(-1) == pseudo).float().mean()}


def _encode_all(encoder: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        f = torch.cat([encoder(x[i : i + 512].to(device)).cpu() for i in range(0, len(x), 512)])
    encoder.train()
    return f


def deepcluster(
    task: ClusterPretext, x: torch.Tensor, *, seed: int, device: torch.device, progress: bool | None = None,
    callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
) -> History:
    """DeepCluster's alternation: k-means on the features -> pseudo-labels -> train -> repeat.

    A simplified DeepCluster: the features are L2-normalised but not PCA-whitened, and the
    batches are drawn uniformly over images, not balanced over clusters. The classifier head
    is re-initialised every round, because cluster ids are arbitrary; each round has its own
    optimiser and learning-rate schedule. The returned history runs over all rounds: steps
    and seconds count from the first round (the k-means time included), and ``callbacks``
    receive those global step numbers.
    """
    cfg = task.encoder.config
    history = History()
    per_round = cfg.steps // cfg.rounds
    task.to(device)
    start = time.perf_counter()
    for r in range(cfg.rounds):
        pseudo = cluster_pseudo_labels(_encode_all(task.encoder, x, device), cfg.clusters, seed=seed + r)
        with seeded(seed + r):
            task.head.reset_parameters()
        offset_steps, offset_seconds = len(history), time.perf_counter() - start
        shifted = [lambda i, v, cb=cb, o=offset_steps: cb(o + i, v) for cb in callbacks]
        h = train(task, (x, pseudo), lambda m, b: m.step(b), replace(cfg.recipe, steps=per_round), seed=seed + r,
                  device=device, progress=progress, desc=f"deepcluster round {r + 1}", callbacks=shifted)
        for s, t in zip(h.step, h.seconds):
            history.step.append(offset_steps + s)
            history.seconds.append(offset_seconds + t)
        for k, v in h.metrics.items():
            history.metrics.setdefault(k, []).extend(v)
    return history


# ---------------------------------------------------------------- all four
_TASKS: dict[str, Callable[[ConvEncoder], nn.Module]] = {
    "rotation": RotationPretext,
    "masked": MaskedPixelPretext,
    "contrastive": ContrastivePretext,
    "clustering": ClusterPretext,
}


def family_of(task: nn.Module) -> str:
    """The family name of a pretext-task module (``"rotation"``, ...)."""
    for name, cls in _TASKS.items():
        if type(task) is cls:
            return name
    raise TypeError(f"{type(task).__name__} is not one of the pretext tasks {FAMILIES}")


def build_task(family: str, config: PretextConfig | str = "pretext-digits", *, seed: int = 0) -> nn.Module:
    """A fresh pretext task: the encoder of :func:`build_encoder` (``seed``) and the family's head (``seed + 1000``)."""
    if family not in _TASKS:
        raise KeyError(f"unknown pretext family {family!r}; choose one of {FAMILIES}")
    cfg = pretext_config(config) if isinstance(config, str) else config
    encoder = build_encoder(cfg, seed=seed)
    with seeded(seed + 1000):
        return _TASKS[family](encoder)


def train_task(
    task: nn.Module,
    x: torch.Tensor,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
) -> History:
    """Pre-train a task of :func:`build_task` on unlabelled images ``x`` [N, 1, H, W] for ``config.steps`` steps.

    ``seed`` fixes the batches and the random views / masks / rotations; ``callbacks``
    (``callback(step, metrics)``) run after every step, as in :func:`lfd13.train.fit`.
    """
    family, cfg = family_of(task), task.encoder.config
    dev = torch.device(device) if device is not None else get_device()
    if family == "clustering":
        return deepcluster(task, x, seed=seed, device=dev, progress=progress, callbacks=callbacks)  # type: ignore[arg-type]
    views = make_generator(seed + 2000)  # the random rotations, masks or augmented views
    return train(task, (x,), lambda m, b: m.step(b, generator=views), cfg.recipe, seed=seed, device=dev,
                 progress=progress, desc=f"pretext: {family}", callbacks=callbacks)


def train_pretext(
    family: str,
    x: torch.Tensor,
    *,
    config: PretextConfig | str = "pretext-digits",
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> tuple[ConvEncoder, History]:
    """Pre-train a fresh :class:`ConvEncoder` with one pretext family on unlabelled images.

    Args:
        family: one of :data:`FAMILIES`.
        x: [N, 1, H, W] unlabelled images.
        config: a :class:`PretextConfig` or preset name.
        seed: fixes the initial weights, the batches and the random views / masks.
        device: where to train (default :func:`lfd13.get_device`).

    Returns:
        ``(encoder in eval mode, history)``.
    """
    task = build_task(family, config, seed=seed)
    history = train_task(task, x, seed=seed, device=device, progress=progress)
    return task.encoder.eval(), history


# ---------------------------------------------------------------- probing
def layer_features(
    encoder: ConvEncoder, x: torch.Tensor, layer: str = "last", *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Frozen features [N, F] of images ``x`` [N, 1, H, W] at one of :data:`LAYERS` (F = 256 for "conv", D for "last")."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; choose one of {LAYERS}")
    encoder.eval()
    return extract_features(lambda b: encoder.features(b, layer), x, device=device)


def probe_layers(
    encoder: ConvEncoder,
    x: torch.Tensor,
    y: torch.Tensor,
    train_idx: torch.Tensor,
    eval_idx: torch.Tensor,
    *,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Linear-probe accuracy of each of :data:`LAYERS`: fit on ``train_idx``, score on ``eval_idx``.

    The probe's regularisation is chosen by cross-validation on the ``train_idx`` examples
    (``linear_probe(c="cv")``). Give a validation subset of the training pool as ``eval_idx``
    (:func:`lfd13.sampling.split_indices`) to watch a run without touching the test set.

    Returns:
        ``{"conv": accuracy, "last": accuracy}``.
    """
    idx = torch.cat([train_idx, eval_idx])
    out = {}
    for layer in LAYERS:
        f = layer_features(encoder, x[idx], layer, device=device)
        n = len(train_idx)
        out[layer] = linear_probe(f[:n], y[train_idx], f[n:], y[eval_idx], c="cv")
    return out


# ---------------------------------------------------------------- transfer: fine-tuning and the from-scratch baseline
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


scratch_cnn = build_digits_cnn  # TODO(H1): use lfd13.cnn directly
SCRATCH_RECIPE = DIGITS_CNN_RECIPE


# ---------------------------------------------------------------- checkpoints
#: The command that (re)creates the shipped pretext checkpoints ``pretext_<family>_seed<s>``.
RECREATE = "python -m lfd13.pretrain pretext"

#: The pre-training seeds of the shipped checkpoints: one checkpoint per family and seed.
SHIPPED_SEEDS = (0, 1, 2)


def checkpoint_name(family: str, seed: int) -> str:
    """``"pretext_rotation_seed0"`` etc."""
    return f"pretext_{family}_seed{seed}"


def save_checkpoint(
    task: nn.Module, name: str, *, recipe: dict[str, Any], result: dict[str, Any], command: str = RECREATE,
    directory: Path | str = shipped.CHECKPOINT_DIR,
) -> shipped.CheckpointInfo:
    """Save a trained task (encoder and pretext head) as the checkpoint ``name`` (see :mod:`lfd13.shipped`)."""
    config = {"family": family_of(task), **asdict(task.encoder.config)}
    return shipped.save(name, task.state_dict(), kind="pretext", command=command, config=config, recipe=recipe,
                        result=result, directory=directory)


def load_checkpoint(
    name_or_path: str | Path, *, device: torch.device | str | None = None, directory: Path | str | None = None
) -> tuple[nn.Module, shipped.CheckpointInfo]:
    """Load a pretext checkpoint (e.g. ``"pretext_rotation_seed0"``) after checking its sha256.

    Returns:
        ``(task in eval mode, info)``: the task's ``.encoder`` is the :class:`ConvEncoder`;
        ``info.result`` holds what the run recorded (loss curve, validation probes by step).
    """
    state, info = shipped.load(name_or_path, kind="pretext", command=RECREATE, directory=directory)
    fields = dict(info.config)
    family = fields.pop("family")
    task = shipped.load_weights(build_task(family, PretextConfig(**fields)), state, info)
    return task.to(device or "cpu").eval(), info


# --------------------------------------------------------------------------- what transfer buys (slide 8)

#: Chapter 1b's probe runs: run r draws its labelled images with seed r and reads the encoder of
#: pre-training seed ``r % len(SHIPPED_SEEDS)``. The CNN from scratch uses the same label draws.
PROBE_RUNS = tuple(range(6))

#: Labels per class of the data-efficiency comparison; labels per class and the validation
#: interval of the fine-tuning comparison.
BENEFIT_BUDGETS, FINETUNE_LABELS, FINETUNE_EVAL_EVERY = (1, 10), 10, 20

#: The record of Chapter 1b's trainings for slide 8 (the JSON file alone) and its command.
BENEFITS = "pretext_benefits"
BENEFITS_RECORD = "python -m lfd13.pretrain pretext-benefits"


def best_by_validation(infos: Mapping[str, Sequence[shipped.CheckpointInfo]]) -> tuple[str, str]:
    """The (family, layer) whose recorded validation probe, at the end of pre-training, is best on average over seeds.

    ``infos``: family -> the shipped checkpoints' infos, one per seed (``info.result["validation_probe"]``).
    """
    return max(((f, layer) for f in infos for layer in LAYERS),
               key=lambda k: float(np.mean([info.result["validation_probe"][k[1]][-1] for info in infos[k[0]]])))


def scratch_accuracy(digits: Any, n: int, draw: int, *, device: torch.device | str | None = None) -> float:
    """Test accuracy of Chapter 1a's CNN (:func:`scratch_cnn`) trained from scratch on ``n`` labels per class of ``draw``."""
    idx = subset_indices(digits.y_train, n, seed=draw)
    return train_and_test(scratch_cnn(seed=draw), (digits.x_train[idx], digits.y_train[idx]), (digits.x_test, digits.y_test),
                          SCRATCH_RECIPE, seed=draw, device=device).accuracy


def finetune_run(encoder: ConvEncoder, digits: Any, seed: int, *, n_val: int, device: torch.device | str | None = None) -> TrainTestResult:
    """Fine-tune a copy of ``encoder`` with a fresh linear head on :data:`FINETUNE_LABELS` labels per class.

    The labelled images are the probes' draw ``seed``; ``n_val`` further images per class are the
    validation split, scored every :data:`FINETUNE_EVAL_EVERY` steps, and the best step's weights
    are tested (:func:`lfd13.evaluation.train_and_test` with :data:`SCRATCH_RECIPE`).
    """
    tr, va = split_indices(digits.y_train, FINETUNE_LABELS, n_val, seed=seed)
    return train_and_test(encoder_classifier(encoder, seed=seed), (digits.x_train[tr], digits.y_train[tr]),
                          (digits.x_test, digits.y_test), SCRATCH_RECIPE, seed=seed, device=device,
                          validation=(digits.x_train[va], digits.y_train[va]), eval_every=FINETUNE_EVAL_EVERY)


def load_benefits(name_or_path: str | Path = BENEFITS, *, directory: Path | str | None = None) -> shipped.CheckpointInfo:
    """The record of :data:`BENEFITS`: ``result["scratch"][n]`` the CNN's test accuracy per probe run,
    ``result["finetune"][start]`` one :meth:`~lfd13.evaluation.TrainTestResult.to_record` row per seed
    (``start``: ``"pre-trained"`` or ``"random weights"``), ``result["family"]`` the family fine-tuned."""
    return shipped.load_record(name_or_path, command=BENEFITS_RECORD, directory=directory)
