"""Parameter-efficient fine-tuning with peft: LoRA and prompt tuning on a sequence classifier.

Full fine-tuning updates every weight of a foundation model; parameter-efficient
fine-tuning (PEFT; Ding et al. 2023) freezes them and trains a tiny number of new ones.

- **LoRA** (Hu et al. 2021) adds a low-rank update to chosen weight matrices,
  ``W x + (alpha / r) · B A x`` with ``A`` [r, D_in] random and ``B`` [D_out, r] zero at the
  start (so training starts from the pretrained model), on the hypothesis that the
  update a task needs has a low *intrinsic rank*. Hu et al. keep ``alpha`` fixed while
  they vary ``r``; rsLoRA (Kalajdzievski 2023) scales by ``alpha / sqrt(r)`` instead.
  After training, ``B A`` can be added into ``W``: the merged model is as fast as the original.
- **Prompt tuning** (Lester et al. 2021) prepends ``n`` trainable *soft-prompt* vectors to
  the input embeddings and trains nothing else (on a classifier: and its head, so
  :func:`freeze_all_but_head` gives the control without a prompt).

Both come from the ``peft`` library (``LoraConfig``, ``PromptTuningConfig``, ``get_peft_model``,
``merge_and_unload``); lfd13 implements no LoRA layer of its own. This module adds what peft
does not do: configs for a sequence classifier (:func:`lora_config`, :func:`prompt_tuning_config`);
:func:`apply_peft`, which for prompt tuning on a BERT classifier points the pooler back at
``[CLS]`` (peft puts the virtual tokens *before* it, so BERT's pooler, which reads position 0,
would read a soft prompt: :class:`PoolerAfterPrompt`); the head-only control
(:func:`freeze_all_but_head`); what training costs (:func:`trainable_parameters`,
:func:`training_memory`); a check that merging keeps the outputs (:func:`merge_check`); the rank
of weight updates (:func:`lora_delta_weights`, :func:`weight_updates`, :func:`energy_in_top_k`,
:func:`update_energy`); and an adapter shipped as a checkpoint (:func:`save_adapter`,
:func:`load_adapter`, through :mod:`lfd13.shipped`).

Parameter counts come from the libraries: ``PeftModel.get_nb_trainable_parameters()`` and
transformers' ``model.num_parameters(only_trainable=...)``.

Shapes: B batch, L tokens, D hidden width, C classes, n virtual tokens, r LoRA rank.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import (LoraConfig, PeftConfig, PeftModel, PromptTuningConfig, get_peft_model, get_peft_model_state_dict,
                  set_peft_model_state_dict)
from torch import nn
from transformers import PreTrainedModel

from lfd13 import shipped
from lfd13.finetune import EncodedTexts, build_sequence_classifier, predict_logits
from lfd13.pretrained import DEFAULT_TEXT_ENCODER, load_text_encoder
from lfd13.runtime import seeded

__all__ = [
    "LORA_ALPHA", "lora_config", "prompt_tuning_config", "PoolerAfterPrompt", "PositionsAfterPrompt", "apply_peft", "freeze_all_but_head",
    "trainable_parameters", "MergeCheck", "merge_check",
    "lora_delta_weights", "weight_updates", "energy_in_top_k", "update_energy", "LoraAdapter", "save_adapter",
    "load_adapter",
]

#: LoRA's default alpha: the update is ``(alpha / r) · B A`` with alpha kept at 16 whatever the rank.
LORA_ALPHA = 16.0


# --------------------------------------------------------------------------- applying peft


class PoolerAfterPrompt(nn.Module):
    """BERT's pooler, reading ``[CLS]`` after ``offset`` prepended virtual tokens.

    ``BertPooler`` takes the hidden state at position 0. With prompt tuning the encoder's
    input is ``[P_1 … P_n, [CLS], x_1, …]``, so position 0 is a soft prompt; this wrapper
    hands the pooler the sequence from position ``offset = n`` on, whose first token is
    ``[CLS]``. The pooler's weights are the pretrained ones, unchanged (and frozen by peft).
    """

    def __init__(self, pooler: nn.Module, offset: int) -> None:
        super().__init__()
        if offset < 0:
            raise ValueError(f"offset must be >= 0 (the number of virtual tokens), got {offset}")
        self.pooler = pooler
        self.offset = offset

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states [B, n + L, D] -> pooled [B, D] from position ``offset`` ([CLS])."""
        return self.pooler(hidden_states[:, self.offset :])

    def extra_repr(self) -> str:
        return f"offset={self.offset}"


