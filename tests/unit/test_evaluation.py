import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lfd13.data import load_digits
from lfd13.evaluation import FewLabelResult, accuracy, extract_features, few_label_evaluation, linear_probe


def test_accuracy_from_ids_and_scores():
    y = torch.tensor([0, 1, 2, 1])
    assert accuracy(torch.tensor([0, 1, 1, 1]), y) == 0.75
    scores = torch.nn.functional.one_hot(y, 3).float()
    assert accuracy(scores, y) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        accuracy(torch.tensor([0, 1]), y)
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.tensor([]), torch.tensor([]))


def test_extract_features_batches_and_checks_shape():
    enc = torch.nn.Flatten()
    x = torch.rand(10, 1, 2, 2)
    f = extract_features(enc, x, batch_size=3, device="cpu")
    assert torch.equal(f, x.flatten(1))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        extract_features(lambda t: t, x, device="cpu")


def test_linear_probe_on_pixels_agrees_with_sklearn_and_is_good():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    d = load_digits()
    xtr, xte = d.x_train.flatten(1).numpy(), d.x_test.flatten(1).numpy()
    scaler = StandardScaler().fit(xtr)  # the probe standardises with the training statistics
    for c in (0.001, 1.0):
        ref = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(xtr), d.y_train.numpy())
        expected = float((ref.predict(scaler.transform(xte)) == d.y_test.numpy()).mean())
        assert linear_probe(d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test, c=c) == expected
    acc = linear_probe(d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test)
    assert acc > 0.93
    with pytest.raises(ValueError, match="2-D"):
        linear_probe(d.x_train, d.y_train, d.x_test, d.y_test)
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe(torch.rand(3, 2), torch.zeros(3), torch.rand(3, 2), torch.zeros(3))


def test_few_label_evaluation_structure_and_trend():
    d = load_digits()
    res = few_label_evaluation(
        d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test, n_per_class=(1, 10, None), seeds=(0, 1)
    )
    assert [r.n_per_class for r in res] == [1, 10, None]
    assert len(res[0].accuracies) == 2 and len(res[2].accuracies) == 1
    assert res[0].mean < res[1].mean < res[2].mean + 0.02
    assert "1 per class" in str(res[0])
    r = FewLabelResult(5, (0.5, 0.7))
    assert r.mean == pytest.approx(0.6) and r.std == pytest.approx(0.1)


def test_custom_classifier_is_used():
    d = load_digits()
    calls = []

    def score(xtr, ytr, xte, yte):
        calls.append(len(ytr))
        return float(LogisticRegression(max_iter=50).fit(xtr, ytr).score(xte, yte))

    few_label_evaluation(d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test, n_per_class=(2,), seeds=(0,), fit_and_score=score)
    assert calls == [20]


def test_compare_paired_interval_and_verdict():
    from scipy import stats

    from lfd13.evaluation import compare

    a, b = [0.90, 0.92, 0.91, 0.95], [0.85, 0.86, 0.88, 0.86]
    c = compare(a, b)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert c.n == 4 and c.difference == pytest.approx(d.mean())
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.verdict == "above" and compare(b, a).verdict == "below"
    assert compare([0.9, 0.8], [0.8, 0.9]).verdict == "level with"
    assert str(c).startswith("+5.8 points (95 % CI")


def test_compare_single_run_needs_test_size():
    from lfd13.evaluation import compare

    with pytest.raises(ValueError, match="test_size"):
        compare([0.9], [0.8])
    assert compare([0.9], [0.8], test_size=2000).verdict == "above"
    assert compare([0.9], [0.86], test_size=100).verdict == "level with"
    with pytest.raises(ValueError, match="equal length"):
        compare([0.9, 0.8], [0.8])


def test_probe_cv_chooses_c_on_the_labelled_examples_only():
    from lfd13.evaluation import PROBE_CS, choose_probe_c

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = (x[:, 0] > 0).long()
    x_test = torch.randn(40, 5, generator=g)
    y_test = (x_test[:, 0] > 0).long()
    chosen = choose_probe_c(x.numpy(), y.numpy())
    assert chosen in PROBE_CS
    assert linear_probe(x, y, x_test, y_test, c="cv") == linear_probe(x, y, x_test, y_test, c=chosen)
    # The choice does not look at the test set: other test labels, same C.
    assert choose_probe_c(x.numpy(), y.numpy()) == chosen
    assert choose_probe_c(x[:2].numpy(), np.array([0, 1])) == 1.0  # one example per class: nothing to validate on
    with pytest.raises(ValueError, match='"cv"'):
        linear_probe(x, y, x_test, y_test, c="auto")


def test_probe_cv_prefers_strong_regularisation_for_noise_features():
    from lfd13.evaluation import choose_probe_c

    g = torch.Generator().manual_seed(1)
    signal = torch.randn(80, 1, generator=g)
    y = (signal[:, 0] > 0).long()
    noisy = torch.cat([signal + 0.5 * torch.randn(80, 1, generator=g), torch.randn(80, 200, generator=g)], dim=1)
    assert choose_probe_c(noisy.numpy(), y.numpy()) < 1.0


def test_a_train_test_result_round_trips_through_its_record() -> None:
    import json

    from lfd13.evaluation import TrainTestResult
    from lfd13.train import History

    history = History(step=[1, 2], seconds=[0.51, 1.04], metrics={"loss": [2.0, 1.0]},
                      evals={"validation": [(1, 0.123456), (2, 0.5)]})
    result = TrainTestResult(accuracy=0.8765432, history=history, best_step=2)
    row = json.loads(json.dumps(result.to_record()))  # as a JSON file holds it
    assert row == {"accuracy": 0.87654, "best_step": 2, "validation": [[1, 0.1235], [2, 0.5]], "seconds": 1.0}
    back = TrainTestResult.from_record(row)
    assert (back.accuracy, back.best_step, back.history.evals["validation"]) == (0.87654, 2, [(1, 0.1235), (2, 0.5)])
    assert back.history.seconds[-1] == 1.0
