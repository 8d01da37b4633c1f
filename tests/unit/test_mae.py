"""Tests for lfd13.mae (tiny configs on the CPU) and Chapter 3's MAE experiments."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from transformers import ViTMAEModel
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

from lfd13 import shipped
from lfd13.data import load_digits
from lfd13.experiments import mae_finetuning, mae_pretraining
from lfd13.experiments.mae_pretraining import plateau_exit_step
from lfd13.mae import MAEClassifier, MAEConfig, build_mae, mae_config, mae_step
from lfd13.runtime import UnknownPresetError
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


def test_masking_agrees_with_transformers_vitmae():
    """For the same noise, the model removes the patches that transformers' ViTMAE removes: the L - K largest."""
    m = build_mae("mae-nano", seed=0)
    reference = ViTMAEModel(m.config.to_hf())  # the library's encoder, built apart from ours, with the same weights
    reference.load_state_dict(m.hf.vit.state_dict())
    x = torch.rand(4, 1, 8, 8)
    noise = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    latent, mask, ids_restore = m.forward_encoder(x, noise=noise)
    lib = reference(pixel_values=x, noise=noise)
    assert torch.equal(mask, lib.mask) and torch.equal(ids_restore, lib.ids_restore)
    torch.testing.assert_close(latent, lib.last_hidden_state)
    # MAE's convention, written out: keep the K patches of smallest noise (mask 0), remove the others (mask 1)
    k = m.config.num_visible
    expected = torch.ones(4, 16).scatter(1, noise.topk(k, dim=1, largest=False).indices, 0.0)
    assert torch.equal(mask, expected)
    assert torch.equal(m.forward_all_patches(x, noise=noise).mask, mask)  # the baseline removes the same patches
    # the whole pass (decoder and loss on the removed patches) is ViTMAEForPreTraining's
    ours, full = m(x, noise=noise), m.hf(pixel_values=x, noise=noise)
    torch.testing.assert_close(ours.loss, full.loss)
    torch.testing.assert_close(ours.pred, full.logits)
    # a generator draws the same noise on every call with the same seed
    drawn = m(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(drawn.mask, mask)


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
    with pytest.raises(UnknownPresetError, match="mae-digits"):
        mae_config("mae-huge")


def test_plateau_exit_step():
    curve = [0.10, 0.045, 0.044, 0.041, 0.039, 0.02]
    assert plateau_exit_step(curve, 0.044) == 250  # first window below 0.9 · 0.044 = 0.0396
    assert plateau_exit_step(curve, 0.044, margin=0.5) == 300
    assert plateau_exit_step(curve[:4], 0.044) is None
    assert plateau_exit_step(curve, 0.044, window=10) == 50
    with pytest.raises(ValueError):
        plateau_exit_step(curve, 0.0)


def test_shipped_files_were_made_by_the_current_settings():
    """The shipped checkpoints and result file hold what the experiments' SETTINGS would recreate."""
    assert mae_pretraining.load().settings == mae_pretraining.SETTINGS
    sweep = mae_pretraining.load_sweep()
    assert {mae_pretraining.sweep_checkpoint(r): res.settings for r, res in sweep.items()} == mae_pretraining.SWEEP.runs()
    for ratio, res in sweep.items():
        assert res.model.config.mask_ratio == ratio
        assert len(res.training.loss_per_50_steps) == res.settings.recipe.steps // mae_pretraining.LOSS_WINDOW
    file = shipped.load_result(mae_finetuning.RESULT)
    settings = mae_finetuning.SETTINGS
    assert file.settings == json.loads(json.dumps(asdict(settings)))
    result = mae_finetuning.Result.from_dict(file.result)
    assert result.to_dict() == file.result  # nothing is lost between the file and the typed result
    for arm in mae_finetuning.Arm:
        assert sorted(result.grid[arm]) == sorted(settings.lrs(arm))  # every rate of the arm's grid was run
        for runs in result.grid[arm].values():
            assert sorted(runs) == list(settings.seeds)
            for run in runs.values():
                steps = [step for step, _ in run.history.evals["validation"]]
                assert steps[-1] == settings.recipe(arm, 1e-3).steps and run.best_step in steps
        lrs = sorted(settings.lrs(arm))
        assert lrs[0] < result.chosen_lr(arm) < lrs[-1], f"{arm}: the rate chosen on validation is at the grid's edge"
    assert sorted(result.sweep_probes) == sorted(settings.sweep_ratios)
    assert all(len(p.accuracies) == len(settings.seeds) for p in result.sweep_probes.values())


def test_finetuning_result_chooses_each_arm_rate_on_validation():
    """Result.chosen_lr reads validation accuracy only, averaged over the draws; ties go to the smaller rate."""
    from lfd13.evaluation import TrainTestResult
    from lfd13.train import History

    def run(val: float, test: float) -> TrainTestResult:
        return TrainTestResult(test, History(seconds=[1.0], evals={"validation": [(10, val / 2), (20, val)]}), 20)

    arm = mae_finetuning.Arm.SCRATCH
    grid = {arm: {1e-3: {0: run(0.8, 0.99), 1: run(0.8, 0.99)}, 2e-3: {0: run(0.9, 0.5), 1: run(0.8, 0.5)},
                  4e-3: {0: run(0.85, 0.7), 1: run(0.85, 0.7)}}}
    result = mae_finetuning.Result(grid, 1.0, {})
    assert result.validation(arm, 2e-3) == pytest.approx(0.85)
    assert result.chosen_lr(arm) == 2e-3  # tied with 4e-3 on validation; the test scores play no part
    assert result.accuracies(arm) == [0.5, 0.5]
    assert mae_finetuning.Result.from_dict(result.to_dict()) == result
