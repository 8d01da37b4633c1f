"""Supervised fine-tuning of a pretrained text encoder for classification.

The lecture's recipe for using a foundation model on a downstream task (Devlin et
al. 2018, §3.2): put a small task head on the pretrained encoder and train on the
labelled examples, updating all weights (*full fine-tuning*), only the top layers
(*freezing the bottom k layers*), or nothing but a linear classifier on frozen
features (*linear probe*). Training the same architecture from a random
initialisation measures what pre-training is worth. Yosinski et al. (2014) asked
which layers transfer; parameter-efficient methods (Chapter 6, via peft) reuse
every helper here — the data, the model, the step and the evaluation.

Shapes: B batch, L tokens (≤ ``max_length``), D hidden width, C classes.

Example::

    tokenizer, model = load_classifier(num_labels=4, seed=0)
    train = tokenize_texts(tokenizer, texts, labels, max_length=64)
    history = train_classifier(model, train, FULL_FINETUNE, seed=0)
    acc = evaluate_accuracy(model, test)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lfd13 import shipped
from lfd13.data import DigitsSplit, labelled_subset
from lfd13.evaluation import TrainTestResult, train_and_test
from lfd13.pretrained import DEFAULT_TEXT_ENCODER, load_text_encoder, mean_pool
from lfd13.runtime import get_device, seeded
from lfd13.sampling import split_indices
from lfd13.train import History, Recipe, train, trim_padding
from lfd13.train import classification_step

# --------------------------------------------------------------------------- data


class EncodedTexts(NamedTuple):
    """A tokenised, labelled text data set; a tuple of tensors, so :func:`lfd13.train.fit` can shuffle it.

    Attributes:
        input_ids: [N, L] token ids, right-padded with the tokenizer's pad id.
        attention_mask: [N, L] 1 for real tokens, 0 for padding.
        labels: [N] long class ids.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    labels: torch.Tensor | Sequence[int],
    *,
    max_length: int = 64,
) -> EncodedTexts:
    """Tokenise ``texts`` ([CLS] text [SEP]), cut to ``max_length`` tokens and pad to the longest.

    Args:
        tokenizer: the encoder's tokenizer.
        texts: N strings.
        labels: [N] class ids.
        max_length: tokens per text, special tokens included.

    Returns:
        :class:`EncodedTexts` with [N, L] ids and mask, L ≤ ``max_length``, and [N] labels.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string; wrap it in a list")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(texts) != len(labels):
        raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3 ([CLS], a token, [SEP]), got {max_length}")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding="longest", return_tensors="pt")
    return EncodedTexts(enc["input_ids"], enc["attention_mask"], labels)


# --------------------------------------------------------------------------- models


def build_sequence_classifier(encoder: PreTrainedModel, *, num_labels: int, pretrained: bool = True, seed: int = 0) -> PreTrainedModel:
    """The encoder's architecture with a classification head (``AutoModelForSequenceClassification``).

    For BERT-family encoders the head is the library's: the pooler (dense + tanh on the
    [CLS] vector), dropout and a linear layer to C logits.

    Args:
        encoder: a pretrained ``AutoModel`` (e.g. from :func:`lfd13.pretrained.load_text_encoder`).
        num_labels: C, the number of classes.
        pretrained: copy the encoder's weights (True) or keep the random initialisation of the
            same architecture (False: "training from scratch").
        seed: seeds the initialisation of the head (and of everything, when not pretrained).

    Returns:
        A new model on the encoder's device, in eval mode; the encoder itself is not modified.
    """
    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}")
    config = copy.deepcopy(encoder.config)
    config.num_labels = num_labels
    config.problem_type = "single_label_classification"
    config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    with seeded(seed):
        model = AutoModelForSequenceClassification.from_config(config)
    if pretrained:
        missing, unexpected = model.base_model.load_state_dict(encoder.state_dict(), strict=False)
        real_missing = [k for k in missing if not k.endswith("position_ids")]
        if real_missing or unexpected:
            raise ValueError(
                f"the encoder's weights do not fit {type(model).__name__}: missing {real_missing[:5]}, "
                f"unexpected {unexpected[:5]}; pass an AutoModel of the same architecture"
            )
    device = next(encoder.parameters()).device
    return model.to(device).eval()


def load_classifier(
    num_labels: int,
    *,
    name: str = DEFAULT_TEXT_ENCODER,
    pretrained: bool = True,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and sequence classifier for ``name`` (resolved offline first, see :mod:`lfd13.pretrained`).

    Returns:
        ``(tokenizer, model)``; see :func:`build_sequence_classifier`.
    """
    tokenizer, encoder = load_text_encoder(name, device=device)
    return tokenizer, build_sequence_classifier(encoder, num_labels=num_labels, pretrained=pretrained, seed=seed)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of layers, bottom first: ``model.blocks`` if it has one (e.g. :class:`SmallCNN`),
    else a BERT-family model's ``base_model.encoder.layer``."""
    if isinstance(getattr(model, "blocks", None), nn.ModuleList):
        return model.blocks
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(
            f"{type(model).__name__} has no base_model.encoder.layer; freeze_bottom_layers supports BERT-family "
            "encoders (BERT, MiniLM, RoBERTa…)"
        )
    return layers


