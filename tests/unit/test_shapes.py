"""Tests for lfd13.data.shapes: the coloured-shape world with captions."""

import dataclasses

import pytest
import torch

from lfd13.data.shapes import (
    PRESETS,
    TEMPLATES,
    ShapesConfig,
    caption,
    compositional_split,
    make_shapes,
    render_shapes,
)
from lfd13.runtime import UnknownPresetError

TINY = PRESETS["shapes-tiny"]


def test_shapes_and_ranges():
    data = make_shapes(50, config=TINY, generator=torch.Generator().manual_seed(0))
    assert data.images.shape == (50, 3, 16, 16)
    assert data.images.dtype == torch.float32
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert data.colour.shape == data.shape.shape == data.large.shape == (50,)
    assert len(data.captions) == len(data) == 50
    assert int(data.combo.max()) < TINY.num_combos


def test_captions_describe_the_image():
    data = make_shapes(40, config=TINY, generator=torch.Generator().manual_seed(1))
    for i, text in enumerate(data.captions):
        words = text.split()
        assert TINY.colours[int(data.colour[i])] in words
        assert TINY.shapes[int(data.shape[i])] in words
        if "small" in words or "large" in words:
            assert ("large" in words) == bool(data.large[i])


def test_deterministic_for_a_seed():
    a = make_shapes(20, config=TINY, generator=torch.Generator().manual_seed(3))
    b = make_shapes(20, config=TINY, generator=torch.Generator().manual_seed(3))
    c = make_shapes(20, config=TINY, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)


def test_varied_positions_and_colours():
    # same combination, different images: position, size, rotation and background vary
    data = make_shapes(30, config=TINY, combos=[0], generator=torch.Generator().manual_seed(0))
    assert (data.combo == 0).all()
    flat = data.images.flatten(1)
    assert torch.cdist(flat, flat).fill_diagonal_(1e9).min() > 1.0
    # the shape's pixels carry its colour: red has high R and low G
    red = data.images[:, 0] - data.images[:, 1]
    assert float(red.amax(dim=(1, 2)).min()) > 0.4


def test_large_shapes_cover_more_pixels():
    g = torch.Generator().manual_seed(0)
    n = 64
    colour, shape = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    cfg = dataclasses.replace(TINY, noise=0.0, colour_jitter=0.0)
    small = render_shapes(colour, shape, torch.zeros(n, dtype=torch.bool), config=cfg, generator=g)
    large = render_shapes(colour, shape, torch.ones(n, dtype=torch.bool), config=cfg, generator=g)
    area = lambda x: (x[:, 0] - x[:, 1] > 0.3).float().sum(dim=(1, 2)).mean()  # noqa: E731
    assert area(large) > 1.8 * area(small)


def test_compositional_split_holds_combinations_out():
    split = compositional_split(TINY, n_train=300, n_test_per_combo=5, seed=0)
    held = set(TINY.held_out_combos())
    assert held and not held & set(split.train.combo.tolist())
    assert set(split.test_held_out.combo.tolist()) == held
    assert set(split.test_seen.combo.tolist()) == set(TINY.seen_combos())
    # balanced test sets: exactly n per combination
    assert torch.bincount(split.test_seen.combo, minlength=TINY.num_combos)[TINY.seen_combos()].tolist() == [5] * len(TINY.seen_combos())
    assert len(split.test_held_out) == 5 * len(held)
    # every colour and every shape is still seen in training
    assert set(split.train.colour.tolist()) == set(range(len(TINY.colours)))
    assert set(split.train.shape.tolist()) == set(range(len(TINY.shapes)))
    # test captions use the fully specific template
    assert all(len(c.split()) == 4 for c in split.test_seen.captions)


def test_split_deterministic():
    a = compositional_split(TINY, n_train=50, n_test_per_combo=2, seed=7)
    b = compositional_split(TINY, n_train=50, n_test_per_combo=2, seed=7)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test_held_out.images, b.test_held_out.images)


def test_a_world_by_name_is_the_preset_and_an_unknown_one_lists_the_names():
    by_name = compositional_split("shapes-tiny", n_train=20, n_test_per_combo=1, seed=3)
    by_config = compositional_split(TINY, n_train=20, n_test_per_combo=1, seed=3)
    assert torch.equal(by_name.train.images, by_config.train.images) and by_name.train.captions == by_config.train.captions
    with pytest.raises(UnknownPresetError, match="shapes-24.*shapes-tiny"):
        make_shapes(4, config="shapes-99", generator=torch.Generator().manual_seed(0))


def test_book_preset():
    cfg = PRESETS["shapes-24"]
    assert cfg.num_combos == 32 and len(cfg.held_out_combos()) == 8
    assert cfg.combo_names()[cfg.combo_index("red", "circle")] == ("red", "circle")


def test_caption_template():
    assert caption("red", "circle") == "a red circle"
    assert caption("blue", "cross", large=False, template=TEMPLATES[1]) == "a small blue cross"
    with pytest.raises(ValueError, match="needs a size"):
        caption("blue", "cross", template=TEMPLATES[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(colours=("red", "mauve")), "unknown colour"),
        (dict(shapes=("circle", "hexagon")), "unknown shape"),
        (dict(held_out=(("red", "hexagon"),)), "held-out pair"),
        (dict(colours=("red", "green"), shapes=("circle", "square"), held_out=(("red", "circle"), ("red", "square"))), "only in held-out"),
        (dict(image_size=8), "image_size"),
        (dict(small_radius=(0.2, 0.35)), "small_radius"),
        (dict(templates=("a {shape}",)), "template"),
    ],
)
def test_bad_config(kwargs, match):
    base = dict(colours=("red", "green", "blue"), shapes=("circle", "square", "triangle"), held_out=())
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ShapesConfig(**base)


def test_bad_inputs():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="positive int"):
        make_shapes(0, config=TINY, generator=g)
    with pytest.raises(TypeError, match="torch.Generator"):
        make_shapes(5, config=TINY, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="combos"):
        make_shapes(5, config=TINY, combos=[99], generator=g)
    with pytest.raises(ValueError, match="multiple"):
        make_shapes(5, config=TINY, combos=[0, 1], generator=g, balanced=True)
    with pytest.raises(ValueError, match="indices"):
        render_shapes(torch.tensor([5]), torch.tensor([0]), torch.tensor([True]), config=TINY, generator=g)
