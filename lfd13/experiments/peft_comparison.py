"""Chapter 6's measurements: each method's learning rate, LoRA against full fine-tuning over seeds, a rank sweep.

The task is the four-newsgroups one with a few labelled posts per class, on all-MiniLM-L6-v2
(:func:`lfd13.pretrained.load_text_encoder`, offline) with transformers' classification head.
Every method trains with one budget (:attr:`Settings.budget`) at its own learning rate:

1. **learning-rate search** (:func:`learning_rate_search`): full fine-tuning, LoRA, prompt tuning
   and the head alone, each trained once at every rate of its grid and scored on validation posts
   (never on the test set); :func:`best_learning_rate` picks each method's rate from those scores;
2. **seed comparison**: every method for every seed (a seed draws the labelled posts, the
   head and the batch order), scored on the test posts; prompt tuning twice, with the text at its
   pre-training positions (:class:`lfd13.peft_tools.PositionsAfterPrompt`), and, where
   :attr:`Settings.shifted_rates` is not empty, at peft's shifted ones as well;
3. **update energy**: the share of seed 0's full fine-tuning update of every layer's query and
   value matrices in their top singular directions, with a fine-tuning on shuffled labels as
   the control (:func:`lfd13.peft_tools.update_energy`);
4. **rank sweep**: LoRA at seed 0 for every rank, with alpha fixed and with alpha = 2 r.

The validation scores, the test accuracies and the energies go to ``lfd13/results/peft_comparison.json``;
the sweep's largest-rank adapter with alpha fixed ships as a checkpoint (:attr:`Settings.adapter`).
``benchmarks/peft_lr_search.py`` measures the learning-rate search again against that file.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lfd13 import peft_tools as pt
from lfd13 import shipped
from lfd13.data.newsgroups import TextSplit, load_newsgroups
from lfd13.experiments import Entry, best_learning_rate, command
from lfd13.finetune import (
    FULL_FINETUNE,
    EncodedTexts,
    build_sequence_classifier,
    evaluate_accuracy,
    tokenize_texts,
    train_classifier,
)
from lfd13.pretrained import DEFAULT_TEXT_ENCODER, load_text_encoder
from lfd13.runtime import make_generator
from lfd13.train import Recipe

__all__ = ["NAME", "ROW", "FULL", "PROMPT", "HEAD", "PROMPT_SHIFTED", "ALPHA_FIXED", "ALPHA_2R", "Settings", "SETTINGS", "TINY", "adapter_name",
           "MethodResult", "Run", "Result", "best_learning_rate", "chosen_recipe", "training_posts",
           "validation_posts", "test_posts", "shuffled_labels", "fit_and_score", "validation_sweep",
           "learning_rate_search", "method_makers", "run", "load", "files", "write", "check", "ENTRIES"]

#: The result file this experiment writes, and its row of the recreate table.
NAME, ROW = "peft_comparison", "peft"

#: Method names that do not depend on the settings (LoRA's carries its rank: :attr:`Settings.lora`).
FULL, PROMPT, HEAD = "full fine-tuning", "prompt tuning", "head only"

#: Prompt tuning with peft's own position numbering: every text token at ``i + n`` (the shift control).
PROMPT_SHIFTED = "prompt tuning, shifted positions"

#: The two arms of the rank sweep: alpha fixed at :attr:`Settings.lora_alpha`, or alpha = 2 r.
ALPHA_FIXED, ALPHA_2R = "alpha fixed", "alpha = 2r"


@dataclass(frozen=True)
class Settings:
    """The task, the budget, the learning-rate grids, the seeds and the ranks."""

    encoder: str = DEFAULT_TEXT_ENCODER  # the pretrained encoder, resolved offline by lfd13.pretrained
    n_per_class: int = 16  # labelled posts per class of every draw
    n_val_per_class: int = 50  # validation posts per class (the learning-rate search), disjoint from them
    n_test_per_class: int = 50  # test posts per class: the first ones of lfd13.data.load_newsgroups
    max_length: int = 64  # tokens per post, [CLS] and [SEP] included
    # every method's recipe but the learning rate: Chapter 5's AdamW, warm-up, cosine decay, clipping; 20 steps of 8
    budget: Recipe = field(default_factory=lambda: replace(FULL_FINETUNE, steps=20, warmup=2))
    lora_rank: int = 8  # r of the LoRA in the search and the seed comparison
    lora_alpha: float = pt.LORA_ALPHA  # LoRA's alpha, fixed whatever the rank (Hu et al.)
    num_virtual_tokens: int = 20  # soft prompts of prompt tuning
    full_rates: tuple[float, ...] = (2e-5, 5e-5, 1e-4, 3e-4)  # the learning-rate grid of full fine-tuning
    lora_rates: tuple[float, ...] = (2e-3, 5e-3, 1e-2)  # ... of LoRA
    prompt_rates: tuple[float, ...] = (1e-1, 3e-1, 1.0, 3.0)  # ... of prompt tuning (text at its positions)
    head_rates: tuple[float, ...] = (1e-1, 3e-1, 1.0, 3.0)  # ... of the head alone (prompt tuning's control)
    # ... of prompt tuning at peft's shifted positions; empty: that control is not run
    shifted_rates: tuple[float, ...] = ()
    search_seed: int = 0  # the draw, head, adapter initialisation and batch order of the learning-rate search
    seeds: tuple[int, ...] = (0, 1, 2)  # draws of the seed comparison (the first one: energy and rank sweep)
    ranks: tuple[int, ...] = (1, 2, 8, 32)  # ranks of the sweep
    energy_top_k: int = 8  # singular directions the update energy is measured in

    @property
    def lora(self) -> str:
        """LoRA's name in the seed comparison, e.g. ``"LoRA r=8"``."""
        return f"LoRA r={self.lora_rank}"

    @property
    def grids(self) -> dict[str, tuple[float, ...]]:
        """Method -> its learning-rate grid; LoRA's name carries its alpha, e.g. ``"LoRA r=8, alpha=16"``."""
        grids = {FULL: self.full_rates, self.lora_search: self.lora_rates, PROMPT: self.prompt_rates,
                 HEAD: self.head_rates, PROMPT_SHIFTED: self.shifted_rates}
        return {method: grid for method, grid in grids.items() if grid}

    @property
    def lora_search(self) -> str:
        """LoRA's name in the learning-rate search."""
        return f"{self.lora}, alpha={self.lora_alpha:g}"

    @property
    def adapter(self) -> str:
        """The shipped adapter: the rank sweep's largest rank, alpha fixed."""
        return adapter_name(self.ranks)


