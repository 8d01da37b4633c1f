"""Tests for lfd13.peft_tools (and the learning-rate choice of its experiment) on a tiny BERT classifier (CPU, seconds)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from peft import LoraConfig, PeftModel
from transformers import BertConfig, BertForSequenceClassification

from lfd13 import shipped
from lfd13.experiments import peft_comparison as exp
from lfd13.experiments.peft_comparison import MethodResult, best_learning_rate, fit_and_score, shuffled_labels, validation_sweep
from lfd13.finetune import EncodedTexts, predict_logits
from lfd13.memory import optimizer_state_bytes, training_memory
from lfd13.peft_tools import (
    LORA_ALPHA,
    PoolerAfterPrompt,
    PositionsAfterPrompt,
    apply_peft,
    energy_in_top_k,
    freeze_all_but_head,
    lora_config,
    lora_delta_weights,
    merge_check,
    prompt_tuning_config,
    trainable_parameters,
    update_energy,
    weight_updates,
)
from lfd13.train import Recipe

D, LAYERS, C, VOCAB, L, B = 32, 2, 3, 100, 10, 6
TINY = Recipe(steps=3, lr=1e-3, batch_size=4, weight_decay=0.01, warmup=1, max_grad_norm=1.0)


def tiny_classifier(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=C,
    )
    return BertForSequenceClassification(config).eval()


def tiny_data(n: int = B, seed: int = 0) -> EncodedTexts:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, L), generator=g)
    ids[:, 0] = 2  # a [CLS]-like first token
    mask = torch.ones(n, L, dtype=torch.long)
    mask[0, 7:] = 0  # one padded row
    return EncodedTexts(ids, mask, torch.randint(0, C, (n,), generator=g))


def head_size() -> int:
    return D * C + C


def test_lora_counts_match_the_formula_and_peft() -> None:
    r = 4
    model = apply_peft(tiny_classifier(), lora_config(r))
    trainable, total = model.get_nb_trainable_parameters()
    per_matrix = r * D + D * r  # A [r, D] and B [D, r]
    assert trainable == LAYERS * 2 * per_matrix + head_size()  # query and value in every layer
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == sum(p.numel() for p in model.parameters())


def test_lora_starts_at_the_pretrained_model() -> None:
    base = tiny_classifier()
    data = tiny_data()
    reference = base.base_model(input_ids=data.input_ids, attention_mask=data.attention_mask).pooler_output
    model = apply_peft(copy.deepcopy(base), lora_config(4))
    for name, module in model.named_modules():
        if hasattr(module, "lora_B"):
            assert torch.all(module.lora_B["default"].weight == 0), name  # B = 0: BA = 0
            assert module.scaling["default"] == pytest.approx(16 / 4)  # alpha / r with alpha fixed at 16
    pooled = model.base_model.model.bert(input_ids=data.input_ids, attention_mask=data.attention_mask).pooler_output
    torch.testing.assert_close(pooled, reference)


def test_lora_config_alpha_and_targets() -> None:
    cfg = lora_config(2, alpha=5.0, target_modules=["query"])
    assert cfg.r == 2 and cfg.lora_alpha == 5.0 and set(cfg.target_modules) == {"query"}
    with pytest.raises(ValueError, match="rank"):
        lora_config(0)
    with pytest.raises(ValueError, match="alpha"):
        lora_config(2, alpha=0.0)


@pytest.mark.parametrize("r", [1, 4, 16])
def test_lora_alpha_stays_fixed_so_the_scale_falls_with_rank(r: int) -> None:
    model = apply_peft(tiny_classifier(), lora_config(r))
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
    assert layer.scaling["default"] == pytest.approx(LORA_ALPHA / r)
    rs = apply_peft(tiny_classifier(), lora_config(r, use_rslora=True))
    layer = rs.base_model.model.bert.encoder.layer[0].attention.self.query
    assert layer.scaling["default"] == pytest.approx(LORA_ALPHA / r**0.5)  # rsLoRA


def test_lora_init_is_deterministic_for_a_seed() -> None:
    def a_weights(seed: int) -> torch.Tensor:
        model = apply_peft(tiny_classifier(), lora_config(2), seed=seed)
        return torch.cat([d.flatten() for d in (m.lora_A["default"].weight for m in model.modules() if hasattr(m, "lora_A"))])

    state = torch.random.get_rng_state()
    torch.testing.assert_close(a_weights(1), a_weights(1))
    assert not torch.allclose(a_weights(1), a_weights(2))
    torch.manual_seed(0)
    torch.testing.assert_close(a_weights(1), a_weights(1))
    torch.random.set_rng_state(state)


def _pooled_logits_by_hand(peft_model: PeftModel, data: EncodedTexts, position: int) -> torch.Tensor:
    """Logits computed from the hidden state at ``position`` of the prompted sequence."""
    clf = peft_model.base_model  # BertForSequenceClassification
    bert = clf.bert
    pooler = bert.pooler.pooler if isinstance(bert.pooler, PoolerAfterPrompt) else bert.pooler
    n = peft_model.active_peft_config.num_virtual_tokens
    embeds = torch.cat([peft_model.get_prompt(batch_size=len(data.labels)), bert.embeddings.word_embeddings(data.input_ids)], 1)
    mask = torch.cat([torch.ones(len(data.labels), n, dtype=torch.long), data.attention_mask], 1)
    hidden = bert(inputs_embeds=embeds, attention_mask=mask).last_hidden_state  # (B, n + L, D)
    return clf.classifier(pooler.dense(hidden[:, position]).tanh())


@torch.no_grad()
def test_prompt_tuning_pooler_reads_cls_not_a_virtual_token() -> None:
    n = 5
    data = tiny_data()
    fixed = apply_peft(tiny_classifier(), prompt_tuning_config(n)).eval()
    assert isinstance(fixed.base_model.bert.pooler, PoolerAfterPrompt)
    logits = fixed(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
    torch.testing.assert_close(logits, _pooled_logits_by_hand(fixed, data, position=n))  # [CLS] sits at n
    unfixed = apply_peft(tiny_classifier(), prompt_tuning_config(n), fix_pooling=False).eval()
    logits0 = unfixed(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
    torch.testing.assert_close(logits0, _pooled_logits_by_hand(unfixed, data, position=0))  # peft's default: P_1
    assert not torch.allclose(logits0, _pooled_logits_by_hand(unfixed, data, position=n))


def _positions_seen(model: PeftModel, data: EncodedTexts) -> torch.Tensor:
    """The position ids the embedding table is indexed with when ``model`` reads ``data``."""
    seen: list[torch.Tensor] = []
    bert = model.base_model.bert
    inner = bert.embeddings.embeddings if isinstance(bert.embeddings, PositionsAfterPrompt) else bert.embeddings
    handle = inner.position_embeddings.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    try:
        model(input_ids=data.input_ids, attention_mask=data.attention_mask)
    finally:
        handle.remove()
    return seen[0][0]


@torch.no_grad()
def test_prompt_tuning_keeps_the_text_at_its_pretraining_positions() -> None:
    n, data = 5, tiny_data()
    size = tiny_classifier().config.max_position_embeddings
    kept = apply_peft(tiny_classifier(), prompt_tuning_config(n)).eval()
    assert isinstance(kept.base_model.bert.embeddings, PositionsAfterPrompt)
    positions = _positions_seen(kept, data)
    assert positions[n:].tolist() == list(range(L))  # [CLS] at 0, token i at i, as in pre-training
    assert positions[:n].tolist() == list(range(size - n, size))  # the prompts: the last rows of the table
    shifted = apply_peft(tiny_classifier(), prompt_tuning_config(n), text_positions=False).eval()
    assert _positions_seen(shifted, data).tolist() == list(range(n + L))  # peft's numbering: token i at i + n
    # the text's embeddings are the ones the plain encoder gives it
    plain = tiny_classifier().bert.embeddings(input_ids=data.input_ids)
    words = kept.base_model.bert.embeddings.word_embeddings(data.input_ids)
    embeds = torch.cat([kept.get_prompt(batch_size=len(data.labels)), words], 1)
    torch.testing.assert_close(kept.base_model.bert.embeddings(inputs_embeds=embeds)[:, n:], plain)


def test_positions_after_prompt_rejects_bad_offsets() -> None:
    embeddings = tiny_classifier().bert.embeddings
    with pytest.raises(ValueError, match=">= 1"):
        PositionsAfterPrompt(embeddings, 0)
    with pytest.raises(ValueError, match="no position"):
        PositionsAfterPrompt(embeddings, 64)
    with pytest.raises(TypeError, match="position_embeddings"):
        PositionsAfterPrompt(torch.nn.Linear(2, 2), 2)
    with pytest.raises(ValueError, match="virtual tokens"):
        PositionsAfterPrompt(embeddings, 4).positions(3)


def test_shipped_learning_rates_are_inside_their_grids() -> None:
    """Every method's validation choice is an interior rate of its grid, so the grid brackets it."""
    result = exp.load()
    assert set(result.lr_search) == set(exp.SETTINGS.grids)
    for method, scores in result.lr_search.items():
        chosen = best_learning_rate(scores)
        assert min(scores) < chosen < max(scores), f"{method}: {chosen:g} is an edge of {sorted(scores)}"


