"""Real checkpoints by hub name: the same calls as the book's small models, on full-size ones.

The book trains small models on a CPU; its "Scaling up" sections show the same calls on
a real pretrained checkpoint and a GPU. This module loads those checkpoints *by their hub
name*, through the libraries' own resolution (``from_pretrained`` for transformers,
``hf-hub:`` names for open_clip): the local Hugging Face cache first, the hub when online.
What it returns plugs into the package's functions:

- masked language modelling — :func:`load_masked_lm` (``"bert-base-uncased"``) for :func:`lfd13.mlm.fill_mask`;
- masked autoencoders — :func:`load_vit_mae` (``"facebook/vit-mae-base"``), :func:`mae_loss` and
  :func:`mae_features` (frozen features for :func:`lfd13.evaluation.linear_probe`);
- CLIP — :func:`load_open_clip` (``"hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"``) for
  :func:`lfd13.clip.encode_images` and :func:`lfd13.clip.encode_texts`;
- instruction tuning and LoRA — :func:`load_causal_lm` (a small causal LLM), :func:`attention_projections`,
  :func:`lora_causal_lm` (peft's LoRA, ``task_type="CAUSAL_LM"``, on the attention projections)
  and :func:`sft_batch` (the loss on the response only, as in InstructGPT's SFT); :func:`sft_trainer`,
  the same SFT with TRL's ``SFTTrainer`` (``completion_only_loss=True``), as practitioners run it.

``tests/unit/test_hub.py`` runs every function offline on tiny random models written in the hub's
own cache layout, loaded by hub name exactly as a real checkpoint is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lfd13.runtime import IGNORE_INDEX, get_device

__all__ = [
    "ATTENTION_PROJECTIONS", "attention_projections", "load_causal_lm", "load_open_clip", "load_vit_mae", "load_masked_lm",
    "lora_causal_lm", "mae_features", "mae_loss", "sft_batch", "sft_trainer",
]


#: Attention projection names of common causal-LM families (LLaMA, Qwen, Mistral, GPT-2, GPT-NeoX, Falcon).
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "c_attn", "query_key_value", "qkv_proj")


def _device(device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else get_device()


def load_masked_lm(name: str = "bert-base-uncased", *, device: torch.device | str | None = None) -> tuple[Any, nn.Module]:
    """``(tokenizer, AutoModelForMaskedLM in eval mode)`` for a hub name such as ``"bert-base-uncased"``."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForMaskedLM.from_pretrained(name).to(_device(device)).eval()
    return tokenizer, model


def load_vit_mae(
    name: str = "facebook/vit-mae-base", *, mask_ratio: float = 0.75, device: torch.device | str | None = None
) -> tuple[Any, nn.Module]:
    """``(image processor, ViTMAEForPreTraining)`` for a hub name such as ``"facebook/vit-mae-base"``.

    Args:
        mask_ratio: share of patches removed in pre-training (the paper's 75 %).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    from transformers import AutoImageProcessor, ViTMAEForPreTraining

    processor = AutoImageProcessor.from_pretrained(name)
    model = ViTMAEForPreTraining.from_pretrained(name, mask_ratio=mask_ratio).to(_device(device))
    return processor, model


def mae_loss(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The MAE loss of a batch ``pixel_values`` [B, C, H, W]: MSE on the removed patches (scalar)."""
    device = next(model.parameters()).device
    return model(pixel_values=pixel_values.to(device)).loss