def freeze_bottom_layers(model: nn.Module, k: int) -> nn.Module:
    """Freeze the embeddings and the bottom ``k`` layers (see :func:`encoder_layers`); train the rest.

    ``k = 0`` is full fine-tuning; ``k`` equal to the number of layers leaves only the head (for
    BERT: the pooler and the classifier) trainable. Returns ``model`` (modified in place).
    """
    layers = encoder_layers(model)
    if not 0 <= k <= len(layers):
        raise ValueError(f"k must be between 0 and {len(layers)} (the model's layers), got {k}")
    for p in model.parameters():
        p.requires_grad_(True)
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    if k > 0 and isinstance(embeddings, nn.Module):
        for p in embeddings.parameters():
            p.requires_grad_(False)
    for layer in layers[:k]:
        for p in layer.parameters():
            p.requires_grad_(False)
    return model


class SmallCNN(nn.Module):
    """A small CNN for 8×8 digits, for the image side of "which layers transfer".

    Three conv blocks (``blocks``, bottom first) then global average pooling and a
    linear head, so :func:`freeze_bottom_layers` freezes the first k blocks.
    """

    def __init__(self, *, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU()),  # (B, w, 8, 8)
                nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),  # (B, 2w, 4, 4)
                nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU()),  # (B, 2w, 4, 4)
            ]
        )
        self.head = nn.Linear(2 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 1, H, W] images -> [B, 2w] pooled features."""
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 1, H, W] images -> [B, C] logits."""
        return self.head(self.features(x))


