"""Tests for lfd13.pretext and its two experiments (pretext pre-training, transfer benefits): tiny configs on the CPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lfd13.data import load_digits
from lfd13.runtime import make_generator
from lfd13.pretext import (
    FAMILIES,
    LAYERS,
    MASK_FILL,
    ClusterPretext,
    ConvEncoder,
    MaskedPixelPretext,
    PretextConfig,
    RotationPretext,
    augment,
    block_mask,
    build_encoder,
    build_task,
    cluster_pseudo_labels,
    build_encoder_classifier,
    family_of,
    info_nce,
    layer_features,
    mask_pixels,
    pretext_config,
    probe_layers,
    rotate_batch,
    rotation_accuracy_per_class,
    train_pretext,
    train_task,
)

NANO = pretext_config("pretext-nano")


@pytest.fixture(scope="module")
def images():
    return load_digits().x_train[:96]


def test_encoder_shape_and_seed():
    x = torch.rand(5, 1, 8, 8)
    a, b = build_encoder(NANO, seed=0), build_encoder(NANO, seed=0)
    assert a(x).shape == (5, NANO.feature_dim)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.equal(a.proj.weight, build_encoder(NANO, seed=1).proj.weight)
    with pytest.raises(ValueError, match="8×8"):
        a(torch.rand(2, 1, 16, 16))


def test_rotate_batch_labels_and_inverse():
    x = torch.rand(3, 1, 8, 8)
    r, y = rotate_batch(x)
    assert r.shape == (12, 1, 8, 8) and y.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for k in range(4):
        torch.testing.assert_close(torch.rot90(r[3 * k : 3 * k + 3], -k, dims=(-2, -1)), x)


def test_block_mask_blocks_and_ratio():
    m = block_mask(200, 8, 0.3, generator=make_generator(0))
    assert m.shape == (200, 1, 8, 8) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m[..., ::2, ::2], m[..., 1::2, 1::2])  # constant on 2×2 blocks
    assert abs(m.mean().item() - 0.3) < 0.03
    assert torch.equal(m, block_mask(200, 8, 0.3, generator=make_generator(0)))


def test_masked_loss_is_the_error_on_hidden_pixels_only():
    task = MaskedPixelPretext(build_encoder(NANO, seed=0))
    x = torch.rand(4, 1, 8, 8, generator=make_generator(2))
    loss = task.step((x,), generator=make_generator(1))
    hidden = block_mask(4, 8, NANO.mask_ratio, generator=make_generator(1))  # the same draw
    assert 0 < hidden.mean() < 1
    pred = task.decoder(task.encoder(mask_pixels(x, hidden))).view_as(x)
    torch.testing.assert_close(loss, ((pred - x) ** 2 * hidden).sum() / hidden.sum())
    assert not torch.allclose(loss, ((pred - x) ** 2).mean())  # the visible pixels do not count


def test_info_nce_matches_cross_entropy_definition():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    tau = 0.5
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.T / tau
    expected = 0.0
    for i in range(8):
        j = (i + 4) % 8
        others = torch.cat([sim[i, :i], sim[i, i + 1 :]])
        expected += -(sim[i, j] - torch.logsumexp(others, 0))
    torch.testing.assert_close(info_nce(z1, z2, tau), expected / 8)
    # identical, well-separated views: the loss approaches its minimum
    e = torch.eye(4, 8) * 10
    assert info_nce(e, e, 0.05) < 1e-3
    # uninformative embeddings: log(2B - 1)
    assert info_nce(torch.ones(4, 8), torch.ones(4, 8), 0.1).item() == pytest.approx(math.log(7), rel=1e-5)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        info_nce(torch.randn(4, 8), torch.randn(3, 8), 0.1)


def test_augment_changes_images_within_range():
    x = torch.rand(6, 1, 8, 8, generator=make_generator(0))
    v = augment(x, generator=make_generator(1))
    assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1
    assert not torch.allclose(v, x)
    assert torch.equal(v, augment(x, generator=make_generator(1)))


def test_cluster_pseudo_labels_deterministic():
    f = torch.cat([torch.randn(20, 4) + 5, torch.randn(20, 4) - 5])
    a = cluster_pseudo_labels(f, 2, seed=0)
    assert torch.equal(a, cluster_pseudo_labels(f, 2, seed=0))
    assert len(set(a[:20].tolist())) == 1 and a[0] != a[-1]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains(images, family):
    enc, hist = train_pretext(family, images, config=NANO, seed=0, device="cpu", progress=False)
    assert isinstance(enc, ConvEncoder) and not enc.training
    assert len(hist) == NANO.steps and all(math.isfinite(v) for v in hist["loss"])
    assert enc(images[:3]).shape == (3, NANO.feature_dim)


def test_train_pretext_is_deterministic_and_leaves_the_global_generator_alone(images):
    state = torch.get_rng_state()
    a, _ = train_pretext("contrastive", images, config=NANO, seed=3, device="cpu", progress=False)
    torch.manual_seed(99)  # the global generator's state does not matter
    b, _ = train_pretext("contrastive", images, config=NANO, seed=3, device="cpu", progress=False)
    torch.testing.assert_close(a(images[:4]), b(images[:4]))
    torch.set_rng_state(state)
    train_pretext("masked", images, config=NANO, seed=3, device="cpu", progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_deepcluster_history_spans_every_round(images):
    cfg = pretext_config("pretext-nano", steps=8, rounds=4)
    _, hist = train_pretext("clustering", images, config=cfg, seed=0, device="cpu", progress=False)
    assert hist.step == list(range(1, 9))
    assert all(b > a for a, b in zip(hist.seconds, hist.seconds[1:]))  # no restart at a new round


def test_rotation_learns(images):
    cfg = pretext_config("pretext-nano", steps=100, lr=5e-3)
    _, hist = train_pretext("rotation", images, config=cfg, seed=0, device="cpu", progress=False)
    assert hist.last("acc", 10) > 0.5  # chance is 0.25


def test_heads_and_errors():
    enc = ConvEncoder(NANO)
    assert RotationPretext(enc).head.out_features == 4
    assert ClusterPretext(enc).head.out_features == NANO.clusters
    with pytest.raises(KeyError, match="rotation"):
        train_pretext("jigsaw", torch.rand(4, 1, 8, 8), config=NANO)
    with pytest.raises(ValueError, match="multiple of 4"):
        PretextConfig(image_size=10)
    with pytest.raises(ValueError, match="mask_ratio"):
        PretextConfig(mask_ratio=1.0)


def test_random_rotation_labels_match():
    from lfd13.pretext import random_rotation

    x = torch.rand(16, 1, 8, 8, generator=make_generator(0))
    r, k = random_rotation(x, generator=make_generator(1))
    assert r.shape == x.shape and k.shape == (16,) and set(k.tolist()) <= {0, 1, 2, 3}
    for i in range(16):
        torch.testing.assert_close(r[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))


def test_masked_input_marks_hidden_pixels_outside_the_data_range():
    x = torch.zeros(2, 1, 8, 8)  # blank paper: the digits' background value
    hidden = block_mask(2, 8, 0.5, generator=make_generator(0))
    masked = mask_pixels(x, hidden)
    assert not 0.0 <= MASK_FILL <= 1.0
    assert torch.equal(masked == MASK_FILL, hidden.bool())  # a hidden block differs from background
    torch.testing.assert_close(masked[hidden == 0], x[hidden == 0])


def test_layer_features_shapes_and_conv_is_the_input_of_the_last_layer():
    enc = build_encoder(NANO, seed=0)
    x = torch.rand(5, 1, 8, 8, generator=make_generator(0))
    conv, last = (layer_features(enc, x, layer, device="cpu") for layer in LAYERS)
    assert conv.shape == (5, 2 * NANO.channels * 2 * 2) and last.shape == (5, NANO.feature_dim)
    torch.testing.assert_close(last, F.relu(enc.proj(conv)))
    with pytest.raises(ValueError, match="layer"):
        enc.features(x, "pixels")


def test_layer_features_in_double_precision_leave_the_encoder_as_it_is():
    enc = build_encoder(NANO, seed=0)
    x = torch.rand(5, 1, 8, 8, generator=make_generator(0))
    for layer in LAYERS:
        f32 = layer_features(enc, x, layer, device="cpu")
        f64 = layer_features(enc, x, layer, device="cpu", dtype=torch.float64)
        assert f64.dtype == torch.float64 and f32.dtype == torch.float32
        torch.testing.assert_close(f64.float(), f32, rtol=1e-5, atol=1e-6)
    assert all(p.dtype == torch.float32 for p in enc.parameters())  # the caller's encoder is untouched
    with pytest.raises(ValueError, match="float64"):
        layer_features(enc, x, device="cpu", dtype=torch.bfloat16)


def test_probe_layers_scores_both_layers_on_the_given_split(images):
    y = load_digits().y_train[: len(images)]
    from lfd13.sampling import split_indices

    tr, ev = split_indices(y, 2, 2, seed=0)
    acc = probe_layers(build_encoder(NANO, seed=0), images, y, tr, ev, device="cpu")
    assert set(acc) == set(LAYERS) and all(0.0 <= v <= 1.0 for v in acc.values())


def test_rotation_accuracy_per_class():
    task = build_task("rotation", NANO, seed=0)
    x = torch.rand(12, 1, 8, 8, generator=make_generator(0))
    y = torch.tensor([0, 1, 2] * 4)
    acc = rotation_accuracy_per_class(task, x, y, num_classes=3, device="cpu")
    assert acc.shape == (3,) and ((acc >= 0) & (acc <= 1)).all()
    rotated, k = rotate_batch(x)
    pred = task.head(task.encoder(rotated)).argmax(-1)
    torch.testing.assert_close(acc.mean(), (pred == k).float().mean())  # equal class sizes


def test_train_task_callbacks_get_global_steps_in_every_family(images):
    cfg = pretext_config("pretext-nano", steps=4, rounds=2)
    for family in FAMILIES:
        seen = []
        task = build_task(family, cfg, seed=0)
        assert family_of(task) == family
        train_task(task, images, seed=0, device="cpu", progress=False, callbacks=(lambda i, v: seen.append(i),))
        assert seen == [1, 2, 3, 4], family


def test_encoder_classifier_copies_the_encoder():
    enc = build_encoder(NANO, seed=0)
    clf = build_encoder_classifier(enc, seed=1)
    x = torch.rand(3, 1, 8, 8)
    assert clf(x).shape == (3, 10)
    torch.testing.assert_close(clf.encoder(x), enc(x))
    assert clf.encoder is not enc  # fine-tuning leaves the original encoder as it was


def test_best_by_validation_reads_the_last_validation_probe() -> None:
    from lfd13.experiments.pretext_pretraining import Result, ValidationProbe

    def probe(conv: list[float], last: list[float]) -> ValidationProbe:
        return ValidationProbe(steps=(0, 10), accuracy={"conv": tuple(conv), "last": tuple(last)}, seconds=0.0)

    result = Result(probes={
        "a": (probe([0.1, 0.9], [0.1, 0.5]), probe([0.1, 0.7], [0.1, 0.5])),  # conv: 0.8 on average at the end
        "b": (probe([0.9, 0.6], [0.2, 0.85]), probe([0.9, 0.6], [0.2, 0.85])),  # last: 0.85, but conv falls to 0.6
    })
    assert result.best_by_validation() == ("b", "last")


def test_the_shipped_runs_cover_their_settings() -> None:
    from lfd13.experiments import pretext_benefits, pretext_pretraining

    pre = pretext_pretraining.load()
    assert set(pre.probes) == set(pretext_pretraining.SETTINGS.families)
    assert all(len(ps) == len(pretext_pretraining.SETTINGS.seeds) and all(p.steps == pretext_pretraining.SETTINGS.probe_steps
                                                                           for p in ps) for ps in pre.probes.values())
    settings, result = pretext_benefits.SETTINGS, pretext_benefits.load()
    assert result.family == pre.best_by_validation()[0]  # the family fine-tuned is the one chosen on validation
    assert sorted(result.scratch) == list(settings.budgets)
    assert all(len(accs) == len(settings.probe_runs) and all(0 < a <= 1 for a in accs) for accs in result.scratch.values())
    for start in pretext_benefits.STARTS:
        runs = result.finetune[start]
        assert len(runs) == len(settings.pretraining.seeds)
        for r in runs:
            steps = [s for s, _ in r.history.evals["validation"]]
            assert steps == list(range(settings.eval_every, settings.recipe.steps + 1, settings.eval_every))
            assert r.best_step in steps and 0 < r.accuracy <= 1
    # every arm trains at the rate it chose on validation, and that rate is inside its grid, not at an edge
    arms = [pretext_benefits.scratch_arm(n) for n in settings.budgets] + list(pretext_benefits.STARTS)
    assert sorted(result.learning_rates) == sorted(arms)
    for arm in arms:
        assert sorted(result.lr_search[arm]) == sorted(settings.lr_grid)
        chosen = result.learning_rates[arm]
        assert chosen == pretext_benefits.best_learning_rate(result.lr_search[arm])
        assert min(settings.lr_grid) < chosen < max(settings.lr_grid), f"{arm}: {chosen} is at an edge of the grid"


def test_the_best_learning_rate_breaks_ties_towards_the_smaller_rate() -> None:
    from lfd13.experiments.pretext_benefits import best_learning_rate, scratch_arm

    assert best_learning_rate({1e-3: 0.8, 3e-3: 0.9, 1e-2: 0.9}) == 3e-3
    assert scratch_arm(1) == "scratch, 1 label" and scratch_arm(10) == "scratch, 10 labels"
    with pytest.raises(ValueError, match="empty"):
        best_learning_rate({})


def test_an_unknown_preset_lists_the_known_ones() -> None:
    from lfd13.runtime import UnknownPresetError

    with pytest.raises(UnknownPresetError, match="pretext-digits"):
        pretext_config("pretext-huge")


def test_the_label_bottleneck_chapter_trains_the_package_cnn() -> None:
    """Chapter 1's curve and the transfer comparisons train one network: lfd13.cnn.build_digits_cnn."""
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[2] / "book" / "01_label_bottleneck.ipynb").read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "build_digits_cnn(" in code and "nn.Conv2d" not in code