def test_prompt_tuning_trains_only_the_prompt_and_head() -> None:
    n = 7
    model = apply_peft(tiny_classifier(), prompt_tuning_config(n))
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == n * D + head_size()
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert all("prompt_encoder" in name or "classifier" in name for name in names), names


def test_apply_peft_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="SEQ_CLS"):
        apply_peft(tiny_classifier(), LoraConfig(r=2, target_modules=["query"]))
    with pytest.raises(TypeError, match="peft config"):
        apply_peft(tiny_classifier(), {"r": 2})  # type: ignore[arg-type]
    model = apply_peft(tiny_classifier(), lora_config(2))
    with pytest.raises(TypeError, match="already a PeftModel"):
        apply_peft(model, lora_config(2))
    with pytest.raises(TypeError, match="pooler"):
        apply_peft(torch.nn.Linear(3, 3), prompt_tuning_config(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        prompt_tuning_config(0)


def test_training_memory_is_adam_state_and_leaves_weights_alone() -> None:
    data = tiny_data()
    model = apply_peft(tiny_classifier(), lora_config(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mem = training_memory(model, tuple(data))
    trainable_bytes = 4 * model.get_nb_trainable_parameters()[0]
    assert mem.trainable == trainable_bytes
    assert mem.gradients == trainable_bytes
    assert mem.optimizer_state >= 2 * trainable_bytes  # exp_avg and exp_avg_sq (+ tiny step counters)
    assert mem.optimizer_state < 2 * trainable_bytes + 1024
    assert mem.training_extra == mem.gradients + mem.optimizer_state
    assert mem.weights == 4 * sum(p.numel() for p in model.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert all(p.grad is None for p in model.parameters())
    full = tiny_classifier()
    assert training_memory(full, tuple(data)).optimizer_state > 10 * mem.optimizer_state


def test_optimizer_state_bytes_counts_adam_moments() -> None:
    p = torch.nn.Parameter(torch.zeros(10, 3))
    opt = torch.optim.AdamW([p], lr=0.1)
    assert optimizer_state_bytes(opt) == 0
    p.grad = torch.ones_like(p)
    opt.step()
    assert 2 * 30 * 4 <= optimizer_state_bytes(opt) <= 2 * 30 * 4 + 16


def _trained_lora(seed: int = 0) -> PeftModel:
    model = apply_peft(tiny_classifier(), lora_config(2)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "lora_B"):
                m.lora_B["default"].weight.copy_(torch.randn(m.lora_B["default"].weight.shape, generator=g))
    return model


def test_merge_check_reproduces_outputs_and_keeps_the_adapter() -> None:
    model = _trained_lora()
    data = tiny_data()
    base_logits = predict_logits(tiny_classifier(), data, device="cpu")
    check = merge_check(model, data, device="cpu")
    assert check.max_abs_diff < 1e-4
    assert check.lora_layers_left == 0
    assert isinstance(check.merged, BertForSequenceClassification)
    assert any(hasattr(m, "lora_A") for m in model.modules())  # the adapted model is untouched
    assert (predict_logits(check.merged, data, device="cpu") - base_logits).abs().max() > 1e-3  # the update is in W
    with pytest.raises(TypeError, match="LoRA"):
        merge_check(apply_peft(tiny_classifier(), prompt_tuning_config(2)), data)


def test_lora_delta_weights_match_b_a_and_have_rank_r() -> None:
    model = _trained_lora()
    deltas = lora_delta_weights(model)
    assert len(deltas) == LAYERS * 2
    name = "bert.encoder.layer.0.attention.self.query"
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
    expected = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(deltas[name], expected.detach())
    assert int(torch.linalg.matrix_rank(deltas[name])) == 2
    assert energy_in_top_k(deltas[name], 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no LoRA layer"):
        lora_delta_weights(apply_peft(tiny_classifier(), prompt_tuning_config(2)))


def test_weight_updates_and_energy() -> None:
    before, after = tiny_classifier(), tiny_classifier()
    with torch.no_grad():
        q = after.bert.encoder.layer[1].attention.self.query.weight
        q += torch.outer(torch.ones(D), torch.arange(D, dtype=torch.float))  # a rank-1 update
    updates = weight_updates(before, after, suffix="query.weight")
    assert set(updates) == {f"bert.encoder.layer.{i}.attention.self.query.weight" for i in range(LAYERS)}
    assert energy_in_top_k(updates["bert.encoder.layer.1.attention.self.query.weight"], 1) == pytest.approx(1.0)
    assert energy_in_top_k(torch.eye(8), 2) == pytest.approx(2 / 8)
    with pytest.raises(ValueError, match="all zeros"):
        energy_in_top_k(updates["bert.encoder.layer.0.attention.self.query.weight"], 1)
    with pytest.raises(ValueError, match="matrix"):
        energy_in_top_k(torch.ones(3), 1)
    with pytest.raises(ValueError, match="no 2-D parameter"):
        weight_updates(before, after, suffix="nothing")


def test_freeze_all_but_head_trains_what_prompt_tuning_trains_besides_the_prompt() -> None:
    n = 3
    head = freeze_all_but_head(tiny_classifier())
    names = {name for name, p in head.named_parameters() if p.requires_grad}
    assert names == {"classifier.weight", "classifier.bias"}
    prompt = apply_peft(tiny_classifier(), prompt_tuning_config(n))
    assert prompt.get_nb_trainable_parameters()[0] == n * D + trainable_parameters(head)
    with pytest.raises(TypeError, match="head"):
        freeze_all_but_head(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_best_learning_rate_takes_the_top_score_and_the_smaller_rate_on_ties() -> None:
    assert best_learning_rate({1e-3: 0.8, 1e-2: 0.9, 1e-1: 0.7}) == 1e-2  # the top is in the middle
    assert best_learning_rate({1e-1: 0.7, 1e-2: 0.7, 1e-3: 0.9}) == 1e-3  # not the first or the last key
    assert best_learning_rate({3e-4: 0.905, 1e-4: 0.905, 1e-3: 0.29}) == 1e-4  # a tie: the smaller rate...
    assert best_learning_rate({1e-4: 0.8, 3e-4: 0.9, 1e-3: 0.9}) == 3e-4  # ...whatever the order of the keys
    assert best_learning_rate({0.3: 0.5}) == 0.3
    with pytest.raises(ValueError, match="empty"):
        best_learning_rate({})


def test_chosen_recipe_is_the_budget_at_the_selected_rate() -> None:
    recipe = exp.chosen_recipe({2e-3: 0.75, 5e-3: 0.905, 1e-2: 0.89}, exp.SETTINGS)
    assert recipe == replace(exp.SETTINGS.budget, lr=5e-3)


def test_the_shipped_comparison_trained_at_the_rates_its_stored_scores_select() -> None:
    result = exp.load()
    grids = exp.SETTINGS.grids
    assert {m: sorted(s) for m, s in result.lr_search.items()} == {m: sorted(g) for m, g in grids.items()}  # the whole grid
    for method, scores in result.lr_search.items():
        assert result.learning_rates[method] == max(sorted(scores), key=lambda lr: scores[lr])  # first of the best
        assert all(0.0 <= acc <= 1.0 for acc in scores.values())


def test_load_rejects_rates_that_the_stored_scores_do_not_select(tmp_path) -> None:
    file = shipped.load_result(exp.NAME)
    scores = {float(lr): acc for lr, acc in file.result["lr_search"][exp.FULL].items()}
    wrong = next(lr for lr in scores if lr != best_learning_rate(scores))  # a rate of the grid the scores do not select
    result = dict(file.result, learning_rates=dict(file.result["learning_rates"], **{exp.FULL: wrong}))
    shipped.save_result(exp.NAME, command=file.command, settings=file.settings, result=result, directory=tmp_path)
    with pytest.raises(ValueError, match="select"):
        exp.load(tmp_path)


def test_fit_and_score_and_validation_sweep_train_and_measure() -> None:
    data = tiny_data(12)
    model = apply_peft(tiny_classifier(), lora_config(2))
    row = fit_and_score("LoRA r=2", model, data, data, TINY, total=1000, seed=0, device="cpu")
    assert row.method == "LoRA r=2" and 0.0 <= row.accuracy <= 1.0 and row.seconds > 0
    assert row.trainable == model.get_nb_trainable_parameters()[0]
    assert any(m.lora_B["default"].weight.abs().sum() > 0 for m in model.modules() if hasattr(m, "lora_B"))
    scores = validation_sweep(lambda: freeze_all_but_head(tiny_classifier()), data, data, TINY, [1e-3, 1e-1], device="cpu")
    assert set(scores) == {1e-3, 1e-1} and all(0.0 <= a <= 1.0 for a in scores.values())


def test_method_result_percent() -> None:
    row = MethodResult("LoRA r=8", accuracy=0.85, trainable=75, total=22_000, seconds=1.0)
    assert row.percent == pytest.approx(100 * 75 / 22_000)


def test_pooler_after_prompt_validates_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        PoolerAfterPrompt(torch.nn.Identity(), -1)


def test_update_energy_per_layer_and_shuffled_labels() -> None:
    before, after = tiny_classifier(), tiny_classifier()
    with torch.no_grad():
        for layer in after.bert.encoder.layer:
            layer.attention.self.query.weight += torch.outer(torch.ones(D), torch.arange(D, dtype=torch.float))  # rank 1
            layer.attention.self.value.weight += torch.eye(D)  # every direction alike
    energy = update_energy(before, after, k=1)
    assert energy["query"] == pytest.approx([1.0] * LAYERS) and energy["value"] == pytest.approx([1 / D] * LAYERS)
    data = EncodedTexts(torch.arange(12).view(6, 2), torch.ones(6, 2, dtype=torch.long), torch.tensor([0, 0, 0, 1, 1, 2]))
    shuffled = shuffled_labels(data, seed=0)
    assert torch.equal(shuffled.input_ids, data.input_ids) and not torch.equal(shuffled.labels, data.labels)
    assert sorted(shuffled.labels.tolist()) == data.labels.tolist()
    assert torch.equal(shuffled_labels(data, seed=0).labels, shuffled.labels)  # the seed decides the permutation