def adapter_name(ranks: Iterable[int]) -> str:
    """The adapter checkpoint of a rank sweep over ``ranks``: its largest rank, e.g. ``"lora_newsgroups_r32"``."""
    return f"lora_newsgroups_r{max(ranks)}"


#: The shipped run, and a smoke run (a few posts, one step, one rate per grid, one rank).
SETTINGS = Settings()
TINY = Settings(n_per_class=2, n_val_per_class=1, n_test_per_class=2, max_length=12,
                budget=replace(FULL_FINETUNE, steps=1, warmup=0, batch_size=4), lora_rank=2,
                full_rates=(1e-4,), lora_rates=(5e-3,), prompt_rates=(3e-1,), head_rates=(3e-1,),
                shifted_rates=(3e-1,), seeds=(0,),
                ranks=(4,))


# --------------------------------------------------------------------------- choosing the learning rate


def chosen_recipe(scores: Mapping[float, float], settings: Settings = SETTINGS) -> Recipe:
    """``settings.budget`` at the rate :func:`best_learning_rate` picks from ``scores``."""
    return replace(settings.budget, lr=best_learning_rate(scores))


# --------------------------------------------------------------------------- the task


def training_posts(news: TextSplit, tokenizer: PreTrainedTokenizerBase, seed: int,
                   settings: Settings = SETTINGS) -> EncodedTexts:
    """The labelled posts of draw ``seed``: ``n_per_class`` per class, cut to ``max_length`` tokens."""
    (texts, labels), _ = news.train_validation(settings.n_per_class, settings.n_val_per_class, seed=seed)
    return tokenize_texts(tokenizer, texts, labels, max_length=settings.max_length)


def validation_posts(news: TextSplit, tokenizer: PreTrainedTokenizerBase, seed: int,
                     settings: Settings = SETTINGS) -> EncodedTexts:
    """The validation posts of draw ``seed`` (``n_val_per_class`` per class), disjoint from its labelled ones."""
    _, (texts, labels) = news.train_validation(settings.n_per_class, settings.n_val_per_class, seed=seed)
    return tokenize_texts(tokenizer, texts, labels, max_length=settings.max_length)