class PositionsAfterPrompt(nn.Module):
    """BERT's embeddings, giving the text its pre-training positions after ``n`` prepended virtual tokens.

    peft 0.21's prompt tuning for sequence classification prepends the soft prompts to the token
    embeddings and drops any ``position_ids``; BERT then numbers the ``n + L`` inputs ``0 … n + L - 1``,
    so ``[CLS]`` sits at position ``n`` and every token at ``i + n``: absolute positions the encoder
    never saw there in pre-training. This wrapper hands the embeddings the positions
    ``[P - n, …, P - 1, 0, 1, …, L - 1]`` (``P`` = ``max_position_embeddings``): the text keeps
    ``0 … L - 1`` and the virtual tokens take the last ``n`` rows of the position table, which
    no text shorter than ``P - n`` tokens uses. A soft prompt is a free vector, so the position
    embedding added to it only shifts where it starts. The weights are the pretrained ones, unchanged.
    """

    def __init__(self, embeddings: nn.Module, offset: int) -> None:
        super().__init__()
        if offset < 1:
            raise ValueError(f"offset must be >= 1 (the number of virtual tokens), got {offset}")
        table = getattr(embeddings, "position_embeddings", None)
        if not isinstance(table, nn.Embedding):
            raise TypeError(f"{type(embeddings).__name__} has no position_embeddings table (BertEmbeddings has one)")
        if offset >= table.num_embeddings:
            raise ValueError(f"offset {offset} leaves no position for the text ({table.num_embeddings} positions)")
        self.embeddings = embeddings
        self.offset = offset

    @property
    def word_embeddings(self) -> nn.Module:
        """The wrapped token embeddings (what ``BertModel.get_input_embeddings`` returns)."""
        return self.embeddings.word_embeddings

    def positions(self, length: int, device: torch.device | str | None = None) -> torch.Tensor:
        """position ids [1, length] for ``offset`` virtual tokens followed by ``length - offset`` text tokens."""
        n, size = self.offset, self.embeddings.position_embeddings.num_embeddings
        if not n <= length <= size:
            raise ValueError(f"{length} inputs: need at least the {n} virtual tokens and at most {size} in all")
        virtual = torch.arange(size - n, size, device=device)
        return torch.cat([virtual, torch.arange(length - n, device=device)]).unsqueeze(0)

    def forward(self, input_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """inputs [B, n + L(, D)] -> embeddings [B, n + L, D], the text at positions ``0 … L - 1``."""
        if position_ids is None:
            shaped = input_ids if input_ids is not None else inputs_embeds
            position_ids = self.positions(shaped.shape[1], device=shaped.device)
        return self.embeddings(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds, **kwargs)

    def extra_repr(self) -> str:
        return f"offset={self.offset}"


def _pooler_owner(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    if not isinstance(getattr(base, "pooler", None), nn.Module):
        raise TypeError(
            f"{type(model).__name__} has no base_model.pooler: the prompt-tuning pooling fix is for BERT-family "
            "classifiers that pool [CLS] (BertForSequenceClassification); for other models pass fix_pooling=False"
        )
    return base


def apply_peft(model: nn.Module, config: PeftConfig, *, fix_pooling: bool = True, text_positions: bool = True,
               seed: int = 0) -> PeftModel:
    """Wrap a sequence classifier with a peft method (``get_peft_model``), ready to train.

    peft freezes the pretrained weights, adds the method's parameters (LoRA matrices, soft
    prompts) and, for ``task_type="SEQ_CLS"``, keeps the classifier head trainable.

    For a prompt-learning config (``PromptTuningConfig``) on a BERT classifier the pooler
    is wrapped in :class:`PoolerAfterPrompt` first, so that it reads ``[CLS]`` rather than
    the first virtual token (``fix_pooling=False`` keeps peft's behaviour, for comparison), and
    its embeddings in :class:`PositionsAfterPrompt`, so that the text keeps the positions
    ``0 … L - 1`` it had in pre-training (``text_positions=False`` keeps peft's numbering, which
    shifts every token by ``n``).

    Args:
        model: a transformers sequence classifier (e.g. from :func:`lfd13.finetune.build_sequence_classifier`);
            it is modified in place and must not be used on its own afterwards.
        config: a peft config with ``task_type="SEQ_CLS"``.
        fix_pooling: apply the prompt-tuning pooling fix.
        text_positions: give the text its pre-training positions under prompt tuning.
        seed: seeds the initialisation of the new parameters (LoRA's ``A``, the soft prompts),
            which peft draws from PyTorch's global generator; the caller's random state is kept.

    Returns:
        The ``PeftModel``.
    """
    if not isinstance(config, PeftConfig):
        raise TypeError(f"config must be a peft config (LoraConfig, PromptTuningConfig…), got {type(config).__name__}")
    task = getattr(config, "task_type", None)
    if str(getattr(task, "value", task)) != "SEQ_CLS":
        raise ValueError(f"config.task_type is {task!r}; use task_type='SEQ_CLS' so that peft keeps the classifier head trainable")
    if isinstance(model, PeftModel):
        raise TypeError("model is already a PeftModel; apply a peft config to a fresh classifier")
    if config.is_prompt_learning and fix_pooling:
        owner = _pooler_owner(model)
        if isinstance(owner.pooler, PoolerAfterPrompt):
            raise ValueError("the pooler is already wrapped; apply prompt tuning to a fresh classifier")
        owner.pooler = PoolerAfterPrompt(owner.pooler, config.num_virtual_tokens)
    if config.is_prompt_learning and text_positions:
        owner = _pooler_owner(model)
        if isinstance(owner.embeddings, PositionsAfterPrompt):
            raise ValueError("the embeddings are already wrapped; apply prompt tuning to a fresh classifier")
        owner.embeddings = PositionsAfterPrompt(owner.embeddings, config.num_virtual_tokens)
    with warnings.catch_warnings():
        # peft 0.21 calls a transformers 5 property that is being renamed; harmless
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)
        with seeded(seed):
            return get_peft_model(model, config)


def lora_config(r: int, *, alpha: float = LORA_ALPHA, target_modules: Iterable[str] = ("query", "value"),
                dropout: float = 0.0, use_rslora: bool = False) -> LoraConfig:
    """A peft ``LoraConfig`` for a sequence classifier: rank ``r``, ``lora_alpha = alpha`` (default 16).

    The update of each target matrix is ``(alpha / r) · B A``. As in Hu et al. (2021, §4.1),
    ``alpha`` stays fixed when ``r`` changes, so the scale ``alpha / r`` falls as the rank grows;
    "tuning alpha is roughly the same as tuning the learning rate", so they set it once and do not
    tune it. Scaling ``alpha`` with ``r`` (e.g. ``alpha = 2 r``) keeps ``alpha / r`` constant
    instead, which changes the rank and the update's scale at once. ``use_rslora=True`` scales
    by ``alpha / sqrt(r)`` (rsLoRA, Kalajdzievski 2023).
    """
    if r < 1:
        raise ValueError(f"the LoRA rank r must be >= 1, got {r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=alpha, target_modules=list(target_modules),
                      lora_dropout=dropout, use_rslora=use_rslora)


def prompt_tuning_config(num_virtual_tokens: int = 20) -> PromptTuningConfig:
    """A peft ``PromptTuningConfig`` for a sequence classifier: ``n`` soft-prompt vectors, randomly initialised."""
    if num_virtual_tokens < 1:
        raise ValueError(f"num_virtual_tokens must be >= 1, got {num_virtual_tokens}")
    return PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=num_virtual_tokens)


