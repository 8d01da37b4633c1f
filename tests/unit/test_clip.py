"""Tests for lfd13.clip: a small open_clip CLIP with a compact token table and a CNN image tower."""

import dataclasses

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from lfd13.clip import (
    PRESETS,
    CLIPConfig,
    CompactTokenEmbedding,
    ConvImageEncoder,
    build_clip,
    encode_images,
    encode_texts,
    tokenize,
    train_clip,
    vocabulary_ids,
)
from lfd13.data.shapes import compositional_split
from lfd13.runtime import UnknownPresetError
from lfd13.train import Recipe

TINY = PRESETS["clip-tiny"]
TEXTS = ["a red circle", "a drawing of a small green square", "a large blue triangle"]


def test_tokenize_is_open_clips():
    ours = tokenize(TEXTS, context_length=12)
    assert torch.equal(ours, open_clip.tokenize(TEXTS, context_length=12))
    assert ours.shape == (3, 12)
    with pytest.raises(ValueError, match="context_length"):
        tokenize(["a drawing of a small green square"], context_length=5)


def test_build_is_open_clip_model():
    model = build_clip(TINY, texts=TEXTS, seed=0)
    assert isinstance(model, CLIP)
    assert isinstance(model.visual, ConvImageEncoder)
    assert isinstance(model.token_embedding, CompactTokenEmbedding)
    ids = vocabulary_ids(TEXTS)
    assert model.token_embedding.weight.shape == (len(ids), TINY.text_width)
    assert len(ids) < 20  # a dozen rows instead of 49,408
    img = encode_images(model, torch.rand(5, 3, 16, 16))
    txt = encode_texts(model, TEXTS)
    assert img.shape == (5, TINY.embed_dim) and txt.shape == (3, TINY.embed_dim)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(3))


def test_compact_table_agrees_with_full_open_clip_table():
    """Our compact embedding gives exactly open_clip's text features with the full 49,408-row table."""
    model = build_clip(TINY, texts=TEXTS, seed=0).eval()
    full = CLIP(
        TINY.embed_dim,
        CLIPVisionCfg(layers=1, width=16, head_width=16, patch_size=4, image_size=16),
        CLIPTextCfg(context_length=TINY.context_length, width=TINY.text_width, heads=TINY.text_heads, layers=TINY.text_layers),
    ).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("visual.", "token_embedding."))}
    full.load_state_dict(state, strict=False)
    with torch.no_grad():
        full.token_embedding.weight[model.token_embedding.token_ids] = model.token_embedding.weight
    tokens = tokenize(TEXTS, context_length=TINY.context_length)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), full.encode_text(tokens))


def test_unknown_word_is_a_clear_error():
    model = build_clip(TINY, texts=TEXTS, seed=0)
    with pytest.raises(KeyError, match="not in this model's vocabulary"):
        encode_texts(model, ["a purple star"])


def test_same_seed_same_weights():
    a, b = build_clip(TINY, texts=TEXTS, seed=1), build_clip(TINY, texts=TEXTS, seed=1)
    c = build_clip(TINY, texts=TEXTS, seed=2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.visual.proj.weight, c.visual.proj.weight)


def test_vit_tower_is_open_clips():
    cfg = dataclasses.replace(TINY, image_tower="vit")
    model = build_clip(cfg, texts=TEXTS, seed=0)
    assert isinstance(model.visual, open_clip.transformer.VisionTransformer)
    assert encode_images(model, torch.rand(2, 3, 16, 16)).shape == (2, cfg.embed_dim)