def test_posts(news: TextSplit, tokenizer: PreTrainedTokenizerBase, settings: Settings = SETTINGS) -> EncodedTexts:
    """The test posts of ``news`` (loaded with ``n_test_per_class``), cut to ``max_length`` tokens."""
    return tokenize_texts(tokenizer, news.test_texts, news.test_labels, max_length=settings.max_length)


def shuffled_labels(data: EncodedTexts, *, seed: int) -> EncodedTexts:
    """The same posts with their labels permuted: an update trained on them has the model's structure but no task."""
    perm = torch.randperm(len(data.labels), generator=make_generator(seed))
    return EncodedTexts(data.input_ids, data.attention_mask, data.labels[perm])


# --------------------------------------------------------------------------- training and scoring


@dataclass(frozen=True)
class MethodResult:
    """One row of the side-by-side comparison of adaptation methods."""

    method: str  # e.g. "LoRA r=8"
    accuracy: float  # test accuracy
    trainable: int  # parameters trained for the task
    total: int  # parameters of the model that is trained (or probed)
    seconds: float  # wall-clock training time

    @property
    def percent(self) -> float:
        """Trainable parameters as a percentage of ``total``."""
        return 100.0 * self.trainable / self.total


def fit_and_score(method: str, model: nn.Module, train: EncodedTexts, test: EncodedTexts, recipe: Recipe, *,
                  total: int, seed: int, device: torch.device | str | None = None) -> MethodResult:
    """Train ``model`` with ``recipe`` (:func:`lfd13.finetune.train_classifier`) and measure it on ``test``.

    Args:
        method: the row's name, e.g. ``"LoRA r=8"``.
        model: a sequence classifier whose trainable parameters are the method's.
        total: the parameter count the percentage refers to (the plain classifier's).
        seed: seeds the batch order and dropout.
    """
    history = train_classifier(model, train, recipe, seed=seed, device=device)
    accuracy = evaluate_accuracy(model, test, device=device)
    return MethodResult(method, accuracy, pt.trainable_parameters(model), total, history.seconds[-1])


def validation_sweep(make_model: Callable[[], nn.Module], train: EncodedTexts, validation: EncodedTexts,
                     recipe: Recipe, learning_rates: Iterable[float], *, seed: int = 0,
                     device: torch.device | str | None = None) -> dict[float, float]:
    """``{learning_rate: validation accuracy}`` of a fresh ``make_model()`` trained at each rate (the rest of ``recipe`` fixed)."""
    out = {}
    for lr in learning_rates:
        model = make_model()
        train_classifier(model, train, replace(recipe, lr=lr), seed=seed, device=device)
        out[lr] = evaluate_accuracy(model, validation, device=device)
    return out


def learning_rate_search(settings: Settings, news: TextSplit, tokenizer: PreTrainedTokenizerBase,
                         encoder: PreTrainedModel, *, device: Any = None) -> dict[str, dict[float, float]]:
    """Every method's :func:`validation_sweep` over its grid, on draw ``settings.search_seed``: method -> scores."""
    seed = settings.search_seed
    train = training_posts(news, tokenizer, seed, settings)
    validation = validation_posts(news, tokenizer, seed, settings)
    initial = build_sequence_classifier(encoder, num_labels=news.num_classes, seed=seed)

    def classifier() -> PreTrainedModel:
        return copy.deepcopy(initial)  # what build_sequence_classifier(..., seed=seed) gives, without re-initialising

    makers = method_makers(settings, classifier, seed)
    return {method: validation_sweep(makers[method], train, validation, settings.budget, grid, seed=seed, device=device)
            for method, grid in settings.grids.items()}


def method_makers(settings: Settings, classifier: Callable[[], PreTrainedModel],
                  seed: int) -> dict[str, Callable[[], nn.Module]]:
    """Method -> a function that builds it, ready to train, from a fresh ``classifier()``."""
    prompt = lambda text_positions: pt.apply_peft(  # noqa: E731
        classifier(), pt.prompt_tuning_config(settings.num_virtual_tokens), text_positions=text_positions, seed=seed)
    return {FULL: classifier,
            settings.lora_search: lambda: pt.apply_peft(
                classifier(), pt.lora_config(settings.lora_rank, alpha=settings.lora_alpha), seed=seed),
            PROMPT: lambda: prompt(True),
            HEAD: lambda: pt.freeze_all_but_head(classifier()),
            PROMPT_SHIFTED: lambda: prompt(False)}


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class Run:
    """One training run scored on the test posts."""

    accuracy: float  # test accuracy
    trainable: int  # parameters trained
    seconds: float  # wall-clock training time