def freeze_all_but_head(model: nn.Module) -> nn.Module:
    """Train the classification head alone: the control that prompt tuning's head trains with.

    peft's prompt tuning (``task_type="SEQ_CLS"``) trains the soft prompts *and* the head
    (``classifier`` or ``score``); the pretrained pooler stays frozen. This freezes every
    parameter but that head, so that the same recipe without a prompt measures what the
    head does on its own. Returns ``model`` (modified in place).
    """
    heads = [name for name, _ in model.named_children() if name in ("classifier", "score")]
    if not heads:
        raise TypeError(f"{type(model).__name__} has no 'classifier' or 'score' head; pass a transformers sequence classifier")
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".", 1)[0] in heads)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """Parameters the optimiser updates: peft's count for a ``PeftModel``, transformers' otherwise."""
    if isinstance(model, PeftModel):
        return int(model.get_nb_trainable_parameters()[0])
    if hasattr(model, "num_parameters"):
        return int(model.num_parameters(only_trainable=True))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- merging


@dataclass(frozen=True)
class MergeCheck:
    """The outcome of :func:`merge_check`."""

    merged: nn.Module  # the plain transformers model with B A added into W
    max_abs_diff: float  # max |logits(adapted) - logits(merged)| over the data
    lora_layers_left: int  # LoRA layers still in the merged model (0 after a full merge)