@torch.no_grad()
def mae_features(model: nn.Module, pixel_values: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """Frozen features of a pretrained MAE encoder: every patch visible, mean over patch tokens.

    Args:
        model: a ``ViTMAEForPreTraining`` (or ``ViTMAEModel``).
        pixel_values: [N, C, H, W], as the model's image processor makes them.

    Returns:
        [N, D] float on the CPU (D = the encoder's width).
    """
    encoder = getattr(model, "vit", model)
    device = next(encoder.parameters()).device
    saved, encoder.config.mask_ratio = encoder.config.mask_ratio, 0.0  # keep every patch (order shuffled: the mean is unchanged)
    try:
        encoder.eval()
        out = [
            encoder(pixel_values=pixel_values[i : i + batch_size].to(device)).last_hidden_state[:, 1:].mean(1).float().cpu()
            for i in range(0, len(pixel_values), batch_size)
        ]  # (B, L, D) -> (B, D), [CLS] left out
    finally:
        encoder.config.mask_ratio = saved
    return torch.cat(out)


def load_open_clip(
    name: str = "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", *, device: torch.device | str | None = None
) -> tuple[nn.Module, Any, Any]:
    """``(open_clip CLIP in eval mode, image preprocessing, tokenizer)`` for an ``hf-hub:`` name.

    The model plugs into :func:`lfd13.clip.encode_images` and :func:`lfd13.clip.encode_texts`.
    """
    import open_clip

    if not name.startswith("hf-hub:"):
        raise ValueError(f"give an open_clip hub name such as 'hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K', got {name!r}")
    model, _, preprocess = open_clip.create_model_and_transforms(name, device=_device(device))
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def load_causal_lm(name: str, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> tuple[Any, nn.Module]:
    """``(tokenizer with a padding token, AutoModelForCausalLM)`` for a hub name such as ``"Qwen/Qwen2.5-0.5B"``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype).to(_device(device))
    return tokenizer, model


def attention_projections(model: nn.Module) -> list[str]:
    """Names (last component) of the attention projections among ``model``'s linear layers, e.g. ``["q_proj", "v_proj", ...]``.

    Raises:
        ValueError: when none of :data:`ATTENTION_PROJECTIONS` is found; pass ``target_modules`` yourself then.
    """
    linear_types = (nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D  # GPT-2's projections

        linear_types += (Conv1D,)
    except ImportError:  # pragma: no cover
        pass
    found = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, linear_types)}
    names = [p for p in ATTENTION_PROJECTIONS if p in found]
    if not names:
        raise ValueError(f"no attention projection among {sorted(found)}; pass target_modules=[...] explicitly")
    return names


def lora_causal_lm(
    model: nn.Module, *, r: int = 8, alpha: float = 16.0, dropout: float = 0.05, target_modules: Sequence[str] | None = None
) -> nn.Module:
    """peft's LoRA on a causal LM: ``LoraConfig(task_type="CAUSAL_LM")`` on its attention projections.

    Returns:
        The ``PeftModel``; only the LoRA matrices are trainable.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout,
        target_modules=list(target_modules) if target_modules else attention_projections(model),
    )
    return get_peft_model(model, config)


def sft_batch(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], *, max_length: int = 512) -> dict[str, torch.Tensor]:
    """A right-padded SFT batch whose labels score the response (and the end-of-text token) only.

    Returns:
        ``input_ids``, ``attention_mask``, ``labels`` [B, L]; ``labels`` is ``-100`` on the prompt
        and the padding. Pass it to the model as ``model(**batch).loss``.
    """
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"need as many prompts as responses (and at least one), got {len(prompts)} and {len(responses)}")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    rows, n_prompt = [], []
    for prompt, response in zip(prompts, responses):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        rows.append((p + tokenizer(response, add_special_tokens=False)["input_ids"] + eos)[:max_length])
        n_prompt.append(len(p))
    length = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    for i, k in enumerate(n_prompt):
        labels[i, :k] = IGNORE_INDEX
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def splits_at_boundary(tokenizer: Any, prompt: str, completion: str) -> bool:
    """Whether the tokens of ``prompt`` are the first tokens of ``prompt + completion``.

    Byte-level BPE tokenizers (GPT-2's, Qwen2's) can merge the prompt's last characters with the
    completion's first ones: Qwen2's reads ``"sort:ab>"`` as ending on ``">"``, but ``"sort:ab>ab"``
    as holding the piece ``">ab"``, which it may merge into ``">a"`` and ``"b"``. A trailing space does not help
    (the space joins the completion's first word); a newline does. TRL's ``SFTTrainer`` tokenises the prompt and the whole text and
    warns when they disagree. :func:`sft_batch` tokenises the two parts separately: the prompt's
    tokens are then those the model reads at use time, but the sequence it trains on is one that
    tokenising the whole text, as pre-training does, would never produce.
    """
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt + completion, add_special_tokens=False)["input_ids"][: len(p)] == p


def sft_trainer(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    output_dir: str,
    max_steps: int = 500,
    lr: float = 2e-4,
    batch_size: int = 8,
    max_length: int = 512,
    peft_config: Any = None,
    **config: Any,
) -> Any:
    """TRL's ``SFTTrainer`` on prompt–completion pairs, the loss on the completions only.

    What practitioners use for SFT at scale, beside the book's own loop: the same data
    (instruction, response) and the same loss (``completion_only_loss=True``: the prompt's
    tokens are labelled -100). Needs ``pip install trl``.

    Args:
        model: a causal LM (e.g. from :func:`load_causal_lm`), or a ``PeftModel``.
        peft_config: e.g. ``peft.LoraConfig(task_type="CAUSAL_LM", ...)`` to let TRL wrap the model.
        config: further ``trl.SFTConfig`` fields (``bf16=True``, ``logging_steps=...``).

    Returns:
        The trainer; call ``.train()``.
    """
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(f"need as many prompts as completions (and at least one), got {len(prompts)} and {len(completions)}")
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_dict({"prompt": list(prompts), "completion": list(completions)})
    args = SFTConfig(
        output_dir=output_dir, max_steps=max_steps, learning_rate=lr, per_device_train_batch_size=batch_size,
        max_length=max_length, completion_only_loss=True, report_to="none", **config,
    )
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config)
