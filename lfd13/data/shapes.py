"""Coloured shapes with captions: a tiny image–text world for CLIP.

Each image shows one shape (circle, square, triangle, cross, …) in one colour
(red, green, blue, …) at a random position, size and rotation, on a grey,
noisy background; its caption says what it shows ("a red circle", "a drawing of
a large blue cross"). The data are generated, so they are free, unlimited and
exactly described — the miniature of the web-scale image–text pairs that CLIP
(Radford et al., 2021, *Learning Transferable Visual Models From Natural
Language Supervision*) learns from.

The :func:`compositional_split` holds whole colour–shape *combinations* out of
training (every colour and every shape is still seen, just never together).
Zero-shot accuracy on those held-out combinations measures whether a model
composes "red" and "circle" from the words, the kind of generalisation to
unseen classes that makes zero-shot transfer possible.

Example::

    cfg = PRESETS["shapes-24"]          # 8 colours x 4 shapes, 8 combinations held out
    split = compositional_split(cfg, n_train=4000, n_test_per_combo=40, seed=0)  # or the preset's name
    split.train.images.shape            # (4000, 3, 24, 24)
    split.train.captions[0]             # e.g. 'a drawing of a large cyan circle'
    split.test_held_out.images.shape    # (320, 3, 24, 24): 40 images of each held-out pair
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lfd13.runtime import preset

#: RGB values in [0, 1] of the colours a config may name.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.20),
    "blue": (0.15, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.60, 0.20, 0.80),
    "orange": (1.00, 0.55, 0.00),
    "cyan": (0.10, 0.85, 0.90),
    "white": (0.97, 0.97, 0.97),
}

#: Shapes a config may name (drawn by :func:`shape_masks`).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star")

#: Caption templates; ``{size}`` is "small" or "large".
TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape}",
    "a {size} {colour} {shape}",
    "a drawing of a {colour} {shape}",
    "a drawing of a {size} {colour} {shape}",
)

SIZE_WORDS: tuple[str, str] = ("small", "large")


@dataclass(frozen=True)
class ShapesConfig:
    """What the generated world contains and how varied its images are."""

    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")  # keys of COLOURS
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "cross")  # shape names, members of SHAPES
    held_out: tuple[tuple[str, str], ...] = (  # (colour, shape) pairs never shown in training
        ("red", "circle"),
        ("green", "square"),
        ("blue", "triangle"),
        ("yellow", "cross"),
        ("purple", "circle"),
        ("orange", "square"),
        ("cyan", "triangle"),
        ("white", "cross"),
    )
    image_size: int = 24  # side H = W of the RGB images, in pixels
    small_radius: tuple[float, float] = (0.18, 0.24)  # radius range of "small" shapes, as a fraction of image_size
    large_radius: tuple[float, float] = (0.30, 0.38)  # radius range of "large" shapes, as a fraction of image_size
    rotate: bool = True  # rotate each shape by a random angle
    colour_jitter: float = 0.08  # each RGB channel of the shape moves by up to ± this much
    background: tuple[float, float] = (0.05, 0.40)  # range of the grey background level
    background_tint: float = 0.15  # each RGB channel of the background moves by up to ± this much per image
    noise: float = 0.06  # std of the Gaussian pixel noise added everywhere
    templates: tuple[str, ...] = TEMPLATES  # caption templates drawn uniformly per image

    def __post_init__(self) -> None:
        unknown = [c for c in self.colours if c not in COLOURS]
        if unknown:
            raise ValueError(f"unknown colour(s) {unknown}; choose from {sorted(COLOURS)}")
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown:
            raise ValueError(f"unknown shape(s) {unknown}; choose from {list(SHAPES)}")
        if len(set(self.colours)) != len(self.colours) or len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"colours and shapes must not repeat, got {self.colours} and {self.shapes}")
        if len(self.colours) < 2 or len(self.shapes) < 2:
            raise ValueError("need at least 2 colours and 2 shapes for a compositional task")
        for pair in self.held_out:
            if len(pair) != 2 or pair[0] not in self.colours or pair[1] not in self.shapes:
                raise ValueError(
                    f"held-out pair {pair!r} must be (colour, shape) with colour in {self.colours} "
                    f"and shape in {self.shapes}"
                )
        seen = [(c, s) for c in self.colours for s in self.shapes if (c, s) not in set(self.held_out)]
        for c in self.colours:
            if not any(sc == c for sc, _ in seen):
                raise ValueError(f"colour {c!r} appears only in held-out pairs; keep at least one of its shapes in training")
        for s in self.shapes:
            if not any(ss == s for _, ss in seen):
                raise ValueError(f"shape {s!r} appears only in held-out pairs; keep at least one of its colours in training")
        if self.image_size < 12:
            raise ValueError(f"image_size must be >= 12 pixels to draw recognisable shapes, got {self.image_size}")
        for name in ("small_radius", "large_radius", "background"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} must be a range (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        if self.large_radius[1] > 0.45:
            raise ValueError(f"large_radius must stay <= 0.45 so that shapes fit in the image, got {self.large_radius}")
        if self.small_radius[1] >= self.large_radius[0]:
            raise ValueError("small_radius must end below the start of large_radius, so that 'small' and 'large' differ")
        if not self.templates or any("{colour}" not in t or "{shape}" not in t for t in self.templates):
            raise ValueError("every caption template must contain {colour} and {shape}")

    @property
    def num_combos(self) -> int:
        """Number of colour–shape combinations, C = colours · shapes."""
        return len(self.colours) * len(self.shapes)

    def combo_index(self, colour: str, shape: str) -> int:
        """Index in 0..C-1 of a combination: ``colour_index · len(shapes) + shape_index``."""
        return self.colours.index(colour) * len(self.shapes) + self.shapes.index(shape)

    def combo_names(self) -> list[tuple[str, str]]:
        """All C combinations ``(colour, shape)`` in index order."""
        return [(c, s) for c in self.colours for s in self.shapes]

    def held_out_combos(self) -> list[int]:
        """Indices of the held-out combinations, sorted."""
        return sorted(self.combo_index(c, s) for c, s in self.held_out)

    def seen_combos(self) -> list[int]:
        """Indices of the combinations shown in training, sorted."""
        held = set(self.held_out_combos())
        return [i for i in range(self.num_combos) if i not in held]


#: Named presets. "shapes-24" is the book's world; "shapes-tiny" is for tests.
PRESETS: dict[str, ShapesConfig] = {
    "shapes-24": ShapesConfig(),
    "shapes-tiny": ShapesConfig(
        colours=("red", "green", "blue"),
        shapes=("circle", "square", "triangle"),
        held_out=(("red", "circle"), ("green", "square")),
        image_size=16,
        background_tint=0.0,
    ),
}


@dataclass(frozen=True)
class ShapesData:
    """Generated images with their attributes and captions.

    Attributes:
        images: [N, 3, H, W] float RGB in [0, 1].
        colour: [N] long colour indices into ``config.colours``.
        shape: [N] long shape indices into ``config.shapes``.
        large: [N] bool, True for "large" shapes, False for "small" ones.
        captions: N strings, one per image.
        config: the :class:`ShapesConfig` that generated them.
    """

    images: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    large: torch.Tensor
    captions: tuple[str, ...]
    config: ShapesConfig = field(repr=False)

    def __len__(self) -> int:
        return len(self.colour)

    @property
    def combo(self) -> torch.Tensor:
        """[N] long combination index ``colour · len(shapes) + shape`` in 0..C-1."""
        return self.colour * len(self.config.shapes) + self.shape

    def subset(self, index: torch.Tensor) -> ShapesData:
        """The examples at ``index`` ([K] long indices or [N] bool mask)."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        caps = tuple(self.captions[i] for i in index.tolist())
        return ShapesData(self.images[index], self.colour[index], self.shape[index], self.large[index], caps, self.config)


