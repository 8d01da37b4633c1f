"""A small CLIP built with open_clip, for the coloured-shape world.

CLIP (Radford et al., 2021, *Learning Transferable Visual Models From Natural
Language Supervision*) trains an image encoder and a text encoder together so
that an image and its caption land close together in one shared embedding
space, and unrelated pairs far apart. The model here *is* open_clip's
:class:`open_clip.model.CLIP` — its text transformer, its tokenizer, its
``logit_scale``, trained with its ``ClipLoss`` — shrunk in two places so that it
learns in seconds on a CPU:

- **Text tower**: a one-layer open_clip ``TextTransformer`` reading open_clip's
  own BPE tokens. The real model embeds all 49,408 token ids; our captions use
  fewer than twenty, so :class:`CompactTokenEmbedding` keeps one row per id actually used
  (a lookup from open_clip id to row) and leaves the token ids, the causal mask
  and the end-of-text pooling of open_clip untouched.
- **Image tower**: :class:`ConvImageEncoder`, three strided convolutions and a
  linear projection, set as ``model.visual``. open_clip's own
  ``VisionTransformer`` is available (``image_tower="vit"``). The CNN was chosen
  beforehand: a convolution's locality and weight sharing are a helpful prior for
  small images and few steps, which a ViT has to learn from data.

The contrastive loss, zero-shot classification and retrieval are *not*
implemented here: the book uses ``open_clip.loss.ClipLoss`` and shows the other
two in a few lines of torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from lfd13 import shipped
from lfd13.runtime import preset, seeded
from lfd13.train import History, Recipe, train

#: Size of open_clip's BPE vocabulary (ids 0..49407; 49406 = start, 49407 = end of text).
OPEN_CLIP_VOCAB_SIZE = 49408


@dataclass(frozen=True)
class CLIPConfig:
    """A small CLIP: which image tower, and how wide and deep each tower is."""

    embed_dim: int = 64  # width D of the shared image-text embedding space
    image_size: int = 24  # side of the square RGB input images
    image_tower: str = "cnn"  # "cnn" (ConvImageEncoder as model.visual) or "vit" (open_clip's VisionTransformer)
    cnn_channels: tuple[int, ...] = (32, 64, 128)  # channels of the strided 3x3 convolutions, one per layer
    cnn_pool: str = "max"  # how the CNN pools its last feature map over positions: "mean" or "max"
    vit_width: int = 64  # ViT token width (image_tower="vit")
    vit_layers: int = 2  # ViT depth (image_tower="vit")
    vit_patch: int = 4  # ViT patch side in pixels (image_tower="vit")
    text_width: int = 64  # text transformer width
    text_layers: int = 1  # text transformer depth
    text_heads: int = 4  # attention heads of the text transformer
    context_length: int = 12  # tokens per caption, start and end of text included
    init_temperature: float = 0.07  # initial softmax temperature tau; logit_scale = log(1 / tau), learned

    def __post_init__(self) -> None:
        if self.image_tower not in ("cnn", "vit"):
            raise ValueError(f"image_tower must be 'cnn' or 'vit', got {self.image_tower!r}")
        if self.image_tower == "vit" and self.image_size % self.vit_patch:
            raise ValueError(f"image_size={self.image_size} must be a multiple of vit_patch={self.vit_patch}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width={self.text_width} must be divisible by text_heads={self.text_heads}")
        if not self.cnn_channels:
            raise ValueError("cnn_channels needs at least one layer")
        if self.context_length < 3:
            raise ValueError(f"context_length must be >= 3 (start, one token, end), got {self.context_length}")
        if not 0.0 < self.init_temperature <= 1.0:
            raise ValueError(f"init_temperature must lie in (0, 1], got {self.init_temperature}")


#: Named presets. "clip-shapes" is the book's model, its CNN's pooling the one chosen on validation combinations
#: (mean over max; ``python -m lfd13.recreate clip-design``); "clip-tiny" is for tests.
PRESETS: dict[str, CLIPConfig] = {
    "clip-shapes": CLIPConfig(cnn_pool="mean"),
    "clip-shapes-vit": CLIPConfig(image_tower="vit"),
    "clip-tiny": CLIPConfig(embed_dim=16, image_size=16, cnn_channels=(8, 16, 16), vit_width=16, vit_layers=1, text_width=16, text_heads=2),
}


class ConvImageEncoder(nn.Module):
    """Image tower: strided 3x3 convolutions, global max (or mean) pooling, a linear projection.

    Max pooling asks "is this pattern anywhere in the image?", which suits one shape
    at a random position. The book chooses between them by zero-shot accuracy on validation
    colour-shape combinations (:mod:`lfd13.experiments.clip_pretraining`), never on the test ones.

    ``forward(images [B, 3, H, W]) -> features [B, D]`` (not normalised; open_clip's
    ``encode_image`` normalises them).
    """

    def __init__(self, *, channels: Sequence[int], output_dim: int, pool: str = "mean") -> None:
        super().__init__()
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
        self.pool = pool
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(1, c_out), nn.GELU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, output_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
        x = self.features(images)  # (B, C, H', W')
        x = x.mean(dim=(2, 3)) if self.pool == "mean" else x.amax(dim=(2, 3))  # (B, C)
        return self.proj(x)  # (B, D)


class CompactTokenEmbedding(nn.Module):
    """An embedding for a few open_clip token ids: one row per id in use.

    ``forward(text [B, L] open_clip ids) -> [B, L, W]``. Ids outside the vocabulary
    given at construction raise an error naming them.
    """

    def __init__(self, token_ids: Sequence[int], width: int, *, vocab_size: int = OPEN_CLIP_VOCAB_SIZE) -> None:
        super().__init__()
        ids = sorted(set(int(i) for i in token_ids))
        if not ids or ids[0] < 0 or ids[-1] >= vocab_size:
            raise ValueError(f"token_ids must be non-empty ids in 0..{vocab_size - 1}")
        lookup = torch.full((vocab_size,), -1, dtype=torch.long)
        lookup[torch.tensor(ids)] = torch.arange(len(ids))
        self.register_buffer("lookup", lookup, persistent=False)  # (V,) open_clip id -> row, -1 = unknown; rebuilt from token_ids
        self.register_buffer("token_ids", torch.tensor(ids), persistent=True)  # (K,) the ids in use
        self.embedding = nn.Embedding(len(ids), width)
        nn.init.normal_(self.embedding.weight, std=0.02)  # as open_clip's TextTransformer.init_parameters

    @property
    def weight(self) -> torch.Tensor:
        """[K, W] the compact table (K ids in use)."""
        return self.embedding.weight

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        rows = self.lookup[text]  # (B, L)
        if bool((rows < 0).any()):
            unknown = sorted(set(text[rows < 0].tolist()))
            words = [_tokenizer().decoder.get(i, "?") for i in unknown]
            raise KeyError(
                f"token ids {unknown} ({words}) are not in this model's vocabulary; build the model "
                "with build_clip(..., texts=...) including texts that contain these words"
            )
        return self.embedding(rows)


_TOKENIZER: SimpleTokenizer | None = None


def _tokenizer() -> SimpleTokenizer:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = SimpleTokenizer()  # open_clip's BPE; the vocabulary ships inside the package
    return _TOKENIZER


def tokenize(texts: str | Sequence[str], *, context_length: int) -> torch.Tensor:
    """open_clip's tokenizer, refusing to truncate.

    Args:
        texts: one caption or a list of N captions.
        context_length: L, tokens per caption including start and end of text.

    Returns:
        [N, L] long open_clip ids: 49406, the caption's tokens, 49407, then 0 (padding).
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty")
    tok = _tokenizer()
    lengths = [len(tok.encode(t)) + 2 for t in texts]
    if max(lengths) > context_length:
        longest = texts[lengths.index(max(lengths))]
        raise ValueError(f"caption {longest!r} needs {max(lengths)} tokens > context_length={context_length}; shorten it or raise context_length")
    return tok(texts, context_length=context_length)