def freeze_top_layers(model: nn.Module, k: int) -> nn.Module:
    """Freeze the top ``k`` layers (see :func:`encoder_layers`) and train the layers below them.

    The mirror image of :func:`freeze_bottom_layers`: the copied, fixed layers are the last
    ones, as the lecture's slide recommends for speech. The head always stays trainable.
    Returns ``model`` (modified in place).
    """
    layers = encoder_layers(model)
    if not 0 <= k <= len(layers):
        raise ValueError(f"k must be between 0 and {len(layers)} (the model's layers), got {k}")
    for p in model.parameters():
        p.requires_grad_(True)
    for layer in layers[len(layers) - k :]:
        for p in layer.parameters():
            p.requires_grad_(False)
    return model


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameters of a model."""

    trainable: int  # parameters with requires_grad
    total: int  # all parameters

    @property
    def fraction(self) -> float:
        return self.trainable / self.total

    def __str__(self) -> str:
        return f"{self.trainable:,} of {self.total:,} trainable ({100 * self.fraction:.2f} %)"


def parameter_count(model: PreTrainedModel) -> ParameterCount:
    """Trainable and total parameters of a transformers model, as its ``num_parameters`` counts them.

    (Counting parameters by hand is part of the LoRA assignment, so the book uses the library's count.)
    """
    if not hasattr(model, "num_parameters"):
        raise TypeError(f"expected a transformers model with .num_parameters(), got {type(model).__name__}")
    return ParameterCount(model.num_parameters(only_trainable=True), model.num_parameters())


# --------------------------------------------------------------------------- training


def sequence_classification_step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """One step for :func:`lfd13.train.fit`: cross-entropy of the model's logits.

    Args:
        model: any transformers (or peft) sequence classifier: ``model(input_ids=, attention_mask=,
            labels=)`` returns ``.loss`` and ``.logits`` [B, C].
        batch: ``(input_ids [B, L], attention_mask [B, L], labels [B])``.
    """
    input_ids, attention_mask, labels = batch
    attention_mask, input_ids = trim_padding(attention_mask, input_ids)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    return {"loss": out.loss, "acc": (out.logits.argmax(-1) == labels).float().mean()}


#: Presets (AdamW, warm-up, cosine; see :class:`lfd13.train.Recipe`).
FULL_FINETUNE = Recipe(steps=60, lr=1e-4, batch_size=8, weight_decay=0.01, warmup=6, max_grad_norm=1.0)
FROM_SCRATCH = replace(FULL_FINETUNE, lr=3e-4)
TINY = Recipe(steps=3, lr=1e-4, batch_size=4, weight_decay=0.01, warmup=1, max_grad_norm=1.0)  # tests


def train_classifier(
    model: nn.Module,
    data: EncodedTexts,
    recipe: Recipe = FULL_FINETUNE,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    evaluate: Any = None,
    eval_every: int | None = None,
) -> History:
    """Fine-tune the trainable parameters of ``model`` on ``data`` with :func:`lfd13.train.train`.

    Only parameters with ``requires_grad`` reach the optimiser, so the same call trains a
    fully unfrozen model, one with frozen bottom layers, or a peft model (LoRA, prompt tuning).

    Args:
        model: a sequence classifier (see :func:`sequence_classification_step`).
        data: the labelled training set.
        recipe: optimisation settings.
        seed: seeds the shuffling and dropout.
        device: where to train (default :func:`lfd13.get_device`).
        evaluate, eval_every: passed to :func:`lfd13.train.fit`.

    Returns:
        The training :class:`lfd13.train.History` (``"loss"``, ``"acc"`` per step).
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters; unfreeze some (freeze_bottom_layers(model, 0))")
    return train(model, tuple(data), sequence_classification_step, recipe, seed=seed, device=device, evaluate=evaluate,
                 eval_every=eval_every, desc="fine-tune")


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_logits(
    model: nn.Module, data: EncodedTexts, *, batch_size: int = 100, device: torch.device | str | None = None
) -> torch.Tensor:
    """Logits of a sequence classifier on every text, in eval mode.

    Returns:
        [N, C] float logits on the CPU.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device).eval()
    out = []
    for i in range(0, len(data.labels), batch_size):
        mask, ids = trim_padding(data.attention_mask[i : i + batch_size], data.input_ids[i : i + batch_size])
        out.append(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu())
    return torch.cat(out)


def evaluate_accuracy(
    model: nn.Module, data: EncodedTexts, *, batch_size: int = 100, device: torch.device | str | None = None
) -> float:
    """Accuracy of a sequence classifier on ``data``."""
    logits = predict_logits(model, data, batch_size=batch_size, device=device)
    return float((logits.argmax(-1) == data.labels).float().mean())


@torch.no_grad()
def mean_pooled_features(
    model: nn.Module,
    data: EncodedTexts,
    *,
    layer: int = -1,
    batch_size: int = 100,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sentence features for a linear probe: token vectors of one layer, averaged over real tokens.

    Mean pooling of the last layer is how all-MiniLM-L6-v2 was trained to embed sentences.

    Args:
        model: an encoder (``AutoModel``) or a sequence classifier (its ``base_model`` is used).
        data: the texts (labels are ignored).
        layer: which hidden state: 0 = embeddings, -1 = last layer.
        batch_size: texts per forward pass.

    Returns:
        [N, D] float features on the CPU.
    """
    device = torch.device(device) if device is not None else get_device()
    base = getattr(model, "base_model", model).to(device).eval()
    out = []
    for i in range(0, len(data.input_ids), batch_size):
        mask, ids = trim_padding(data.attention_mask[i : i + batch_size], data.input_ids[i : i + batch_size])
        ids, mask = ids.to(device), mask.to(device)
        hidden = base(input_ids=ids, attention_mask=mask, output_hidden_states=layer != -1)
        h = hidden.last_hidden_state if layer == -1 else hidden.hidden_states[layer]  # (B, L, D)
        out.append(mean_pool(h, mask).float().cpu())
    return torch.cat(out)


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


# --------------------------------------------------------------------------- which layers transfer: images

#: Chapter 5a's image experiment (Yosinski et al. 2014 on digits): the width of the CNN's first
#: block, the labels per class of a target task, the source network's recipe (digits 0-4, all their
#: labels) and every target network's.
TRANSFER_WIDTH, TRANSFER_N_LABELS = 16, 10
SOURCE_RECIPE = Recipe(steps=300, lr=3e-3)
TARGET_RECIPE = Recipe(steps=150, lr=3e-3, batch_size=50)

#: Which blocks of the source network a target network copies (and freezes), by name.
TRANSFER_VARIANTS: dict[str, tuple[int, ...]] = {
    "none (scratch)": (), "first 2": (0, 1), "last 2": (1, 2), "all (frozen)": (0, 1, 2),
}

#: The seeds of the target tasks; the control (the unchanged task) gets more, its effects being smaller.
TRANSFER_SEEDS, TRANSFER_CONTROL_SEEDS = tuple(range(5)), tuple(range(10))

#: Target task -> (the variants run on it, the seeds).
TRANSFER_RUNS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "new labels": (tuple(TRANSFER_VARIANTS), TRANSFER_SEEDS),
    "inverted inputs": (tuple(TRANSFER_VARIANTS), TRANSFER_SEEDS),
    "same task": (("none (scratch)", "first 2", "last 2"), TRANSFER_CONTROL_SEEDS),
}