@dataclass(frozen=True)
class ShapesSplit:
    """A compositional split: some colour–shape combinations never appear in ``train``.

    Attributes:
        train: training pairs, only from seen combinations.
        test_seen: test images of the combinations seen in training.
        test_held_out: test images of the held-out combinations.
    """

    train: ShapesData
    test_seen: ShapesData
    test_held_out: ShapesData

    @property
    def config(self) -> ShapesConfig:
        return self.train.config


def shape_masks(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor, radius: torch.Tensor, shapes: Sequence[str]) -> torch.Tensor:
    """Which pixels lie inside each image's shape.

    Args:
        shape: [N] long indices into ``shapes``.
        u, v: [N, H, W] pixel coordinates relative to the shape's centre, already rotated.
        radius: [N] shape radius in pixels (circumradius; the square and cross are
            scaled so that all shapes cover a similar area).
        shapes: the names the indices refer to.

    Returns:
        [N, H, W] bool, True inside the shape.
    """
    r = radius[:, None, None]
    rho = torch.sqrt(u**2 + v**2)
    mask = torch.zeros_like(u, dtype=torch.bool)
    for k, name in enumerate(shapes):
        sel = shape == k
        if not bool(sel.any()):
            continue
        if name == "circle":
            inside = rho <= 0.85 * r
        elif name == "square":
            inside = torch.maximum(u.abs(), v.abs()) <= 0.75 * r
        elif name == "triangle":
            # equilateral: the three sides have outward normals 120 degrees apart, inradius r / 2
            inside = torch.ones_like(mask)
            for j in range(3):
                phi = math.pi / 2 + 2 * math.pi * j / 3
                inside &= u * math.cos(phi) + v * math.sin(phi) <= 0.5 * r
        elif name == "cross":
            arm = 0.3 * r
            inside = ((u.abs() <= r) & (v.abs() <= arm)) | ((v.abs() <= r) & (u.abs() <= arm))
        elif name == "ring":
            inside = (rho <= r) & (rho >= 0.55 * r)
        elif name == "star":
            alpha = torch.atan2(v, u)
            inside = rho <= r * (0.62 + 0.38 * torch.cos(5 * alpha))
        else:  # pragma: no cover - guarded by ShapesConfig
            raise ValueError(f"unknown shape {name!r}")
        mask = torch.where(sel[:, None, None], inside, mask)
    return mask


