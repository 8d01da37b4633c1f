"""Evaluating representations: accuracy, linear probes, few-label evaluation, train-then-test.

A *linear probe* freezes an encoder, extracts its features and fits only a
linear classifier (multinomial logistic regression) on top. It is the standard
yardstick of self-supervised learning (e.g. He et al. 2022, Radford et al.
2021): a good representation makes the classes linearly separable. Evaluating
with 1, 5, 10 … labels per class, over several seeds, measures what the
lecture calls *data efficiency*. :func:`train_and_test` is the other yardstick every
chapter uses: train a whole model (from scratch, or from pre-trained weights) on the
few labelled examples, then measure its test accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lfd13.runtime import get_device
from lfd13.sampling import subset_indices
from lfd13.train import History, Recipe, StepFn, classification_step, train

__all__ = [
    "PROBE_CS", "Comparison", "FewLabelResult", "TrainTestResult", "accuracy", "accuracy_on", "choose_probe_c",
    "compare", "extract_features", "few_label_evaluation", "linear_probe", "tfidf_baseline", "train_and_test",
]


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of correct predictions.

    Args:
        pred: [N] predicted class ids, or [N, C] scores (argmax taken).
        target: [N] true class ids.
    """
    if pred.ndim == 2:
        pred = pred.argmax(dim=-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape [N]")
    if len(target) == 0:
        raise ValueError("cannot compute the accuracy of an empty set")
    return float((pred.cpu() == target.cpu()).float().mean())


@torch.no_grad()
def extract_features(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run a frozen encoder over ``x`` in batches.

    Args:
        encoder: maps a batch [b, ...] to features [b, D] (an ``nn.Module`` is put in eval mode).
        x: [N, ...] inputs.
        batch_size: inputs per forward pass.
        device: where the encoder runs (default :func:`lfd13.get_device`).

    Returns:
        [N, D] features on the CPU: float32, or float64 where the encoder computes in double
        precision (features that do not depend on the CPU's instruction set, see
        :func:`lfd13.pretext.layer_features`).
    """
    device = torch.device(device) if device is not None else get_device()
    if isinstance(encoder, torch.nn.Module):
        encoder.eval()
    out = []
    for i in range(0, len(x), batch_size):
        f = encoder(x[i : i + batch_size].to(device))
        if f.ndim != 2:
            raise ValueError(f"the encoder must return [B, D] features, got shape {tuple(f.shape)}; pool or flatten them")
        out.append((f if f.dtype == torch.float64 else f.float()).cpu())
    return torch.cat(out)


def _as_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


#: The grid of inverse regularisation strengths ``linear_probe(c="cv")`` chooses from.
PROBE_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


def choose_probe_c(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 2000) -> float:
    """The ``C`` of ``PROBE_CS`` with the best stratified cross-validated accuracy on these examples.

    Folds: as many as the rarest class allows, at most 5. Returns 1.0 when some class has a
    single example (no fold could hold it out).
    """
    folds = min(5, int(np.bincount(labels.astype(int)).min()) if len(labels) else 0)
    if folds < 2:
        return 1.0
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter)),
        {"logisticregression__C": list(PROBE_CS)}, cv=cv, scoring="accuracy",
    )
    search.fit(features, labels)
    return float(search.best_params_["logisticregression__C"])


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    c: float | str = 1.0,
    max_iter: int = 2000,
) -> float:
    """Fit a logistic-regression probe on frozen features and return its test accuracy.

    Features are standardised with the training set's statistics first. With ``c="cv"`` the
    regularisation is chosen for these features by stratified cross-validation on the labelled
    examples alone (``PROBE_CS``, up to 5 folds), so that 64-, 128- and 4,096-dimensional
    features each get their own; the test set plays no part in the choice. With a single labelled
    example of some class there is nothing to validate on, and ``C = 1`` is used.

    Args:
        train_features: [N, D] features of the labelled examples.
        train_labels: [N] their labels.
        test_features: [M, D] features of the test examples.
        test_labels: [M] their labels.
        c: inverse L2 regularisation strength of the logistic regression, or ``"cv"``.
        max_iter: solver iterations.
    """
    xtr, ytr = _as_numpy(train_features), _as_numpy(train_labels)
    xte, yte = _as_numpy(test_features), _as_numpy(test_labels)
    if xtr.ndim != 2 or xte.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got {xtr.shape} and {xte.shape}; flatten them first")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train and test features differ in width: {xtr.shape[1]} vs {xte.shape[1]}")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError("each feature matrix needs one label per row")
    if len(np.unique(ytr)) < 2:
        raise ValueError("the probe needs labelled examples of at least two classes")
    if isinstance(c, str):
        if c != "cv":
            raise ValueError(f'c must be a positive number or "cv", got {c!r}')
        c = choose_probe_c(xtr, ytr, max_iter=max_iter)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    probe.fit(xtr, ytr)
    return float((probe.predict(xte) == yte).mean())


@dataclass(frozen=True)
class FewLabelResult:
    """Probe accuracies at one number of labels per class, over several seeds.

    Attributes:
        n_per_class: labels per class (``None`` = all training labels).
        accuracies: one test accuracy per seed.
    """

    n_per_class: int | None
    accuracies: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))

    def __str__(self) -> str:
        n = "all" if self.n_per_class is None else self.n_per_class
        return f"{n} per class: {self.mean:.3f} ± {self.std:.3f}"


def few_label_evaluation(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    n_per_class: Sequence[int | None],
    seeds: Sequence[int] = (0, 1, 2),
    fit_and_score: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], float] = linear_probe,
) -> list[FewLabelResult]:
    """Linear-probe accuracy with ``n`` labels per class, for each ``n`` and seed.

    With all labels (``None``) there is nothing to draw, so a single run is made.

    Args:
        train_features: [N, D] features of the whole training pool.
        train_labels: [N] its labels (only the drawn subset is used for fitting).
        test_features: [M, D] features of the test set.
        test_labels: [M] labels of the test set.
        n_per_class: the label budgets, e.g. ``(1, 5, 10, None)``.
        seeds: one draw of the labelled subset per seed.
        fit_and_score: the classifier, by default :func:`linear_probe`.
    """
    if not seeds:
        raise ValueError("give at least one seed")
    results = []
    for n in n_per_class:
        accs = []
        for seed in seeds if n is not None else seeds[:1]:
            idx = subset_indices(torch.as_tensor(train_labels), n, seed=seed)
            accs.append(fit_and_score(train_features[idx], train_labels[idx], test_features, test_labels))
        results.append(FewLabelResult(n, tuple(accs)))
    return results


@torch.no_grad()
def accuracy_on(
    model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, batch_size: int = 512,
    device: torch.device | str | None = None,
) -> float:
    """Accuracy of a classifier on ``(x [N, ...], y [N])``, in eval mode and in batches."""
    x, y = data
    device = torch.device(device) if device is not None else get_device()
    model.to(device).eval()
    logits = torch.cat([model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])
    return accuracy(logits, y)


@dataclass(frozen=True)
class TrainTestResult:
    """What :func:`train_and_test` returns."""

    accuracy: float  # test accuracy of the weights that were tested
    history: History  # the training run (with validation: ``history.evals["validation"]``, (step, score) pairs)
    best_step: int | None = None  # with validation: the step whose weights were tested (early stopping)

    @property
    def best_validation(self) -> float:
        """The validation score of the check whose weights were tested (the best the run reached)."""
        if self.best_step is None:
            raise ValueError("this run had no validation split: pass validation=(x, y) to train_and_test")
        return dict(self.history.evals["validation"])[self.best_step]

    def to_record(self) -> dict[str, Any]:
        """What a recorded comparison keeps of the run, as JSON: test accuracy, chosen step, validation curve, seconds."""
        return {"accuracy": round(self.accuracy, 5), "best_step": self.best_step,
                "validation": [[step, round(v, 4)] for step, v in self.history.evals.get("validation", [])],
                "seconds": round(self.history.seconds[-1], 1)}

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> TrainTestResult:
        """The run as :meth:`to_record` kept it; its history holds the validation curve and the seconds, not the losses."""
        history = History(seconds=[row["seconds"]], evals={"validation": [(s, v) for s, v in row["validation"]]})
        return cls(accuracy=row["accuracy"], history=history, best_step=row["best_step"])


def train_and_test(
    model: torch.nn.Module,
    train_data: Sequence[torch.Tensor],
    test_data: Any,
    recipe: Recipe,
    *,
    seed: int,
    step: StepFn = classification_step,
    score: Callable[..., float] = accuracy_on,
    device: torch.device | str | None = None,
    validation: Any = None,
    eval_every: int | None = None,
) -> TrainTestResult:
    """Train ``model`` on a (few-label) training set with ``recipe``, then score it on the test set.

    With ``validation`` data this is *early stopping*: every ``eval_every`` steps (and at the
    end) the model is scored on the validation set, a copy of the best weights so far is kept
    (the earliest, on ties), and those weights, not the last ones, are restored and tested.
    The test set is read once, so the step is chosen without it.

    Args:
        model: the classifier, freshly built or initialised from pre-trained weights.
        train_data: the labelled training tensors, e.g. ``(x [N, ...], y [N])`` or a tokenised text set.
        test_data: what ``score`` reads, e.g. ``(x_test, y_test)``.
        recipe: the optimisation recipe (give each arm of a comparison its own, chosen on validation data).
        seed: seeds the batch order and dropout.
        step: the training step (default: cross-entropy on ``(x, y)``).
        score: ``score(model, test_data, device=...) -> accuracy`` (default :func:`accuracy_on`).
        device: where to train and test (default :func:`lfd13.get_device`).
        validation: what ``score`` reads, disjoint from the training and test sets (e.g.
            from :meth:`lfd13.data.newsgroups.TextSplit.train_validation`); None: test the last weights.
        eval_every: validation period in steps (required with ``validation``).

    Returns:
        A :class:`TrainTestResult`; with validation, ``best_step`` and the model hold the chosen weights.
    """
    if validation is None:
        history = train(model, tuple(train_data), step, recipe, seed=seed, device=device)
        return TrainTestResult(score(model, test_data, device=device), history)
    if not eval_every or eval_every < 1:
        raise ValueError(f"early stopping needs eval_every >= 1 (validation period in steps), got {eval_every}")
    best: dict[str, Any] = {"score": -float("inf"), "call": -1, "state": None}
    calls = [0]

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        value = score(m, validation, device=device)
        if value > best["score"]:  # strict: the earliest of equal scores wins
            state = {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}
            best.update(score=value, call=calls[0], state=state)
        calls[0] += 1
        return {"validation": value}

    history = train(model, tuple(train_data), step, recipe, seed=seed, device=device, evaluate=evaluate,
                    eval_every=eval_every)
    model.load_state_dict(best["state"])
    best_step = history.evals["validation"][best["call"]][0]
    return TrainTestResult(score(model, test_data, device=device), history, best_step)


@dataclass(frozen=True)
class Comparison:
    """Score ``a`` minus score ``b``, with a 95 % interval; what a page's verdict is computed from.

    Attributes:
        difference: mean of a − b (fractions, e.g. accuracies).
        low: lower end of the 95 % interval of the difference.
        high: upper end.
        n: paired runs behind it (1 for a single run of each, judged on the test-set size).
    """

    difference: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        """``"above"``, ``"below"`` or ``"level with"``: whether the interval excludes zero."""
        if self.low > 0:
            return "above"
        if self.high < 0:
            return "below"
        return "level with"

    def __str__(self) -> str:
        runs = f"{self.n} paired runs" if self.n > 1 else "one run each"
        return (
            f"{100 * self.difference:+.1f} points (95 % CI {100 * self.low:+.1f} to "
            f"{100 * self.high:+.1f}, {runs})"
        )


def compare(a: Sequence[float], b: Sequence[float], *, test_size: int | None = None) -> Comparison:
    """Compare two methods' scores, run for run: the mean difference and its 95 % interval.

    With ``n >= 2`` paired runs (the same seeds, label draws and test set for both) the interval
    is Student's t on the per-run differences. With one run of each, pass ``test_size``, the
    number of test examples, for the normal interval of a difference of two proportions
    (it counts only the test set's sampling noise, not the training run's).

    Args:
        a: scores of the first method, one per run.
        b: scores of the second, in the same run order.
        test_size: test examples behind each score; required when there is one run each.

    Returns:
        A :class:`Comparison`; ``.verdict`` says "above", "below" or "level with".
    """
    da, db = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if da.ndim != 1 or da.shape != db.shape or len(da) == 0:
        raise ValueError(f"a and b must be non-empty 1-D sequences of equal length (paired runs), got {da.shape} and {db.shape}")
    diff = da - db
    n = len(diff)
    if n == 1:
        if test_size is None or test_size < 1:
            raise ValueError("with one run of each, pass test_size (the number of test examples) to judge the difference")
        pa, pb = float(da[0]), float(db[0])
        half = 1.96 * float(np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / test_size))
    else:
        half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n))
    mean = float(diff.mean())
    return Comparison(mean, mean - half, mean + half, n)


def tfidf_baseline(
    train_texts: Sequence[str],
    train_labels: torch.Tensor,
    test_texts: Sequence[str],
    test_labels: torch.Tensor,
    *,
    max_words: int | None = 50,
    c: float = 10.0,
) -> float:
    """Accuracy of TF-IDF + logistic regression: the classical baseline without pre-training.

    Args:
        max_words: cut each text to its first words, to see about as much as a 64-token
            encoder does (None: whole texts).
        c: inverse L2 regularisation strength of the logistic regression (choose it on
            validation texts: pass them as ``test_texts``).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    def cut(texts: Sequence[str]) -> list[str]:
        return [" ".join(t.split()[:max_words]) if max_words else t for t in texts]

    # newton-cg: the same optimum as the default lbfgs, which takes seconds on these sparse features at large C
    clf = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(C=c, solver="newton-cg", max_iter=2000))
    clf.fit(cut(train_texts), torch.as_tensor(train_labels).numpy())
    return float((clf.predict(cut(test_texts)) == torch.as_tensor(test_labels).numpy()).mean())