#: The shipped source network, whose JSON records every run of :data:`TRANSFER_RUNS`.
SOURCE_CNN = "transfer_source_cnn"

#: The command that trains the source network and records the runs.
TRANSFER_RECORD = "python -m lfd13.pretrain transfer"

Pair = tuple[torch.Tensor, torch.Tensor]


def transfer_tasks(digits: DigitsSplit) -> dict[str, tuple[Pair, Pair]]:
    """The target tasks, each as (labelled pool ``(x, y)``, test set ``(x, y)``) with labels 0-4.

    - ``"new labels"``: the digits 5-9, a change at the output;
    - ``"inverted inputs"``: the digits 0-4 with ``x -> 1 - x``, a change at the input;
    - ``"same task"``: the digits 0-4 themselves, the control.

    ``digits``: :func:`lfd13.data.load_digits` at its native 8×8.
    """
    src, src_test = digits.y_train < 5, digits.y_test < 5
    return {
        "new labels": ((digits.x_train[~src], digits.y_train[~src] - 5), (digits.x_test[~src_test], digits.y_test[~src_test] - 5)),
        "inverted inputs": ((1 - digits.x_train[src], digits.y_train[src]), (1 - digits.x_test[src_test], digits.y_test[src_test])),
        "same task": ((digits.x_train[src], digits.y_train[src]), (digits.x_test[src_test], digits.y_test[src_test])),
    }


def train_source_cnn(digits: DigitsSplit, *, seed: int = 0, device: torch.device | str | None = None) -> SmallCNN:
    """The source network: a :class:`SmallCNN` trained on the digits 0-4 with all their labels (:data:`SOURCE_RECIPE`)."""
    src = digits.y_train < 5
    with seeded(seed):
        model = SmallCNN(num_classes=5, width=TRANSFER_WIDTH)
    train(model, (digits.x_train[src], digits.y_train[src]), classification_step, SOURCE_RECIPE, seed=seed, device=device)
    return model.eval()