def merge_check(peft_model: PeftModel, data: EncodedTexts, *, device: torch.device | str | None = None) -> MergeCheck:
    """Merge a trained LoRA model with peft's ``merge_and_unload`` and compare the outputs.

    ``merge_and_unload`` replaces every LoRA layer by a plain ``nn.Linear`` with weight
    ``W + (alpha / r) · B A``; it works on a deep copy here, so ``peft_model`` stays usable.

    Returns:
        A :class:`MergeCheck`: the merged model and the largest absolute difference between
        its logits and the adapted model's on ``data`` (float32 rounding, ~1e-6, when correct).
    """
    if not isinstance(peft_model, PeftModel) or peft_model.active_peft_config.is_prompt_learning:
        raise TypeError("merge_check needs a PeftModel with a mergeable adapter such as LoRA (soft prompts cannot be merged)")
    before = predict_logits(peft_model, data, device=device)
    merged = copy.deepcopy(peft_model).merge_and_unload()
    after = predict_logits(merged, data, device=device)
    left = sum(1 for m in merged.modules() if hasattr(m, "lora_A"))
    return MergeCheck(merged, float((before - after).abs().max()), left)


# --------------------------------------------------------------------------- rank of updates


def lora_delta_weights(peft_model: PeftModel, adapter: str = "default") -> dict[str, torch.Tensor]:
    """``(alpha / r) · B A`` of every LoRA layer, from peft's own ``get_delta_weight``.

    Returns:
        layer name -> [D_out, D_in] float tensor on the CPU (rank at most r).
    """
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "get_delta_weight") and adapter in getattr(module, "lora_A", {}):
            with torch.no_grad():
                out[name.removeprefix("base_model.model.")] = module.get_delta_weight(adapter).detach().float().cpu()
    if not out:
        raise ValueError(f"no LoRA layer with adapter {adapter!r} in the model")
    return out


def weight_updates(before: nn.Module, after: nn.Module, *, suffix: str = "query.weight") -> dict[str, torch.Tensor]:
    """``W_after - W_before`` of every matrix parameter whose name ends with ``suffix``.

    Use it on a model before and after full fine-tuning to see the update that LoRA
    approximates with rank r.

    Returns:
        parameter name -> [D_out, D_in] float tensor on the CPU.
    """
    old = dict(before.named_parameters())
    out = {}
    for name, p in after.named_parameters():
        if name.endswith(suffix) and p.ndim == 2:
            if name not in old:
                raise KeyError(f"{name} is in `after` but not in `before`; pass two copies of the same architecture")
            out[name] = (p.detach().float() - old[name].detach().float()).cpu()
    if not out:
        raise ValueError(f"no 2-D parameter ends with {suffix!r}")
    return out