def render_shapes(
    colour: torch.Tensor,
    shape: torch.Tensor,
    large: torch.Tensor,
    *,
    config: ShapesConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw one shape per image at a random position, radius, rotation and background.

    Args:
        colour: [N] long colour indices into ``config.colours``.
        shape: [N] long shape indices into ``config.shapes``.
        large: [N] bool, draw the radius from ``config.large_radius`` (else ``small_radius``).
        config: the world's settings.
        generator: the source of all randomness (CPU generator).

    Returns:
        [N, 3, H, W] float RGB images in [0, 1].
    """
    if not (colour.shape == shape.shape == large.shape) or colour.ndim != 1:
        raise ValueError(f"colour, shape and large must be 1-D [N] of equal length, got {colour.shape}, {shape.shape}, {large.shape}")
    if len(colour) and (int(colour.min()) < 0 or int(colour.max()) >= len(config.colours)):
        raise ValueError(f"colour indices must lie in 0..{len(config.colours) - 1}")
    if len(shape) and (int(shape.min()) < 0 or int(shape.max()) >= len(config.shapes)):
        raise ValueError(f"shape indices must lie in 0..{len(config.shapes) - 1}")
    n, h = len(colour), config.image_size

    def uniform(lo: float | torch.Tensor, hi: float | torch.Tensor, *shape_: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape_, generator=generator)

    lo = torch.where(large, config.large_radius[0], config.small_radius[0])
    hi = torch.where(large, config.large_radius[1], config.small_radius[1])
    radius = uniform(lo, hi, n) * h  # [N] pixels
    margin = radius + 1.0
    cx = uniform(margin, h - 1 - margin, n)  # [N] centre, pixel coordinates
    cy = uniform(margin, h - 1 - margin, n)
    angle = uniform(0.0, 2 * math.pi, n) if config.rotate else torch.zeros(n)
    jitter = uniform(-config.colour_jitter, config.colour_jitter, n, 3)
    background = uniform(config.background[0], config.background[1], n)[:, None]  # [N, 1] grey level
    background = (background + uniform(-config.background_tint, config.background_tint, n, 3)).clamp(0.0, 1.0)  # [N, 3]
    noise = torch.randn(n, 3, h, h, generator=generator) * config.noise

    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij")
    dx = xs[None] - cx[:, None, None]  # [N, H, W]
    dy = ys[None] - cy[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    mask = shape_masks(shape, u, v, radius, config.shapes)  # [N, H, W]

    rgb = torch.tensor([COLOURS[c] for c in config.colours])[colour]  # [N, 3]
    rgb = (rgb + jitter).clamp(0.0, 1.0)
    images = torch.where(mask[:, None], rgb[:, :, None, None], background[:, :, None, None])
    return (images + noise).clamp(0.0, 1.0)


def caption(colour: str, shape: str, *, large: bool | None = None, template: str = "a {colour} {shape}") -> str:
    """Fill a caption template: ``caption("red", "circle", large=True, template=TEMPLATES[1])`` -> "a large red circle"."""
    if "{size}" in template and large is None:
        raise ValueError(f"template {template!r} needs a size: pass large=True or False")
    size = SIZE_WORDS[int(bool(large))] if large is not None else ""
    return template.format(colour=colour, shape=shape, size=size)


def _world(config: ShapesConfig | str) -> ShapesConfig:
    """A world's settings, given as such or by its preset name."""
    return preset(PRESETS, config, what="shapes world") if isinstance(config, str) else config


def make_shapes(
    n: int,
    *,
    config: ShapesConfig | str,
    combos: Sequence[int] | None = None,
    generator: torch.Generator,
    templates: Sequence[str] | None = None,
    balanced: bool = False,
) -> ShapesData:
    """Generate ``n`` captioned images, combinations drawn uniformly from ``combos``.

    Args:
        n: number of images.
        config: the world's settings, or the name of one of :data:`PRESETS`.
        combos: allowed combination indices (see :meth:`ShapesConfig.combo_index`); default all.
        generator: the source of all randomness; the same seed gives the same data.
        templates: caption templates to draw from (default ``config.templates``).
        balanced: give every combination exactly ``n / len(combos)`` images, in ``combos``
            order (``n`` must be a multiple of ``len(combos)``), instead of drawing at random.

    Returns:
        A :class:`ShapesData` of ``n`` examples.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (e.g. lfd13.make_generator(0)), got {type(generator).__name__}")
    config = _world(config)
    combos = list(range(config.num_combos)) if combos is None else list(combos)
    if not combos or any(not 0 <= c < config.num_combos for c in combos):
        raise ValueError(f"combos must be a non-empty list of indices in 0..{config.num_combos - 1}, got {combos}")
    templates = tuple(config.templates if templates is None else templates)
    if not templates or any("{colour}" not in t or "{shape}" not in t for t in templates):
        raise ValueError("templates must be non-empty, each with {colour} and {shape}")
    if balanced:
        if n % len(combos):
            raise ValueError(f"balanced=True needs n to be a multiple of len(combos)={len(combos)}, got n={n}")
        combo = torch.tensor(combos).repeat_interleave(n // len(combos))
    else:
        combo = torch.tensor(combos)[torch.randint(len(combos), (n,), generator=generator)]
    colour, shape = combo // len(config.shapes), combo % len(config.shapes)
    large = torch.rand(n, generator=generator) < 0.5
    which = torch.randint(len(templates), (n,), generator=generator).tolist()
    images = render_shapes(colour, shape, large, config=config, generator=generator)
    captions = tuple(
        caption(config.colours[c], config.shapes[s], large=bool(b), template=templates[t])
        for c, s, b, t in zip(colour.tolist(), shape.tolist(), large.tolist(), which)
    )
    return ShapesData(images, colour, shape, large, captions, config)


def compositional_split(
    config: ShapesConfig | str, *, n_train: int, n_test_per_combo: int, seed: int
) -> ShapesSplit:
    """Training pairs from the seen combinations only, and test images of every combination.

    Args:
        config: the world, including which combinations are ``held_out`` (or the name of one of :data:`PRESETS`).
        n_train: number of training pairs (seen combinations, uniformly).
        n_test_per_combo: test images per combination, for seen and held-out ones alike.
        seed: seed of the generator; the same seed gives the same split.

    Returns:
        A :class:`ShapesSplit`. Test captions use the most specific template,
        "a {size} {colour} {shape}", so that each test caption describes its image fully.
    """
    if not isinstance(n_test_per_combo, int) or n_test_per_combo < 1:
        raise ValueError(f"n_test_per_combo must be a positive int, got {n_test_per_combo!r}")
    config = _world(config)
    g = torch.Generator().manual_seed(seed)
    train = make_shapes(n_train, config=config, combos=config.seen_combos(), generator=g)
    test_template = ("a {size} {colour} {shape}",)

    def per_combo(combos: list[int]) -> ShapesData:
        n = len(combos) * n_test_per_combo
        return make_shapes(n, config=config, combos=combos, generator=g, templates=test_template, balanced=True)

    return ShapesSplit(train, per_combo(config.seen_combos()), per_combo(config.held_out_combos()))


__all__ = [
    "COLOURS", "PRESETS", "SHAPES", "SIZE_WORDS", "TEMPLATES", "ShapesConfig", "ShapesData", "ShapesSplit",
    "caption", "compositional_split", "make_shapes", "render_shapes", "shape_masks",
]  # fmt: skip