def test_training_lowers_the_clip_loss_and_is_deterministic():
    split = compositional_split("shapes-tiny", n_train=256, n_test_per_combo=2, seed=0)
    tokens = tokenize(split.train.captions, context_length=TINY.context_length)

    def run():
        model = build_clip(TINY, texts=split.train.captions, seed=0)
        recipe = Recipe(steps=40, lr=3e-3, batch_size=32, weight_decay=0.1, warmup=20)
        return train_clip(model, split.train.images, tokens, recipe, seed=0, device="cpu", progress=False)

    h1, h2 = run(), run()
    assert h1["loss"] == h2["loss"]
    assert h1.last("loss", 5) < 0.85 * sum(h1["loss"][:5]) / 5
    assert "temperature" in h1.metrics


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_tower="resnet"), "image_tower"),
        (dict(image_tower="vit", image_size=18, vit_patch=4), "multiple"),
        (dict(text_width=30, text_heads=4), "divisible"),
        (dict(cnn_pool="median"), "pool"),
        (dict(init_temperature=0.0), "init_temperature"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfg = CLIPConfig(**kwargs)
        build_clip(cfg, texts=TEXTS, seed=0)


def test_bad_training_input():
    model = build_clip(TINY, texts=TEXTS, seed=0)
    with pytest.raises(ValueError, match="same N"):
        train_clip(model, torch.rand(4, 3, 16, 16), tokenize(TEXTS, context_length=12), Recipe(steps=1, lr=1e-3))
    with pytest.raises(ValueError, match="RGB"):
        model.visual(torch.rand(2, 1, 16, 16))


def test_build_clip_needs_a_vocabulary():
    with pytest.raises(ValueError, match="texts"):
        build_clip(TINY, seed=0)
    a = build_clip(TINY, texts=TEXTS, seed=3)
    b = build_clip(TINY, token_ids=vocabulary_ids(TEXTS), seed=3)
    assert torch.equal(a.token_embedding.token_ids, b.token_embedding.token_ids)


def test_a_preset_by_name_is_the_preset_and_an_unknown_one_lists_the_names():
    a, b = build_clip("clip-tiny", texts=TEXTS, seed=5), build_clip(TINY, texts=TEXTS, seed=5)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(UnknownPresetError, match="clip-shapes.*clip-tiny"):
        build_clip("clip-huge", texts=TEXTS, seed=0)


def test_design_is_chosen_on_validation_combinations_disjoint_from_the_test_ones():
    """The validation twin holds out other combinations than the test split, arranged alike (one per colour)."""
    from lfd13.data.shapes import PRESETS as WORLDS
    from lfd13.experiments import clip_pretraining as exp

    for design, run in ((exp.DESIGN_SETTINGS, exp.SETTINGS), (exp.DESIGN_TINY, exp.TINY)):
        world = WORLDS[run.world]
        assert design.world == run.world and design.preset == run.preset
        assert not set(design.validation_held_out) & set(world.held_out)
        assert sorted(c for c, _ in design.validation_held_out) == sorted(c for c, _ in world.held_out)
    assert exp.DESIGN_SETTINGS.recipe == exp.SETTINGS.recipe and exp.DESIGN_SETTINGS.n_train == exp.SETTINGS.n_train
    assert exp.SCALING_SETTINGS.run == exp.SETTINGS
    assert max(exp.SCALING_SETTINGS.n_train) < exp.SETTINGS.n_train


def test_design_search_and_scaling_run_and_choose_from_their_grids(tmp_path):
    from lfd13.experiments import clip_pretraining as exp

    found = exp.write_design(exp.DESIGN_TINY, checkpoints=tmp_path, results=tmp_path, device="cpu", progress=False)
    assert found["chosen"]["pool"] in exp.DESIGN_TINY.pools
    assert len(found["validation"]) == len(exp.DESIGN_TINY.pools)
    assert exp.check_design(checkpoints=tmp_path, results=tmp_path) == found
    curve = exp.write_scaling(exp.SCALING_TINY, checkpoints=tmp_path, results=tmp_path, device="cpu", progress=False)
    assert set(curve["scaling"]) == {str(n) for n in exp.SCALING_TINY.n_train}
    assert all(0.0 <= a <= 1.0 for row in curve["scaling"].values() for a in row["held_out"] + row["seen"])