def energy_in_top_k(delta: torch.Tensor, k: int) -> float:
    """Fraction of ``||delta||_F^2`` in its top ``k`` singular directions (1.0 if rank <= k).

    Args:
        delta: [D_out, D_in] a weight update.
        k: number of singular values kept.
    """
    if delta.ndim != 2:
        raise ValueError(f"delta must be a matrix [D_out, D_in], got shape {tuple(delta.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s2 = torch.linalg.svdvals(delta.double()) ** 2
    total = float(s2.sum())
    if total == 0.0:
        raise ValueError("delta is all zeros: it has no singular directions")
    return float(s2[:k].sum()) / total


def update_energy(before: nn.Module, after: nn.Module, *, k: int,
                  kinds: Sequence[str] = ("query", "value")) -> dict[str, list[float]]:
    """For each attention matrix kind, layer by layer: :func:`energy_in_top_k` of its update ``after - before``."""
    return {kind: [energy_in_top_k(delta, k) for delta in
                   weight_updates(before, after, suffix=f"attention.self.{kind}.weight").values()] for kind in kinds}


# --------------------------------------------------------------------------- shipping an adapter


class LoraAdapter(nn.Module):
    """A LoRA ``PeftModel`` seen through its adapter, so that :mod:`lfd13.shipped` can save and load it.

    ``state_dict`` is peft's ``get_peft_model_state_dict`` (what ``save_pretrained`` writes: the
    ``A``/``B`` matrices and the head, not the frozen base weights); ``load_state_dict`` checks the
    keys and puts the state back with ``set_peft_model_state_dict``.
    """

    def __init__(self, model: PeftModel) -> None:
        super().__init__()
        self.model = model

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return get_peft_model_state_dict(self.model)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        expected = set(get_peft_model_state_dict(self.model))
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if strict and (missing or unexpected):
            raise RuntimeError(f"adapter keys do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return set_peft_model_state_dict(self.model, dict(state_dict))


def save_adapter(model: PeftModel, name: str, *, seed: int, command: str, recipe: dict[str, Any],
                 result: dict[str, Any] | None = None, base: str = DEFAULT_TEXT_ENCODER,
                 directory: Path | str = shipped.CHECKPOINT_DIR) -> shipped.CheckpointInfo:
    """Save a LoRA classifier's adapter (the ``A``/``B`` matrices and the head) as a checkpoint.

    The frozen base weights are not saved: :func:`load_adapter` takes them from the base model.

    Args:
        model: a ``PeftModel`` made by :func:`apply_peft` with a :func:`lora_config`.
        name: the checkpoint's file stem.
        seed: the ``seed`` its classifier and adapter were built with (recorded, used again on load).
        command, recipe, result, directory: see :func:`lfd13.shipped.save_model`.
        base: the name of the pretrained encoder under the adapter, for :func:`load_adapter`.
    """
    config = model.peft_config["default"]
    if not isinstance(config, LoraConfig):
        raise TypeError(f"save_adapter saves LoRA adapters; this model has a {type(config).__name__}")
    inner = model.get_base_model()
    meta = {"base": base, "hidden_size": inner.config.hidden_size, "num_labels": inner.config.num_labels,
            "r": config.r, "lora_alpha": config.lora_alpha, "target_modules": sorted(config.target_modules),
            "lora_dropout": config.lora_dropout, "use_rslora": config.use_rslora, "seed": seed}
    return shipped.save_model(name, LoraAdapter(model), kind="peft", command=command, config=meta, recipe=recipe,
                              result=result, directory=directory)


def load_adapter(name_or_path: str | Path, *, classifier: PreTrainedModel | None = None,
                 device: torch.device | str | None = None,
                 directory: Path | str | None = None) -> tuple[PeftModel, shipped.CheckpointInfo]:
    """Load a LoRA adapter saved by :func:`save_adapter` after checking its sha256.

    Args:
        classifier: the base sequence classifier to put the adapter on; default: the encoder named in
            the checkpoint (:func:`lfd13.pretrained.load_text_encoder`) with a head, as it was trained.
            Its frozen weights must be the ones the adapter was trained on.

    Returns:
        ``(PeftModel in eval mode, info)``.
    """

    def build(info: shipped.CheckpointInfo, folder: Path) -> LoraAdapter:
        cfg = info.config
        base = classifier
        if base is None:
            _, encoder = load_text_encoder(cfg["base"], device="cpu")
            base = build_sequence_classifier(encoder, num_labels=cfg["num_labels"], seed=cfg["seed"])
        if (base.config.hidden_size, base.config.num_labels) != (cfg["hidden_size"], cfg["num_labels"]):
            raise ValueError(
                f"adapter {info.name!r} was trained on a classifier of width {cfg['hidden_size']} with "
                f"{cfg['num_labels']} classes ({cfg['base']}); this one has width {base.config.hidden_size} and "
                f"{base.config.num_labels} classes"
            )
        config = lora_config(cfg["r"], alpha=cfg["lora_alpha"], target_modules=cfg["target_modules"],
                             dropout=cfg["lora_dropout"], use_rslora=cfg["use_rslora"])
        return LoraAdapter(apply_peft(base, config, seed=cfg["seed"]))

    adapter, info = shipped.load_model(name_or_path, kind="peft", build=build, directory=directory)
    model = adapter.model
    target = device if device is not None else next(classifier.parameters()).device if classifier is not None else "cpu"
    return model.to(target).eval(), info