def vocabulary_ids(texts: Sequence[str]) -> list[int]:
    """The sorted open_clip ids the ``texts`` use, plus start, end and padding (0)."""
    tok = _tokenizer()
    ids = {0, tok.sot_token_id, tok.eot_token_id}
    for t in texts:
        ids.update(tok.encode(t))
    return sorted(ids)


def build_clip(
    config: CLIPConfig | str, *, texts: Sequence[str] = (), seed: int, token_ids: Sequence[int] | None = None
) -> CLIP:
    """An ``open_clip.model.CLIP`` sized by ``config``, its token table cut to the ids of ``texts``.

    Args:
        config: the model's sizes and image tower, or the name of one of :data:`PRESETS`.
        texts: every caption or prompt the model will read (their words form its vocabulary).
        seed: seed of the initial weights.
        token_ids: the open_clip ids of the vocabulary, instead of ``texts`` (as a checkpoint records them).

    Returns:
        The model (on the CPU). ``model.visual`` is a :class:`ConvImageEncoder` for
        ``image_tower="cnn"`` and open_clip's ``VisionTransformer`` for ``"vit"``.
    """
    if isinstance(config, str):
        config = preset(PRESETS, config, what="CLIP")
    if token_ids is None:
        if not texts:
            raise ValueError("build_clip needs texts=[...] (the captions and prompts the model will read) or token_ids")
        token_ids = vocabulary_ids(texts)
    vision_cfg = CLIPVisionCfg(
        layers=config.vit_layers,
        width=config.vit_width,
        head_width=max(16, config.vit_width // 4),
        patch_size=config.vit_patch,
        image_size=config.image_size,
    )
    text_cfg = CLIPTextCfg(
        context_length=config.context_length,
        vocab_size=1,  # replaced below by the compact table
        width=config.text_width,
        heads=config.text_heads,
        layers=config.text_layers,
    )
    with seeded(seed):  # seeded initialisation; the caller's generator is left alone
        model = CLIP(config.embed_dim, vision_cfg, text_cfg, init_logit_scale=math.log(1.0 / config.init_temperature))
        if config.image_tower == "cnn":
            model.visual = ConvImageEncoder(channels=config.cnn_channels, output_dim=config.embed_dim, pool=config.cnn_pool)
        model.token_embedding = CompactTokenEmbedding(token_ids, config.text_width)
    model.vocab_size = OPEN_CLIP_VOCAB_SIZE
    return model


def clip_step(model: CLIP, batch: tuple[torch.Tensor, torch.Tensor], *, loss_fn: ClipLoss | None = None) -> dict[str, torch.Tensor]:
    """One contrastive step for :func:`lfd13.train.fit` on ``(images [B, 3, H, W], tokens [B, L])``.

    ``ClipLoss`` takes the symmetric cross-entropy of the [B, B] similarity matrix with the
    matching pairs on its diagonal. Also reports the temperature 1 / exp(logit_scale).
    """
    image, text = batch
    image_features, text_features, logit_scale = model(image, text)  # (B, D), (B, D) normalised; exp(s)
    loss = (loss_fn or ClipLoss())(image_features, text_features, logit_scale)
    return {"loss": loss, "temperature": 1.0 / logit_scale.detach()}


def train_clip(
    model: CLIP,
    images: torch.Tensor,
    tokens: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> History:
    """Contrastive pre-training with open_clip's ``ClipLoss`` (:func:`clip_step`) and :func:`lfd13.train.train`.

    Args:
        model: a CLIP from :func:`build_clip`.
        images: [N, 3, H, W] training images.
        tokens: [N, L] their captions' token ids (:func:`tokenize`).
        recipe: steps, learning rate, batch size B (each pair's negatives are the other B - 1), …
        seed: seed of the batch order.
        device: where to train (default :func:`lfd13.get_device`).
        progress: show a progress bar.

    Returns:
        The :class:`lfd13.train.History` with the loss and the temperature per step.
    """
    if images.ndim != 4 or tokens.ndim != 2 or len(images) != len(tokens):
        raise ValueError(f"need images [N, 3, H, W] and tokens [N, L] with the same N, got {tuple(images.shape)} and {tuple(tokens.shape)}")
    step = partial(clip_step, loss_fn=ClipLoss())
    return train(model, (images, tokens), step, recipe, seed=seed, device=device, progress=progress, desc="clip")


@torch.no_grad()
def encode_images(model: CLIP, images: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Unit-length image embeddings.

    Args:
        model: a CLIP (its device is used).
        images: [N, 3, H, W].

    Returns:
        [N, D] float on the CPU, L2-normalised.
    """
    device = next(model.parameters()).device
    model.eval()
    out = [model.encode_image(images[i : i + batch_size].to(device), normalize=True).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def encode_texts(model: CLIP, texts: Sequence[str] | torch.Tensor, *, context_length: int | None = None) -> torch.Tensor:
    """Unit-length text embeddings.

    Args:
        model: a CLIP (its device is used).
        texts: N captions, or their [N, L] token ids.
        context_length: L when ``texts`` are strings (default ``model.context_length``).

    Returns:
        [N, D] float on the CPU, L2-normalised.
    """
    device = next(model.parameters()).device
    tokens = texts if isinstance(texts, torch.Tensor) else tokenize(texts, context_length=context_length or model.context_length)
    model.eval()
    return model.encode_text(tokens.to(device), normalize=True).cpu()


# ---------------------------------------------------------------- a trained CLIP as a checkpoint (lfd13.shipped)
#: The ``kind`` of a CLIP checkpoint (:func:`lfd13.shipped.save_model`).
KIND = "clip"


def checkpoint_config(model: CLIP, config: CLIPConfig) -> dict[str, Any]:
    """What a checkpoint's JSON records to rebuild ``model``: ``config`` and the open_clip ids of its vocabulary."""
    return {**asdict(config), "token_ids": model.token_embedding.token_ids.tolist()}


def build_from_checkpoint(info: shipped.CheckpointInfo, folder: Path) -> CLIP:
    """The untrained CLIP that a checkpoint's weights fit, from its :func:`checkpoint_config` (``folder`` unused)."""
    fields = dict(info.config)
    token_ids = fields.pop("token_ids")
    config = CLIPConfig(**dict(fields, cnn_channels=tuple(fields["cnn_channels"])))
    return build_clip(config, token_ids=token_ids, seed=0)


def load_trained_clip(name: str | Path, directory: Path | str | None = None) -> tuple[CLIP, shipped.CheckpointInfo]:
    """A trained CLIP from the package's checkpoints (e.g. ``"clip_shapes_seed0"``) or ``directory``, hashes checked.

    Returns:
        ``(model on the CPU in eval mode, info)``; ``info`` holds the config, the recipe, what the
        training run measured (loss curve, seconds) and the command that recreates it.
    """
    model, info = shipped.load_model(name, kind=KIND, build=build_from_checkpoint, directory=directory)
    return cast(CLIP, model), info


__all__ = [
    "KIND", "OPEN_CLIP_VOCAB_SIZE", "PRESETS", "CLIPConfig", "CompactTokenEmbedding", "ConvImageEncoder",
    "build_clip", "build_from_checkpoint", "checkpoint_config", "clip_step", "encode_images", "encode_texts",
    "load_trained_clip", "tokenize", "train_clip", "vocabulary_ids",
]  # fmt: skip