def transfer_accuracy(
    source: SmallCNN,
    tasks: dict[str, tuple[Pair, Pair]],
    task: str,
    copy_blocks: Sequence[int],
    seed: int,
    *,
    edit: Callable[[SmallCNN], None] | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Test accuracy on ``task`` of a new :class:`SmallCNN` whose blocks ``copy_blocks`` come from ``source``, frozen.

    ``seed`` initialises the new blocks and the head and draws :data:`TRANSFER_N_LABELS` labelled
    examples per class from the task's pool; the network trains with :data:`TARGET_RECIPE`.
    ``edit(model)``, if given, may change the copied weights before training.
    """
    (x, y), test_set = tasks[task]
    with seeded(seed):
        model = SmallCNN(num_classes=5, width=TRANSFER_WIDTH)
    for i in copy_blocks:
        model.blocks[i].load_state_dict(source.blocks[i].state_dict())
        model.blocks[i].requires_grad_(False)
    if edit is not None:
        edit(model)
    return train_and_test(model, labelled_subset(x, y, TRANSFER_N_LABELS, seed=seed), test_set, TARGET_RECIPE, seed=seed,
                          device=device).accuracy


def save_source_cnn(
    model: SmallCNN, *, result: dict[str, Any], name: str = SOURCE_CNN, directory: Path | str = shipped.CHECKPOINT_DIR
) -> shipped.CheckpointInfo:
    """Save the source network as a checkpoint, with what the runs on it measured in ``result``."""
    width = model.blocks[0][0].out_channels
    return shipped.save(name, model.state_dict(), kind="cnn", command=TRANSFER_RECORD,
                        config={"num_classes": model.head.out_features, "width": width},
                        recipe={"source": asdict(SOURCE_RECIPE), "target": asdict(TARGET_RECIPE)}, result=result,
                        directory=directory)


def load_source_cnn(
    name_or_path: str | Path = SOURCE_CNN, *, device: torch.device | str | None = None, directory: Path | str | None = None
) -> tuple[SmallCNN, shipped.CheckpointInfo]:
    """Load the shipped source network after checking its sha256; ``info.result`` holds the recorded runs."""
    state, info = shipped.load(name_or_path, kind="cnn", command=TRANSFER_RECORD, directory=directory)
    model = shipped.load_weights(SmallCNN(**info.config), state, info)
    return model.to(device or "cpu").eval(), info


# --------------------------------------------------------------------------- Chapter 5's comparison

#: Chapter 5's transformer runs: labelled posts per class, label draws, validation posts per class
#: (from the train pool, never among the labelled ones), the validation interval, the posts' length.
COMPARISON_BUDGETS, COMPARISON_SEEDS = (16, 64), (0, 1)
COMPARISON_N_VAL, COMPARISON_EVAL_EVERY, COMPARISON_MAX_TOKENS = 20, 8, 64

#: Pretrained (True) or random (False) initialisation -> its recipe: Chapter 5's preset, at most 32
#: steps pretrained; a random start gets twice the steps and a larger learning rate.
COMPARISON_RECIPES: dict[bool, Recipe] = {True: replace(FULL_FINETUNE, steps=32, warmup=3),
                                          False: replace(FULL_FINETUNE, steps=64, warmup=6, lr=5e-4)}

#: The record of every run (a JSON file beside the checkpoints, no weights) and its command.
COMPARISON = "finetune_newsgroups"
COMPARISON_RECORD = "python -m lfd13.pretrain finetune-record"

#: The runs recorded: ``(labelled posts per class, seed, pretrained)``; from scratch runs once, at
#: the larger budget, since it costs twice as much.
COMPARISON_RUNS: tuple[tuple[int, int, bool], ...] = (
    *((n, s, True) for n in COMPARISON_BUDGETS for s in COMPARISON_SEEDS),
    (max(COMPARISON_BUDGETS), COMPARISON_SEEDS[0], False),
)


def comparison_draw(labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``n`` labelled posts per class and of the seed's validation posts (the same for every ``n``)."""
    train_idx, _ = split_indices(labels, n, COMPARISON_N_VAL, seed=seed)
    _, val_idx = split_indices(labels, max(COMPARISON_BUDGETS), COMPARISON_N_VAL, seed=seed)
    return train_idx, val_idx


def early_stopped_run(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: Any,
    test: EncodedTexts,
    n: int,
    seed: int,
    *,
    pretrained: bool,
    device: torch.device | str | None = None,
) -> TrainTestResult:
    """One of Chapter 5's runs: train on ``n`` posts per class, validate every
    :data:`COMPARISON_EVAL_EVERY` steps, test the best weights (:func:`lfd13.evaluation.train_and_test`).

    Args:
        data: :func:`lfd13.data.load_newsgroups`'s split (``train_texts``, ``train_labels``, ``num_classes``).
        test: the encoded test posts.

    Returns:
        The :class:`lfd13.evaluation.TrainTestResult`.
    """
    def encode(idx: torch.Tensor) -> EncodedTexts:
        return tokenize_texts(tokenizer, [data.train_texts[i] for i in idx.tolist()], data.train_labels[idx],
                            max_length=COMPARISON_MAX_TOKENS)

    train_idx, val_idx = comparison_draw(data.train_labels, n, seed)
    model = build_sequence_classifier(encoder, num_labels=data.num_classes, pretrained=pretrained, seed=seed)
    return train_and_test(model, encode(train_idx), test, COMPARISON_RECIPES[pretrained], seed=seed, step=sequence_classification_step,
                          score=evaluate_accuracy, device=device, validation=encode(val_idx), eval_every=COMPARISON_EVAL_EVERY)


def run_key(n: int, seed: int, pretrained: bool) -> str:
    """The record's key of a run: ``"64/class, seed 0, pretrained"``."""
    return f"{n}/class, seed {seed}, {'pretrained' if pretrained else 'from scratch'}"


def load_comparison(
    name_or_path: str | Path = COMPARISON, *, directory: Path | str | None = None
) -> tuple[dict[tuple[int, int, bool], TrainTestResult], shipped.CheckpointInfo]:
    """Chapter 5's recorded runs, as ``(n, seed, pretrained) -> TrainTestResult`` (:meth:`~lfd13.evaluation.TrainTestResult.from_record`)."""
    info = shipped.load_record(name_or_path, command=COMPARISON_RECORD, directory=directory)
    runs = {}
    for key in COMPARISON_RUNS:
        row = info.result["runs"].get(run_key(*key))
        if row is None:
            raise ValueError(f"the record {info.name!r} has no run {run_key(*key)!r}; re-create it with `{COMPARISON_RECORD}`")
        runs[key] = TrainTestResult.from_record(row)
    return runs, info
