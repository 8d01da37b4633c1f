"""Tests for lfd13.mae: tiny configs on the CPU."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

import lfd13.mae as mae_mod
from lfd13.data import load_digits
from lfd13.mae import (
    MAEClassifier,
    MAEConfig,
    build_mae,
    load_checkpoint,
    mae_config,
    mae_step,
    plateau_exit_step,
    save_checkpoint,
)
from lfd13.train import fit


@pytest.fixture(scope="module")
def digits8():
    return load_digits(size=8)


def test_position_embeddings_are_sincos_not_zero():
    m = build_mae("mae-nano")
    enc = m.embeddings.position_embeddings
    dec = m.hf.decoder.decoder_pos_embed
    assert enc.abs().sum() > 0 and dec.abs().sum() > 0, "sin-cos position embeddings were left at zero"
    assert not enc.requires_grad and not dec.requires_grad  # fixed, as in MAE
    grid = 8 // 2
    ref = build_2d_sinusoidal_position_embedding(height=grid, width=grid, embed_dim=enc.shape[-1], cls_token=True)
    half = ref.shape[-1] // 2
    ref = torch.cat([ref[..., half:], ref[..., :half]], dim=-1)  # the library's layout for pretrained weights
    torch.testing.assert_close(enc[0], ref)
    # distinct patches get distinct position vectors
    assert torch.cdist(enc[0, 1:], enc[0, 1:]).add(torch.eye(grid * grid)).min() > 0


def test_patchify_roundtrip_and_shapes():
    m = build_mae("mae-nano")
    x = torch.rand(3, 1, 8, 8)
    p = m.patchify(x)
    assert p.shape == (3, 16, 4)
    torch.testing.assert_close(p[0, 1], x[0, 0, 0:2, 2:4].reshape(-1))  # row-major patches
    torch.testing.assert_close(m.unpatchify(p), x)


def test_encoder_sees_only_visible_patches():
    cfg = mae_config("mae-nano")
    m = build_mae(cfg)
    x = torch.rand(5, 1, 8, 8)
    latent, mask, ids_restore = m.forward_encoder(x, generator=torch.Generator().manual_seed(0))
    k = cfg.num_visible
    assert k == 4
    assert latent.shape == (5, 1 + k, cfg.width)
    assert mask.shape == (5, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(mask.sum(1) == 16 - k)  # exactly L - K removed per image
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(16).expand(5, -1))  # a permutation
    pred = m.forward_decoder(latent, ids_restore)
    assert pred.shape == (5, 16, 4)


def test_masking_is_transformers_random_masking():
    """Our forward pass is ViTMAEForPreTraining's, masking included, for the same noise."""
    m = build_mae("mae-nano")
    x = torch.rand(4, 1, 8, 8)
    noise = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    seq = torch.randn(4, 16, 16)
    _, mask_lib, restore_lib = m.embeddings.random_masking(seq, noise)
    _, mask, restore = m.forward_encoder(x, noise=noise)
    assert torch.equal(mask, mask_lib) and torch.equal(restore, restore_lib)
    # kept = the patches with the smallest noise
    kept = noise.argsort(dim=1)[:, : m.config.num_visible]
    assert torch.all(mask.gather(1, kept) == 0)
    ours = m(x, noise=noise)
    lib = m.hf(pixel_values=x, noise=noise)
    torch.testing.assert_close(ours.loss, lib.loss)
    torch.testing.assert_close(ours.pred, lib.logits)


def test_loss_counts_removed_patches_only():
    m = build_mae("mae-nano")
    x = torch.rand(2, 1, 8, 8)
    out = m(x, generator=torch.Generator().manual_seed(0))
    target = m.patchify(x)
    perfect_on_removed = torch.where(out.mask.bool().unsqueeze(-1), target, torch.full_like(target, 9.0))
    assert m.forward_loss(x, perfect_on_removed, out.mask).item() == pytest.approx(0.0, abs=1e-7)


def test_all_patches_baseline_same_mask_longer_sequence():
    m = build_mae("mae-nano")
    x = torch.rand(3, 1, 8, 8)
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(2))
    a = m(x, noise=noise)
    b = m.forward_all_patches(x, noise=noise)
    assert torch.equal(a.mask, b.mask)
    assert b.pred.shape == a.pred.shape and torch.isfinite(b.loss)
    b.loss.backward()
    assert m.encoder_mask_embedding.grad is not None and m.encoder_mask_embedding.grad.abs().sum() > 0


