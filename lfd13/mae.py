"""Masked autoencoders (MAE): mask most patches, encode the rest, reconstruct the pixels.

He et al. 2022, *Masked Autoencoders Are Scalable Vision Learners*. An image is cut
into patches; a random 75 % of them are removed; the **encoder sees only the visible
patches**; a **light decoder** gets the encoded visible patches plus a shared, learned
mask token in every removed position and reconstructs all patches; the loss is the
mean squared error **on the removed patches only**. Because the encoder never
processes the removed 75 %, pre-training is several times cheaper than running the
same encoder on every patch with mask tokens (the SimMIM/BEiT style), which
:meth:`MaskedAutoencoder.forward_all_patches` implements for comparison.

The methods are named after the paper's steps, as in facebookresearch/mae
``models_mae.py``: :meth:`~MaskedAutoencoder.patchify`,
:meth:`~MaskedAutoencoder.forward_encoder`, :meth:`~MaskedAutoencoder.forward_decoder`,
:meth:`~MaskedAutoencoder.forward_loss`. The layers, the 2-D sin-cos position
embeddings and the per-sample **random masking** are those of transformers'
``ViTMAEForPreTraining`` (``ViTMAEEmbeddings.random_masking``): this package holds no
masking implementation of its own.

Shapes: B batch, C channels, H×W image, P patch side, L = (H/P)·(W/P) patches,
K = int(L·(1 − mask_ratio)) visible patches, D encoder width, D' decoder width.
Mask convention (MAE's): ``mask`` [B, L] with 0 = kept (visible), 1 = removed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from lfd13 import shipped
from lfd13.runtime import preset, seeded

__all__ = [
    "MAEClassifier",
    "MAEConfig",
    "MAEOutput",
    "KIND",
    "MaskedAutoencoder",
    "PRESETS",
    "build_mae",
    "load_mae",
    "mae_config",
    "mae_step",
]


@dataclass(frozen=True)
class MAEConfig:
    """A small MAE. Use a preset from :data:`PRESETS` or :func:`mae_config`."""

    image_size: int = 16  # side of the square input images, in pixels
    patch_size: int = 2  # side of a square patch; L = (image_size / patch_size)² patches
    num_channels: int = 1  # 1 for grey-scale digits
    width: int = 64  # encoder width D
    depth: int = 2  # encoder transformer blocks
    heads: int = 4  # encoder attention heads (must divide width)
    mlp_ratio: int = 2  # MLP hidden size = mlp_ratio · width, in encoder and decoder
    decoder_width: int = 32  # decoder width D' (MAE: the decoder is narrower than the encoder)
    decoder_depth: int = 1  # decoder transformer blocks (MAE: "light" decoder)
    decoder_heads: int = 4  # decoder attention heads (must divide decoder_width)
    mask_ratio: float = 0.75  # share of patches removed per image (MAE's default 75 %)
    norm_pix_loss: bool = False  # MAE's option: regress per-patch normalised pixels

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}; pick a patch side that tiles the image"
            )
        if self.width % self.heads != 0 or self.decoder_width % self.decoder_heads != 0:
            raise ValueError(
                f"heads must divide the width: width={self.width}, heads={self.heads}, "
                f"decoder_width={self.decoder_width}, decoder_heads={self.decoder_heads}"
            )
        if self.width % 4 != 0 or self.decoder_width % 4 != 0:
            raise ValueError("width and decoder_width must be multiples of 4 (2-D sin-cos position embeddings)")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1), got {self.mask_ratio}")
        if self.num_visible < 1:
            raise ValueError(f"mask_ratio={self.mask_ratio} leaves no visible patch out of {self.num_patches}; lower it")

    @property
    def num_patches(self) -> int:
        """L, the number of patches per image."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_visible(self) -> int:
        """K, the number of patches the encoder sees (as ``random_masking`` computes it)."""
        return int(self.num_patches * (1 - self.mask_ratio))

    def to_hf(self) -> ViTMAEConfig:
        """The equivalent transformers ``ViTMAEConfig`` (no dropout, as in MAE pre-training)."""
        return ViTMAEConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            hidden_size=self.width,
            num_hidden_layers=self.depth,
            num_attention_heads=self.heads,
            intermediate_size=self.mlp_ratio * self.width,
            decoder_hidden_size=self.decoder_width,
            decoder_num_hidden_layers=self.decoder_depth,
            decoder_num_attention_heads=self.decoder_heads,
            decoder_intermediate_size=self.mlp_ratio * self.decoder_width,
            mask_ratio=self.mask_ratio,
            norm_pix_loss=self.norm_pix_loss,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-6,
        )


PRESETS: dict[str, MAEConfig] = {
    # unit tests: 8×8 digits, 16 patches, one narrow block
    "mae-nano": MAEConfig(image_size=8, patch_size=2, width=16, depth=1, heads=2, decoder_width=16, decoder_heads=2),
    # the digits model: 16×16 digits, 64 patches of 2×2, width 64, depth 2, 1-block decoder
    "mae-digits": MAEConfig(),
}


