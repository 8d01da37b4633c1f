"""Supervised fine-tuning of a pretrained text encoder for classification, and which layers to train.

The lecture's recipe for using a foundation model on a downstream task (Devlin et
al. 2018, §3.2): put a small task head on the pretrained encoder and train on the
labelled examples, updating all weights (*full fine-tuning*), only the top layers
(*freezing the bottom k layers*, :func:`freeze_bottom_layers`), or nothing but a linear
classifier on frozen features (*linear probe* on :func:`mean_pooled_features`). Training
the same architecture from a random initialisation (``build_sequence_classifier(...,
pretrained=False)``) measures what pre-training is worth; TF-IDF with logistic regression
(:func:`tfidf_baseline`) is the classical baseline without any pre-training. Yosinski et
al. (2014) asked which layers transfer: :func:`freeze_bottom_layers` and
:func:`freeze_top_layers` freeze either end of any stack of layers. Parameter-efficient
methods (LoRA, prompt tuning, via peft in :mod:`lfd13.peft_tools`) reuse the data, the
model, the step and the evaluation defined here.

Shapes: B batch, L tokens (≤ ``max_length``), D hidden width, C classes.

Example::

    tokenizer, model = load_classifier(num_labels=4, seed=0)
    train = tokenize_texts(tokenizer, texts, labels, max_length=64)
    history = train_classifier(model, train, FULL_FINETUNE, seed=0)
    acc = evaluate_accuracy(model, test)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lfd13.pretrained import DEFAULT_TEXT_ENCODER, load_text_encoder, mean_pool
from lfd13.runtime import get_device, seeded
from lfd13.train import History, Recipe, train, trim_padding

__all__ = [
    "EncodedTexts",
    "tokenize_texts",
    "build_sequence_classifier",
    "MeanPooledClassifier",
    "load_classifier",
    "encoder_layers",
    "freeze_bottom_layers",
    "freeze_top_layers",
    "ParameterCount",
    "parameter_count",
    "sequence_classification_step",
    "FULL_FINETUNE",
    "TINY",
    "train_classifier",
    "predict_logits",
    "evaluate_accuracy",
    "mean_pooled_features",
    "tfidf_baseline",
]

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


class MeanPooledClassifier(nn.Module):
    """An encoder with a linear head on the mean of its last layer's token vectors.

    That mean is how sentence-transformers encoders such as all-MiniLM-L6-v2 were trained to
    embed a text, so fine-tuning this model starts from the features a linear probe reads
    (:func:`mean_pooled_features`). The encoder is kept, less a [CLS] pooler it may have (it is
    removed). Called like a transformers classifier:
    ``model(input_ids=, attention_mask=, labels=)`` returns ``.loss`` (when labels are given)
    and ``.logits`` [B, C].
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # BERT's pooler reads [CLS], which this head does not: it would train nothing
        self.base_model = encoder  # the encoder: freeze_bottom_layers and mean_pooled_features find it here
        self.config = encoder.config
        self.dropout = nn.Dropout(encoder.config.hidden_dropout_prob)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=encoder.config.initializer_range)  # as BERT's own head
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        h = self.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        logits = self.classifier(self.dropout(mean_pool(h, attention_mask)))  # (B, C)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Parameters (trainable only, if asked), as a transformers model counts them."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)


def build_sequence_classifier(
    encoder: PreTrainedModel, *, num_labels: int, pretrained: bool = True, seed: int = 0, pooling: str = "cls"
) -> PreTrainedModel:
    """The encoder's architecture with a classification head.

    With ``pooling="cls"`` (the default) the head is the library's
    (``AutoModelForSequenceClassification``; for BERT-family encoders the pooler, dense + tanh
    on the [CLS] vector, dropout and a linear layer to C logits). With ``pooling="mean"`` it is
    a :class:`MeanPooledClassifier`: dropout and a linear layer on the mean of the token vectors.

    Args:
        encoder: a pretrained ``AutoModel`` (e.g. from :func:`lfd13.pretrained.load_text_encoder`).
        num_labels: C, the number of classes.
        pretrained: copy the encoder's weights (True) or keep the random initialisation of the
            same architecture (False: "training from scratch").
        seed: seeds the initialisation of the head (and of everything, when not pretrained).
        pooling: ``"cls"`` or ``"mean"``, what the head reads.

    Returns:
        A new model on the encoder's device, in eval mode; the encoder itself is not modified.
    """
    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}")
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    if pooling == "mean":
        with seeded(seed):
            base = copy.deepcopy(encoder) if pretrained else AutoModel.from_config(copy.deepcopy(encoder.config))
            model = MeanPooledClassifier(base, num_labels)
        return model.to(next(encoder.parameters()).device).eval()
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
    """The stack of layers, bottom first: ``model.blocks`` if it has one (e.g. a CNN's convolution
    blocks), else a BERT-family model's ``base_model.encoder.layer``."""
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


#: The default fine-tuning recipe (AdamW, warm-up, cosine, weight decay, clipping; see :class:`lfd13.train.Recipe`):
#: a small learning rate, so that the pretrained weights move little, and batches of 8 texts.
FULL_FINETUNE = Recipe(steps=60, lr=1e-4, batch_size=8, weight_decay=0.01, warmup=6, max_grad_norm=1.0)

#: The same recipe for three steps of four texts: smoke runs and tests.
TINY = Recipe(steps=3, lr=1e-4, batch_size=4, weight_decay=0.01, warmup=1, max_grad_norm=1.0)


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