def test_encode_and_classifier_shapes():
    m = build_mae("mae-nano")
    x = torch.rand(6, 1, 8, 8)
    assert m.encode(x).shape == (6, 16)
    assert m.encode(x, pool="cls").shape == (6, 16)
    assert m.encode(x, pool="tokens").shape == (6, 16 * 16)
    torch.testing.assert_close(m.encode(x, pool="tokens").view(6, 16, 16).mean(1), m.encode(x))
    with pytest.raises(ValueError, match="pool"):
        m.encode(x, pool="max")
    assert MAEClassifier(m, 10)(x).shape == (6, 10)


def test_seed_determinism():
    a, b = build_mae("mae-nano", seed=3), build_mae("mae-nano", seed=3)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    c = build_mae("mae-nano", seed=4)
    assert not torch.equal(a.hf.decoder.decoder_pred.weight, c.hf.decoder.decoder_pred.weight)


def test_training_lowers_loss(digits8):
    m = build_mae("mae-nano")
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    h = fit(m, (digits8.x_train,), mae_step, optimizer=opt, steps=30, batch_size=32, seed=0, device="cpu", progress=False)
    assert h.last("loss", 10) < 0.7 * h["loss"][0]


def test_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        MAEConfig(image_size=9, patch_size=2)
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEConfig(mask_ratio=1.0)
    with pytest.raises(KeyError, match="mae-digits"):
        mae_config("mae-huge")


def test_checkpoint_roundtrip_and_hash_check(tmp_path):
    m = build_mae("mae-nano", seed=5)
    info = save_checkpoint(m, "tiny", recipe={"steps": 0}, result={"final_loss": 1.0}, directory=tmp_path)
    loaded, info2 = load_checkpoint("tiny", directory=tmp_path)
    assert info2 == info and loaded.config == m.config
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loaded.encode(x), m.eval().encode(x))
    weights = tmp_path / "tiny.safetensors"
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(weights)


def test_shipped_checkpoints_load_and_match_the_recipe():
    from lfd13.pretrain import SWEEP_RATIOS, SWEEP_STEPS, MAEPretraining

    main = MAEPretraining()
    for name, ratio, steps in [("mae_digits", main.mask_ratio, main.recipe.steps)] + [
        (f"mae_digits_ratio{round(100 * r):02d}", r, SWEEP_STEPS) for r in SWEEP_RATIOS
    ]:
        model, info = load_checkpoint(name)
        assert model.embeddings.position_embeddings.abs().sum() > 0
        run = dataclasses.replace(main, mask_ratio=ratio, recipe=dataclasses.replace(main.recipe, steps=steps))
        assert info.recipe == json.loads(json.dumps(dataclasses.asdict(run))), f"{name} was not made by the current recipe"
        assert info.command.startswith("python -m lfd13.pretrain mae")
        assert model.config.mask_ratio == ratio


def test_missing_checkpoint_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m lfd13.pretrain mae"):
        load_checkpoint(tmp_path / "nothing.json")


def test_no_masking_implementation_of_our_own():
    """The graded assignment's functions must not live in lfd13."""
    src = inspect.getsource(mae_mod)
    for name in ("def random_masking", "def mask_tokens", "argsort"):
        assert name not in src


def test_plateau_exit_step():
    curve = [0.10, 0.045, 0.044, 0.041, 0.039, 0.02]
    assert plateau_exit_step(curve, 0.044) == 250  # first window below 0.9 · 0.044 = 0.0396
    assert plateau_exit_step(curve, 0.044, margin=0.5) == 300
    assert plateau_exit_step(curve[:4], 0.044) is None
    assert plateau_exit_step(curve, 0.044, window=10) == 50
    with pytest.raises(ValueError):
        plateau_exit_step(curve, 0.0)


def test_finetune_arm_rejects_an_unknown_arm():
    with pytest.raises(ValueError, match="unknown arm"):
        mae_mod.finetune_arm("transformer, from BERT", 0)


def test_the_fine_tuning_comparison_is_recorded_for_every_arm_and_draw():
    _, info = load_checkpoint("mae_digits")
    record = info.result["finetune_comparison"]
    assert record["command"] == mae_mod.RECORD
    assert record["transformer_recipe"] == json.loads(json.dumps(dataclasses.asdict(mae_mod.FT_RECIPE)))
    for arm in mae_mod.FT_ARMS:
        runs = record["runs"][arm]
        assert sorted(runs) == [str(s) for s in mae_mod.FT_SEEDS]
        for run in runs.values():
            steps = [step for step, _ in run["validation"]]
            assert steps[-1] == mae_mod.FT_STEPS and run["best_step"] in steps
    for ratio in (25, 50, 75, 90):
        _, info = load_checkpoint(f"mae_digits_ratio{ratio}")
        probe = info.result["cls_probe"]
        assert probe["command"] == mae_mod.RECORD and len(probe["accuracies"]) == len(probe["seeds"]) == len(mae_mod.FT_SEEDS)