@dataclass(frozen=True)
class Result:
    """What the experiment measured."""

    lr_search: dict[str, dict[float, float]]  # method -> {learning rate: validation accuracy}
    learning_rates: dict[str, float]  # method -> the rate the comparison trained with (best_learning_rate of lr_search)
    seed_comparison: dict[str, dict[int, Run]]  # FULL / Settings.lora / PROMPT / HEAD / PROMPT_SHIFTED -> seed -> run
    rank_sweep: dict[str, dict[int, Run]]  # ALPHA_FIXED / ALPHA_2R -> rank -> run (seed 0)
    update_energy: dict[str, dict[str, list[float]]]  # "task labels" / "shuffled labels" -> "query"/"value" -> per layer
    energy_top_k: int  # singular directions the energy counts
    n_test: int  # test posts
    seconds: float  # the seed comparison, the energy and the sweep (not the search)

    def to_dict(self) -> dict[str, Any]:
        runs = lambda table: {arm: {str(k): asdict(r) for k, r in rows.items()} for arm, rows in table.items()}  # noqa: E731
        return {"lr_search": {m: {repr(lr): acc for lr, acc in s.items()} for m, s in self.lr_search.items()},
                "learning_rates": self.learning_rates, "n_test": self.n_test, "seconds": self.seconds,
                "seed_comparison": runs(self.seed_comparison), "rank_sweep": runs(self.rank_sweep),
                "update_energy": {"top_k": self.energy_top_k, **self.update_energy}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        runs = lambda table: {arm: {int(k): Run(**r) for k, r in rows.items()} for arm, rows in table.items()}  # noqa: E731
        energy = dict(d["update_energy"])
        top_k = energy.pop("top_k")
        return cls(lr_search={m: {float(lr): acc for lr, acc in s.items()} for m, s in d["lr_search"].items()},
                   learning_rates=dict(d["learning_rates"]), seed_comparison=runs(d["seed_comparison"]),
                   rank_sweep=runs(d["rank_sweep"]), update_energy=energy, energy_top_k=top_k, n_test=d["n_test"],
                   seconds=d["seconds"])


def _run(settings: Settings, *, device: Any = None) -> tuple[Result, nn.Module]:
    """The measurements, and the sweep's largest-rank adapter with alpha fixed."""
    news = load_newsgroups(n_test_per_class=settings.n_test_per_class)
    tokenizer, encoder = load_text_encoder(settings.encoder, device=device)
    test, classes = test_posts(news, tokenizer, settings), news.num_classes
    initial: dict[int, PreTrainedModel] = {}  # seed -> the untrained classifier, built once, copied for every run

    def classifier(seed: int) -> PreTrainedModel:
        if seed not in initial:
            initial[seed] = build_sequence_classifier(encoder, num_labels=classes, seed=seed)
        return copy.deepcopy(initial[seed])

    lora = lambda seed, r, alpha: pt.apply_peft(classifier(seed), pt.lora_config(r, alpha=alpha), seed=seed)  # noqa: E731
    total = 0  # the plain classifier's parameters (the percentage's base), counted on the first one built

    lr_search = learning_rate_search(settings, news, tokenizer, encoder, device=device)
    rates = {method: best_learning_rate(scores) for method, scores in lr_search.items()}
    recipes = {method: replace(settings.budget, lr=rate) for method, rate in rates.items()}
    full_recipe, lora_recipe = recipes[FULL], recipes[settings.lora_search]

    start = time.perf_counter()

    def score(method: str, model: nn.Module, train: EncodedTexts, recipe: Recipe, seed: int) -> Run:
        row = fit_and_score(method, model, train, test, recipe, total=total, seed=seed, device=device)
        return Run(round(row.accuracy, 5), row.trainable, round(row.seconds, 1))

    prompt_arms = [method for method in (PROMPT, HEAD, PROMPT_SHIFTED) if method in settings.grids]
    seeds: dict[str, dict[int, Run]] = {FULL: {}, settings.lora: {}, **{method: {} for method in prompt_arms}}
    energy: dict[str, dict[str, list[float]]] = {}
    first = settings.seeds[0]
    for seed in settings.seeds:
        train = training_posts(news, tokenizer, seed, settings)
        full = classifier(seed)
        total = full.num_parameters()
        seeds[FULL][seed] = score(FULL, full, train, full_recipe, seed)
        if seed == first:  # the update's low-rank share, with a shuffled-label control
            before, null = classifier(seed), classifier(seed)
            train_classifier(null, shuffled_labels(train, seed=seed), full_recipe, seed=seed, device=device)
            energy = {"task labels": pt.update_energy(before, full, k=settings.energy_top_k),
                      "shuffled labels": pt.update_energy(before, null, k=settings.energy_top_k)}
            del before, null
        model = lora(seed, settings.lora_rank, settings.lora_alpha)
        seeds[settings.lora][seed] = score(settings.lora, model, train, lora_recipe, seed)
        makers = method_makers(settings, lambda: classifier(seed), seed)
        for method in prompt_arms:
            seeds[method][seed] = score(method, makers[method](), train, recipes[method], seed)
    train, kept = training_posts(news, tokenizer, first, settings), None
    sweep: dict[str, dict[int, Run]] = {ALPHA_FIXED: {}, ALPHA_2R: {}}
    for r in settings.ranks:
        for arm, alpha in ((ALPHA_FIXED, settings.lora_alpha), (ALPHA_2R, 2.0 * r)):
            if (r, alpha) == (settings.lora_rank, settings.lora_alpha):
                sweep[arm][r] = seeds[settings.lora][first]  # the same configuration, the same run
                continue
            model = lora(first, r, alpha)
            sweep[arm][r] = score(f"LoRA r={r}, {arm}", model, train, lora_recipe, first)
            if (r, arm) == (max(settings.ranks), ALPHA_FIXED):
                kept = model
    if kept is None:
        raise ValueError("the sweep's largest rank is the seed comparison's LoRA: add a larger rank to Settings.ranks")
    result = Result(lr_search=lr_search, learning_rates=rates, seed_comparison=seeds, rank_sweep=sweep,
                    update_energy=energy, energy_top_k=settings.energy_top_k, n_test=len(test.labels),
                    seconds=round(time.perf_counter() - start, 1))
    return result, kept


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Search the learning rates, then run the seed comparison, the update energy and the rank sweep."""
    return _run(settings, device=device)[0]


def load(directory: Path | str | None = None) -> Result:
    """What the shipped run measured, from ``lfd13/results/peft_comparison.json``.

    The learning rates the comparison trained with must be those the stored validation scores select.
    """
    result = Result.from_dict(shipped.load_result(NAME, directory=directory).result)
    for method, scores in result.lr_search.items():
        if method in result.learning_rates and result.learning_rates[method] != best_learning_rate(scores):
            raise ValueError(f"{NAME}: {method} trained at {result.learning_rates[method]:g}, but its validation "
                             f"scores select {best_learning_rate(scores):g}; recreate it with `{command(ROW)}`")
    return result


def files(settings: Settings) -> tuple[str, ...]:
    """The files :func:`write` creates: the adapter (weights and JSON) and the result."""
    return (f"{settings.adapter}.safetensors", f"{settings.adapter}.json", f"{NAME}.json")


def write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None,
          progress: bool | None = None) -> None:
    """Measure; save the result in ``results`` and the sweep's largest-rank adapter in ``checkpoints``."""
    result, kept = _run(settings, device=device)
    shipped.save_result(NAME, command=command(ROW), settings=asdict(settings), result=result.to_dict(),
                        directory=results)
    own = result.rank_sweep[ALPHA_FIXED][max(settings.ranks)]  # the adapter's own training run
    pt.save_adapter(kept.cpu(), settings.adapter, seed=settings.seeds[0], base=settings.encoder, command=command(ROW),
                    recipe=asdict(replace(settings.budget, lr=result.learning_rates[settings.lora_search])),
                    result={"seconds": own.seconds, "trainable": own.trainable, "torch": torch.__version__},
                    directory=checkpoints)


def check(*, checkpoints: Path, results: Path) -> None:
    """Read the result and the adapter back (hashes checked)."""
    load(results)
    ranks = shipped.load_result(NAME, directory=results).settings["ranks"]
    pt.load_adapter(adapter_name(ranks), directory=checkpoints, device="cpu")


#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (
    Entry(name=ROW, doc="Chapter 6: learning rates on validation, LoRA vs full fine-tuning over seeds, a rank sweep "
          "(results/peft_comparison.json) and the rank-32 adapter (checkpoints/lora_newsgroups_r32)",
          settings=SETTINGS, tiny=TINY, files=files, write=write, check=check),
)
