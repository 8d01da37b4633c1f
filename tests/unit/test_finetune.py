"""Tests for lfd13.finetune: data encoding, classifiers, layer freezing, training step and evaluation."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertConfig, BertModel

from lfd13 import finetune as ft
from lfd13.evaluation import accuracy
from lfd13.pretrained import DEFAULT_TEXT_ENCODER, mean_pool, packaged_path
from lfd13.train import Recipe, classification_step

TEXTS = ["the rocket reached orbit", "my car needs new brakes", "the doctor prescribed a drug", "render the image in opengl"] * 3
LABELS = [3, 1, 2, 0] * 3


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(packaged_path(DEFAULT_TEXT_ENCODER))


@pytest.fixture(scope="module")
def encoder(tokenizer):
    torch.manual_seed(123)  # not a seed the classifiers use, so "from scratch" differs
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return BertModel(config).eval()


def test_encode_texts(tokenizer):
    data = ft.tokenize_texts(tokenizer, TEXTS, LABELS, max_length=6)
    assert data.input_ids.shape == data.attention_mask.shape == (12, 6)
    assert data.labels.tolist() == LABELS
    assert (data.input_ids[:, 0] == tokenizer.cls_token_id).all()
    long = ft.tokenize_texts(tokenizer, TEXTS, LABELS, max_length=64)
    assert long.input_ids.shape[1] < 64  # padded to the longest text, not to max_length
    with pytest.raises(ValueError, match="one label per text"):
        ft.tokenize_texts(tokenizer, TEXTS, LABELS[:-1])
    with pytest.raises(TypeError, match="sequence of strings"):
        ft.tokenize_texts(tokenizer, "one text", [0])


def test_classifier_copies_pretrained_weights(encoder, tokenizer):
    data = ft.tokenize_texts(tokenizer, TEXTS, LABELS)
    model = ft.build_sequence_classifier(encoder, num_labels=4, seed=0)
    with torch.no_grad():
        a = model.base_model(input_ids=data.input_ids, attention_mask=data.attention_mask).last_hidden_state
        b = encoder(input_ids=data.input_ids, attention_mask=data.attention_mask).last_hidden_state
    torch.testing.assert_close(a, b)
    scratch = ft.build_sequence_classifier(encoder, num_labels=4, pretrained=False, seed=0)
    assert not torch.equal(scratch.base_model.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    again = ft.build_sequence_classifier(encoder, num_labels=4, seed=0)
    torch.testing.assert_close(again.classifier.weight, model.classifier.weight)
    other = ft.build_sequence_classifier(encoder, num_labels=4, seed=1)
    assert not torch.equal(other.classifier.weight, model.classifier.weight)
    with pytest.raises(ValueError, match="num_labels"):
        ft.build_sequence_classifier(encoder, num_labels=1)


def test_freeze_bottom_layers(encoder):
    model = ft.build_sequence_classifier(encoder, num_labels=4)
    total = ft.parameter_count(model)
    assert total.trainable == total.total
    ft.freeze_bottom_layers(model, 3)
    top = ft.parameter_count(model)
    head = sum(p.numel() for p in model.classifier.parameters()) + sum(p.numel() for p in model.base_model.pooler.parameters())
    assert top.trainable == head and top.total == total.total
    ft.freeze_bottom_layers(model, 1)
    assert not any(p.requires_grad for p in model.base_model.embeddings.parameters())
    assert not any(p.requires_grad for p in model.base_model.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.base_model.encoder.layer[1].parameters())
    ft.freeze_bottom_layers(model, 0)
    assert ft.parameter_count(model).trainable == total.total
    with pytest.raises(ValueError, match="between 0 and 3"):
        ft.freeze_bottom_layers(model, 4)
    with pytest.raises(TypeError, match="BERT-family"):
        ft.encoder_layers(torch.nn.Linear(2, 2))


def test_step_is_cross_entropy(encoder, tokenizer):
    data = ft.tokenize_texts(tokenizer, TEXTS, LABELS)
    model = ft.build_sequence_classifier(encoder, num_labels=4).eval()
    out = ft.sequence_classification_step(model, tuple(data))
    logits = ft.predict_logits(model, data, batch_size=5, device="cpu")
    assert logits.shape == (12, 4)
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, data.labels), atol=1e-5, rtol=1e-4)
    assert ft.evaluate_accuracy(model, data, device="cpu") == pytest.approx(accuracy(logits, data.labels))


def test_training_updates_only_trainable_and_is_deterministic(encoder, tokenizer):
    data = ft.tokenize_texts(tokenizer, TEXTS, LABELS)

    def run(seed):
        model = ft.freeze_bottom_layers(ft.build_sequence_classifier(encoder, num_labels=4), 2)
        history = ft.train_classifier(model, data, ft.TINY, seed=seed, device="cpu")
        return model, history

    model, history = run(0)
    assert len(history["loss"]) == ft.TINY.steps and "acc" in history.metrics
    torch.testing.assert_close(model.base_model.encoder.layer[1].attention.self.query.weight,
                               encoder.encoder.layer[1].attention.self.query.weight)
    assert not torch.equal(model.base_model.encoder.layer[2].attention.self.query.weight,
                           encoder.encoder.layer[2].attention.self.query.weight)
    again, history2 = run(0)
    assert history2["loss"] == history["loss"]
    frozen = ft.freeze_bottom_layers(ft.build_sequence_classifier(encoder, num_labels=4), 3)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ft.train_classifier(frozen, data, ft.TINY)


def test_mean_pooled_features(encoder, tokenizer):
    data = ft.tokenize_texts(tokenizer, TEXTS, LABELS)
    model = ft.build_sequence_classifier(encoder, num_labels=4)
    feats = ft.mean_pooled_features(model, data, batch_size=5, device="cpu")
    assert feats.shape == (12, 32)
    with torch.no_grad():
        h = encoder(input_ids=data.input_ids, attention_mask=data.attention_mask).last_hidden_state
    torch.testing.assert_close(feats, mean_pool(h, data.attention_mask), atol=1e-5, rtol=1e-4)
    first = ft.mean_pooled_features(encoder, data, layer=0, device="cpu")
    assert first.shape == (12, 32) and not torch.allclose(first, feats)


def test_tfidf_baseline_separates_topics():
    assert ft.tfidf_baseline(TEXTS, torch.tensor(LABELS), TEXTS[:4], torch.tensor(LABELS[:4])) == 1.0
    assert ft.tfidf_baseline(TEXTS, torch.tensor(LABELS), TEXTS[:4], torch.tensor(LABELS[:4]), c=1.0) == 1.0
    first_words = ["rocket " + "x " * 60, "brakes " + "x " * 60]
    assert ft.tfidf_baseline(first_words, torch.tensor([0, 1]), ["x " * 60 + "rocket"], torch.tensor([0]), max_words=None,
                             c=100.0) == 1.0  # the whole text is read only with max_words=None


def test_load_classifier_uses_the_packaged_minilm():
    tokenizer, model = ft.load_classifier(4, device="cpu")
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert len(ft.encoder_layers(model)) == 6
    data = ft.tokenize_texts(tokenizer, TEXTS[:4], LABELS[:4])
    feats = ft.mean_pooled_features(model, data, device="cpu")
    sims = F.normalize(feats, dim=-1) @ F.normalize(feats, dim=-1).T
    assert sims.shape == (4, 4) and float(sims.diagonal().min()) > 0.99


def test_small_cnn_and_freezing_blocks():
    torch.manual_seed(0)
    cnn = ft.SmallCNN(num_classes=5, width=8)
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    assert cnn(x).shape == (6, 5) and cnn.features(x).shape == (6, 16)
    out = classification_step(cnn, (x, y))
    torch.testing.assert_close(out["loss"], F.cross_entropy(cnn(x), y))
    assert len(ft.encoder_layers(cnn)) == 3
    ft.freeze_bottom_layers(cnn, 2)
    assert [any(p.requires_grad for p in b.parameters()) for b in cnn.blocks] == [False, False, True]
    ft.freeze_top_layers(cnn, 2)
    assert [any(p.requires_grad for p in b.parameters()) for b in cnn.blocks] == [True, False, False]
    assert all(p.requires_grad for p in cnn.head.parameters())
    with pytest.raises(ValueError, match="between 0 and 3"):
        ft.freeze_top_layers(cnn, 5)


def test_train_and_test_early_stopping_restores_the_best_validation_weights(encoder, tokenizer):
    from lfd13.evaluation import train_and_test

    train_set, val_set, test_set = (ft.tokenize_texts(tokenizer, TEXTS, LABELS) for _ in range(3))
    scripted = iter([0.5, 0.9, 0.9, 0.7])  # validation scores at steps 1, 2, 3 and the end (4)
    seen = {}  # validation call -> head weights at that moment

    def score(model, data, *, device=None):
        if data is test_set:
            return 0.0
        i = len(seen)
        seen[i] = model.classifier.weight.detach().clone()
        return next(scripted)

    model = ft.build_sequence_classifier(encoder, num_labels=4, seed=0)
    recipe = Recipe(steps=4, lr=1e-2, batch_size=4)
    run = train_and_test(model, train_set, test_set, recipe, seed=0, step=ft.sequence_classification_step, score=score,
                         device="cpu", validation=val_set, eval_every=1)
    assert [s for s, _ in run.history.evals["validation"]] == [1, 2, 3, 4]
    assert run.best_step == 2  # the earliest of the two best scores
    torch.testing.assert_close(model.classifier.weight, seen[1])
    assert not torch.equal(model.classifier.weight, seen[3])
    plain = train_and_test(ft.build_sequence_classifier(encoder, num_labels=4, seed=0), train_set, test_set, recipe, seed=0,
                           step=ft.sequence_classification_step, score=ft.evaluate_accuracy, device="cpu")
    assert plain.best_step is None and plain.history.evals == {}
    with pytest.raises(ValueError, match="eval_every"):
        train_and_test(model, train_set, test_set, recipe, seed=0, step=ft.sequence_classification_step, score=score,
                       device="cpu", validation=val_set)


def test_transfer_tasks_and_a_copied_block_stays_frozen() -> None:
    from lfd13.data import load_digits
    from lfd13.finetune import TRANSFER_WIDTH, SmallCNN, transfer_accuracy, transfer_tasks

    digits = load_digits()
    tasks = transfer_tasks(digits)
    assert set(tasks) == {"new labels", "inverted inputs", "same task"}
    for (x, y), (xt, yt) in tasks.values():
        assert set(y.tolist()) == set(yt.tolist()) == set(range(5)) and len(x) == len(y) and len(xt) == len(yt)
    torch.testing.assert_close(tasks["inverted inputs"][0][0], 1 - tasks["same task"][0][0])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        source = SmallCNN(num_classes=5, width=TRANSFER_WIDTH)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    seen = {}

    def keep(model: SmallCNN) -> None:  # the copy, before training
        seen["model"] = model

    acc = transfer_accuracy(source, tasks, "same task", (0, 1), 0, edit=keep, device="cpu")
    assert 0.0 <= acc <= 1.0
    model = seen["model"]
    for i in (0, 1):  # copied and frozen: equal to the source's block after training
        for k, v in model.blocks[i].state_dict().items():
            torch.testing.assert_close(v, before[f"blocks.{i}.{k}"])
    assert not torch.equal(model.blocks[2][0].weight, source.blocks[2][0].weight)  # learned anew
    assert all(torch.equal(v, before[k]) for k, v in source.state_dict().items())  # the source is untouched


def test_the_shipped_source_cnn_records_every_transfer_run() -> None:
    from dataclasses import asdict

    from lfd13.finetune import SOURCE_RECIPE, TARGET_RECIPE, TRANSFER_RECORD, TRANSFER_RUNS, load_source_cnn

    model, info = load_source_cnn()
    assert info.command == TRANSFER_RECORD and model.head.out_features == 5
    assert info.recipe == json.loads(json.dumps({"source": asdict(SOURCE_RECIPE), "target": asdict(TARGET_RECIPE)}))
    for task, (variants, seeds) in TRANSFER_RUNS.items():
        assert info.result["seeds"][task] == list(seeds)
        assert set(info.result["runs"][task]) == set(variants)
        assert all(len(accs) == len(seeds) for accs in info.result["runs"][task].values())


def test_a_record_round_trips_and_refuses_what_is_not_one(tmp_path) -> None:
    from lfd13 import shipped

    info = shipped.save_record("r", command="make it", config={"a": 1}, recipe={"b": 2}, result={"c": [3]}, directory=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # the JSON alone, no weights
    assert shipped.load_record("r", command="make it", directory=tmp_path) == info
    assert shipped.load_record(tmp_path / "r.json", command="make it") == info
    with pytest.raises(FileNotFoundError, match="make it"):
        shipped.load_record("missing", command="make it", directory=tmp_path)
    shipped.save("w", {"x": torch.zeros(1)}, kind="cnn", command="c", config={}, recipe={}, directory=tmp_path)
    with pytest.raises(ValueError, match="not an .* record .*'cnn'.*make it"):
        shipped.load_record("w", command="make it", directory=tmp_path)


def test_the_shipped_comparison_record_holds_every_run_of_chapter_5() -> None:
    from dataclasses import asdict

    from lfd13.finetune import COMPARISON_RECIPES, COMPARISON_RECORD, COMPARISON_RUNS, load_comparison

    runs, info = load_comparison()
    assert info.kind == "record" and info.command == COMPARISON_RECORD and set(runs) == set(COMPARISON_RUNS)
    assert info.recipe == json.loads(json.dumps({"pretrained": asdict(COMPARISON_RECIPES[True]),
                                                 "from scratch": asdict(COMPARISON_RECIPES[False])}))
    for (n, seed, pretrained), run in runs.items():
        steps = [s for s, _ in run.history.evals["validation"]]
        assert 0 <= run.accuracy <= 1 and run.best_step in steps and steps[-1] == COMPARISON_RECIPES[pretrained].steps
        assert run.history.seconds[-1] > 0


def test_load_comparison_names_a_missing_run(tmp_path) -> None:
    from lfd13 import shipped
    from lfd13.finetune import COMPARISON, COMPARISON_RECORD, load_comparison

    info = shipped.load_record(COMPARISON, command=COMPARISON_RECORD)
    runs = dict(info.result["runs"])
    runs.pop(next(iter(runs)))
    shipped.save_record(COMPARISON, command=info.command, config=info.config, recipe=info.recipe,
                        result={**info.result, "runs": runs}, directory=tmp_path)
    with pytest.raises(ValueError, match="has no run .*pretrain finetune-record"):
        load_comparison(directory=tmp_path)