def mae_config(name: str = "mae-digits", **overrides: Any) -> MAEConfig:
    """A named preset of :data:`PRESETS`, optionally with some fields replaced (e.g. ``mask_ratio=0.5``).

    Raises:
        lfd13.runtime.UnknownPresetError: ``name`` is not a preset; the message lists them.
    """
    return preset(PRESETS, name, what="MAE", **overrides)


class MAEOutput(NamedTuple):
    """What one MAE forward pass returns.

    Attributes:
        loss: scalar, MSE over the removed patches.
        pred: [B, L, P·P·C] reconstructed patches (all of them).
        mask: [B, L] float, 0 = kept, 1 = removed.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor


class MaskedAutoencoder(nn.Module):
    """MAE built from transformers' ViTMAE parts, with the paper's steps as methods.

    The encoder is ``ViTMAEForPreTraining.vit`` (patch embedding, fixed 2-D sin-cos
    position embeddings, ``random_masking``, transformer blocks), the decoder is
    ``ViTMAEForPreTraining.decoder``. In transformers 5.x the constructor leaves both
    sin-cos position tables at zero (they are filled by the weight-initialisation hook only
    on some code paths); :meth:`init_position_embeddings` fills them, otherwise the model
    cannot tell patches apart and the loss stalls at the mean-pixel error.
    """

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        self.hf = ViTMAEForPreTraining(config.to_hf())
        # The mask embedding of the SimMIM/BEiT-style baseline (forward_all_patches): it
        # replaces a removed patch *at the encoder input*. MAE itself never uses it.
        self.encoder_mask_embedding = nn.Parameter(torch.zeros(1, 1, config.width))
        nn.init.normal_(self.encoder_mask_embedding, std=0.02)
        self.init_position_embeddings()

    # ----------------------------------------------------------------- set-up
    @torch.no_grad()
    def init_position_embeddings(self) -> None:
        """Fill the fixed 2-D sin-cos position embeddings of encoder and decoder."""
        emb = self.hf.vit.embeddings
        proj = emb.patch_embeddings.projection
        flag = getattr(proj, "_is_hf_initialized", False)
        proj._is_hf_initialized = False  # the library skips initialisation once this flag is set
        emb.initialize_weights()
        proj._is_hf_initialized = flag
        self.hf.decoder.initialize_weights(self.config.num_patches)

    @property
    def embeddings(self) -> nn.Module:
        """transformers' ``ViTMAEEmbeddings``: patch embedding, position embeddings, ``random_masking``."""
        return self.hf.vit.embeddings

    # ----------------------------------------------------------------- patches
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """Cut images into flattened patches.

        Args:
            imgs: [B, C, H, W].

        Returns:
            [B, L, P·P·C], patches in row-major order.
        """
        return self.hf.patchify(imgs)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`: [B, L, P·P·C] -> [B, C, H, W]."""
        return self.hf.unpatchify(patches)

    def draw_noise(self, batch_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform noise [B, L] on the CPU whose ascending sort decides which patches stay.

        Drawn on the CPU from ``generator`` (pass one: :func:`lfd13.make_generator`), so that
        a seed gives the same masks on every device. Without one, the global generator is
        used (inside :func:`lfd13.train.fit` it is seeded by the run's seed).
        """
        return torch.rand(batch_size, self.config.num_patches, generator=generator)

    # ----------------------------------------------------------------- MAE
    def forward_encoder(
        self, imgs: torch.Tensor, *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed patches, remove ``mask_ratio`` of them at random, encode the visible ones.

        Masking is ``ViTMAEEmbeddings.random_masking`` from transformers.

        Args:
            imgs: [B, C, H, W].
            noise: [B, L] optional; the patches with the smallest noise are kept.
            generator: draws ``noise`` when it is not given.

        Returns:
            ``latent`` [B, 1 + K, D] (a [CLS] token, then the visible patches, shuffled order),
            ``mask`` [B, L] (0 = kept, 1 = removed, original order),
            ``ids_restore`` [B, L] (the permutation that undoes the shuffle).
        """
        if noise is None:
            noise = self.draw_noise(len(imgs), generator=generator)
        out = self.hf.vit(pixel_values=imgs, noise=noise.to(imgs.device))
        return out.last_hidden_state, out.mask, out.ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Append mask tokens, unshuffle, add position embeddings, decode every patch.

        Args:
            latent: [B, 1 + K, D] encoder output.
            ids_restore: [B, L] from :meth:`forward_encoder`.

        Returns:
            [B, L, P·P·C] predicted pixels of every patch.
        """
        return self.hf.decoder(latent, ids_restore).logits

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error on the removed patches only.

        Args:
            imgs: [B, C, H, W] the originals.
            pred: [B, L, P·P·C] predicted patches.
            mask: [B, L] 0 = kept, 1 = removed.

        Returns:
            Scalar loss: per-patch MSE averaged over removed patches.
        """
        target = self.patchify(imgs)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((pred - target) ** 2).mean(dim=-1)  # [B, L]
        return (per_patch * mask).sum() / mask.sum()

    def forward(
        self, imgs: torch.Tensor, *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> MAEOutput:
        """One MAE pass: encode the visible patches, decode all, MSE on the removed ones."""
        latent, mask, ids_restore = self.forward_encoder(imgs, noise=noise, generator=generator)
        pred = self.forward_decoder(latent, ids_restore)
        return MAEOutput(self.forward_loss(imgs, pred, mask), pred, mask)

    # ----------------------------------------------------------------- baseline
    def forward_all_patches(
        self, imgs: torch.Tensor, *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> MAEOutput:
        """The SimMIM/BEiT-style alternative: the encoder runs on **all** L patches.

        The same patches are removed (same ``random_masking``), but each removed patch is
        replaced by a learned mask embedding *at the encoder input*, so the encoder
        processes 1 + L tokens instead of 1 + K. The decoder and the loss are MAE's, so the
        difference in step time is the cost of encoding the mask tokens (the paper's Table 1c
        "encoder w/ [M]" row and Table 2's wall-clock comparison).
        """
        emb = self.embeddings
        if noise is None:
            noise = self.draw_noise(len(imgs), generator=generator)
        x = emb.patch_embeddings(imgs) + emb.position_embeddings[:, 1:, :]  # [B, L, D]
        _, mask, _ = emb.random_masking(x, noise.to(imgs.device))  # which patches are removed
        x = torch.where(mask.unsqueeze(-1).bool(), self.encoder_mask_embedding.to(x.dtype), x)
        latent = self._encode_tokens(x)  # [B, 1 + L, D]
        identity = torch.arange(self.config.num_patches, device=imgs.device).expand(len(imgs), -1)
        pred = self.forward_decoder(latent, identity)  # nothing left to unshuffle
        return MAEOutput(self.forward_loss(imgs, pred, mask), pred, mask)

    # ----------------------------------------------------------------- features
    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend [CLS] to position-embedded patch tokens [B, N, D], run the blocks -> [B, 1 + N, D]."""
        emb = self.embeddings
        cls = (emb.cls_token + emb.position_embeddings[:, :1, :]).expand(len(x), -1, -1)
        h = torch.cat([cls, x], dim=1)
        for layer in self.hf.vit.layers:
            h = layer(h)
        return self.hf.vit.layernorm(h)

    def encode(self, imgs: torch.Tensor, *, pool: str = "mean") -> torch.Tensor:
        """Features for probes and fine-tuning: the encoder on all patches, no masking.

        Args:
            imgs: [B, C, H, W].
            pool: ``"mean"`` — the mean of the encoded patch tokens, [B, D] (MAE's global
                pooling); ``"cls"`` — the [CLS] token, [B, D]; ``"tokens"`` — every patch token,
                concatenated in patch order, [B, L·D] (keeps *where* each feature is).

        Returns:
            The features, as described for ``pool``.
        """
        emb = self.embeddings
        x = emb.patch_embeddings(imgs) + emb.position_embeddings[:, 1:, :]
        h = self._encode_tokens(x)  # [B, 1 + L, D]
        if pool == "mean":
            return h[:, 1:, :].mean(dim=1)
        if pool == "cls":
            return h[:, 0, :]
        if pool == "tokens":
            return h[:, 1:, :].flatten(1)
        raise ValueError(f"unknown pool {pool!r}; use 'mean', 'cls' or 'tokens'")


class MAEClassifier(nn.Module):
    """An MAE encoder with a linear head, for fine-tuning (MAE §4: global pooling + linear)."""

    def __init__(self, mae: MaskedAutoencoder, num_classes: int) -> None:
        super().__init__()
        self.mae = mae
        self.norm = nn.LayerNorm(mae.config.width)
        self.head = nn.Linear(mae.config.width, num_classes)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> logits [B, num_classes]."""
        return self.head(self.norm(self.mae.encode(imgs)))


def mae_step(
    model: MaskedAutoencoder, batch: tuple[torch.Tensor, ...], *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Step function for :func:`lfd13.train.fit`: the MAE loss of a batch ``(imgs, ...)``.

    Bind ``generator`` (``functools.partial(mae_step, generator=g)``) to draw the masks from it.
    """
    return model(batch[0], generator=generator).loss


def build_mae(config: MAEConfig | str = "mae-digits", *, seed: int = 0, **overrides: Any) -> MaskedAutoencoder:
    """A freshly initialised MAE; the same ``seed`` gives the same weights."""
    cfg = mae_config(config, **overrides) if isinstance(config, str) else replace(config, **overrides)
    with seeded(seed):
        return MaskedAutoencoder(cfg)


# ----------------------------------------------------------------- checkpoints
#: The ``kind`` written into an MAE checkpoint's JSON (see :mod:`lfd13.shipped`).
KIND = "mae"


def load_mae(name_or_path: str | Path, directory: Path | str | None = None) -> tuple[MaskedAutoencoder, shipped.CheckpointInfo]:
    """Load an MAE checkpoint (e.g. ``"mae_digits"``) after checking its sha256: ``(model on the CPU in eval mode, info)``.

    ``directory``: where to look for a name (default: the package's checkpoints).
    """
    return shipped.load_model(name_or_path, kind=KIND, directory=directory,
                              build=lambda info, _folder: MaskedAutoencoder(MAEConfig(**info.config)))
