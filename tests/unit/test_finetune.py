"""Tests for lfd13.finetune (data encoding, classifiers, layer freezing, training step and evaluation) and for the
experiments built on it (lfd13.experiments.finetune_comparison and layer_transfer)."""

import numpy as np
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
    from lfd13.experiments.layer_transfer import SmallCNN

    torch.manual_seed(0)
    cnn = SmallCNN(num_classes=5, width=8)
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
    from lfd13.experiments.layer_transfer import SETTINGS, SmallCNN, transfer_accuracy, transfer_tasks

    digits = load_digits()
    tasks = transfer_tasks(digits)
    assert set(tasks) == {"new labels", "inverted inputs", "same task"}
    for (x, y), (xt, yt) in tasks.values():
        assert set(y.tolist()) == set(yt.tolist()) == set(range(5)) and len(x) == len(y) and len(xt) == len(yt)
    torch.testing.assert_close(tasks["inverted inputs"][0][0], 1 - tasks["same task"][0][0])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        source = SmallCNN(num_classes=5, width=SETTINGS.width)
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


def test_the_shipped_transfer_result_holds_every_run_of_its_settings() -> None:
    from lfd13.experiments import layer_transfer as lt

    result = lt.load()
    for r in lt.SETTINGS.runs:
        assert result.seeds[r.task] == r.seeds and set(result.runs[r.task]) == set(r.variants)
        assert all(len(accs) == len(r.seeds) and all(0 <= a <= 1 for a in accs) for accs in result.runs[r.task].values())


def test_choose_on_validation_extends_the_grid_until_the_winner_is_interior() -> None:
    from lfd13.experiments.layer_transfer import choose_on_validation

    tried = []

    def run_at(lr: float) -> tuple[list[float], list[float]]:  # validation peaks at lr = 0.1; test is never read
        tried.append(lr)
        return [1 - abs(np.log10(lr) + 1)] * 2, [0.0, 0.0]

    lr, grid = choose_on_validation(run_at, (1e-3, 3e-3, 1e-2), max_extensions=5)
    assert lr == 0.09 and min(grid) < lr < max(grid) and tried[:3] == [1e-3, 3e-3, 1e-2]
    lr, grid = choose_on_validation(run_at, (1e-3, 3e-3, 1e-2), max_extensions=1)  # stops at the edge when told to
    assert lr == max(grid) == 0.03 and len(grid) == 4


def test_the_shipped_image_learning_rates_were_chosen_on_validation_inside_their_grids() -> None:
    from lfd13.experiments import layer_transfer as lt

    result, text = lt.load(), lt.load_text()
    for task, by_variant in result.lr.items():
        for variant, lr in by_variant.items():
            grid = result.grid[task][variant]
            assert min(grid) < lr < max(grid), (task, variant, sorted(grid))
            assert list(result.runs[task][variant])[: lt.SETTINGS.choose_seeds] == grid[lr]["test"]
            assert np.mean(grid[lr]["validation"]) == max(np.mean(g["validation"]) for g in grid.values())
    assert set(text.runs) == {name for name, *_ in lt.TEXT_SETTINGS.arms}
    for arm, lr in text.lr.items():  # the shipped text arms share the recipe's rate: a grid of one value each
        assert lr in text.grid[arm] and list(text.runs[arm]) == text.grid[arm][lr]["test"]


def test_a_label_draw_is_disjoint_and_validates_on_the_same_posts_at_every_budget() -> None:
    from lfd13.experiments.finetune_comparison import SETTINGS, label_draw

    labels = torch.arange(4).repeat_interleave(100)
    small, big = label_draw(labels, 16, 0), label_draw(labels, 64, 0)
    assert torch.equal(small[1], big[1]) and len(small[1]) == 4 * SETTINGS.n_val
    assert not set(big[0].tolist()) & set(big[1].tolist())
    assert set(small[0].tolist()) <= set(big[0].tolist()) and torch.bincount(labels[small[0]]).tolist() == [16] * 4
    assert not torch.equal(label_draw(labels, 16, 1)[0], small[0])


def test_a_mean_pooled_classifier_reads_the_mean_of_the_real_tokens(encoder, tokenizer):
    data = ft.tokenize_texts(tokenizer, TEXTS, LABELS)
    model = ft.build_sequence_classifier(encoder, num_labels=4, pooling="mean", seed=0)
    assert isinstance(model, ft.MeanPooledClassifier) and model.base_model is not encoder
    with torch.no_grad():
        out = model(input_ids=data.input_ids, attention_mask=data.attention_mask, labels=data.labels)
        h = encoder(input_ids=data.input_ids, attention_mask=data.attention_mask).last_hidden_state
    torch.testing.assert_close(out.logits, model.classifier(mean_pool(h, data.attention_mask)))  # eval: no dropout
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, data.labels))
    torch.testing.assert_close(ft.mean_pooled_features(model, data), mean_pool(h, data.attention_mask))
    scratch = ft.build_sequence_classifier(encoder, num_labels=4, pooling="mean", pretrained=False, seed=0)
    assert not torch.equal(scratch.base_model.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    again = ft.build_sequence_classifier(encoder, num_labels=4, pooling="mean", pretrained=False, seed=0)
    torch.testing.assert_close(again.base_model.embeddings.word_embeddings.weight,
                               scratch.base_model.embeddings.word_embeddings.weight)
    ft.freeze_bottom_layers(model, 3)  # the whole stack: the head alone trains
    assert ft.parameter_count(model).trainable == sum(p.numel() for p in model.classifier.parameters())
    ft.train_classifier(model, data, ft.TINY, seed=0)  # the book's step trains it
    with pytest.raises(ValueError, match="pooling"):
        ft.build_sequence_classifier(encoder, num_labels=4, pooling="max")


def _run(accuracy: float, best_step: int = 2):
    from lfd13.evaluation import TrainTestResult

    return TrainTestResult.from_record({"accuracy": accuracy, "best_step": best_step, "seconds": 1.0,
                                        "validation": [[1, 0.25], [best_step, accuracy]]})


def test_a_rate_is_chosen_on_validation_and_a_grid_grows_past_an_edge() -> None:
    from lfd13.experiments import finetune_comparison as fc

    K = fc.RunKey
    runs = {K(64, 0, True, 3e-5): _run(0.8), K(64, 0, True, 1e-4): _run(0.9), K(64, 0, True, 3e-4): _run(0.9),
            K(64, 1, True, 1e-4): _run(0.7), K(64, 0, False, 1e-3): _run(0.5)}
    assert fc.chosen_rate(runs, 64, True, 0) == 1e-4  # a tie goes to the smaller rate
    result = fc.Result(runs=runs, n_test=160, seconds=1.0)
    assert result.rate(64, True) == 1e-4 and result.grid(64, True) == (3e-5, 1e-4, 3e-4)
    assert list(result.chosen(64, True)) == [0, 1]
    assert fc._extend([3e-5, 1e-4, 3e-4], 3e-4) == 1e-3 and fc._extend([3e-5, 1e-4, 3e-4], 3e-5) == 1e-5
    assert fc._extend([3e-5, 1e-4, 3e-4], 1e-4) is None and fc._extend([1e-4], 1e-4) is None


def test_the_shipped_comparison_holds_every_run_of_its_settings() -> None:
    from lfd13.experiments import finetune_comparison as fc

    result = fc.load()
    settings = fc.SETTINGS
    for n, pretrained in {(n, True) for n in settings.budgets} | {(n, False) for n in settings.scratch_budgets}:
        grid, rate = result.grid(n, pretrained), result.rate(n, pretrained)
        assert set(settings.rates(pretrained)) <= set(grid) and grid[0] < rate < grid[-1]  # chosen inside its grid
        seeds = settings.seeds if pretrained else settings.seeds[:1]
        assert list(result.chosen(n, pretrained)) == list(seeds)
    for key, run in result.runs.items():
        steps = [s for s, _ in run.history.evals["validation"]]
        assert 0 <= run.accuracy <= 1 and run.best_step in steps
        assert steps[-1] == settings.recipe(key.pretrained).steps and run.history.seconds[-1] > 0


def test_loading_a_comparison_names_a_missing_run(tmp_path) -> None:
    from lfd13 import shipped
    from lfd13.experiments import finetune_comparison as fc

    file = shipped.load_result(fc.NAME)
    runs = [r for r in file.result["runs"] if not (r["pretrained"] and r["seed"] == 1)]
    shipped.save_result(fc.NAME, command=file.command, settings=file.settings, result={**file.result, "runs": runs},
                        directory=tmp_path)
    with pytest.raises(ValueError, match=r"has no run with n=64, seed=1, pretrained=True.*recreate finetune"):
        fc.load(tmp_path)
