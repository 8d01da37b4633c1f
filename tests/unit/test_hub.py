"""lfd13.hub, which the chapters' "Scaling up" sections call, on tiny random models by hub name.

Needs ``trl`` (for :func:`lfd13.hub.sft_trainer`), which requirements.txt lists.

Each tiny model (a BERT masked LM, a ViT-MAE, an open_clip CLIP, a LLaMA-style causal LM) is
written with ``save_pretrained`` (open_clip: its ``open_clip_config.json`` and
``open_clip_model.safetensors``) into the Hugging Face cache layout —
``models--<org>--<name>/snapshots/<commit>/`` and ``refs/main`` — of a temporary cache. A
child process with ``HF_HUB_CACHE`` pointing there and ``HF_HUB_OFFLINE=1`` then calls
lfd13.hub with the hub *names*: the names resolve through huggingface_hub's cache lookup,
exactly as ``bert-base-uncased`` or ``facebook/vit-mae-base`` do on a machine that has
downloaded them, so a snippet that works here differs from the real one only in the name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lfd13 import hub

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
NAMES = {"bert": "lfd13-tiny/bert", "mae": "lfd13-tiny/vit-mae", "clip": "lfd13-tiny/open-clip", "llm": "lfd13-tiny/llama"}


def save_to_hub_cache(cache: Path, repo_id: str, save: Callable[[Path], None]) -> Path:
    """Write a model repository into ``cache`` as huggingface_hub lays it out after a download."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    save(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def tiny_bert(path: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    words = "the river bank was muddy money in a savings account".split()
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def tiny_mae(path: Path) -> None:
    from transformers import ViTImageProcessor, ViTMAEConfig, ViTMAEForPreTraining

    torch.manual_seed(0)
    config = ViTMAEConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64)
    ViTMAEForPreTraining(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def tiny_open_clip(path: Path) -> None:
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    torch.manual_seed(0)
    model = CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    preprocess = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))


def tiny_llama(path: Path) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = "abcdefghijklmnopqrstuvwxyz:> "
    vocab = {"<unk>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per character
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>").save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=64, eos_token_id=1, bos_token_id=1)
    LlamaForCausalLM(config).save_pretrained(path)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-hub-cache")
    for key, save in (("bert", tiny_bert), ("mae", tiny_mae), ("clip", tiny_open_clip), ("llm", tiny_llama)):
        save_to_hub_cache(cache, NAMES[key], save)
    return cache


# What each chapter's "Scaling up" snippet calls, with the tiny models' names; runs in a child process.
SNIPPETS = f"""
import json, torch
from lfd13 import hub, mlm
from lfd13.clip import encode_images, encode_texts
device = "cpu"
out = {{}}

# Chapter 2: a real BERT fills in the blank
tokenizer, bert = hub.load_masked_lm({NAMES["bert"]!r}, device=device)
out["fill_mask"] = mlm.fill_mask(bert, tokenizer, "the river [MASK] was muddy", k=3)

# Chapter 3: a real MAE, its loss and its frozen features
processor, mae = hub.load_vit_mae({NAMES["mae"]!r}, device=device)
pixels = processor(images=[torch.rand(3, 48, 48) for _ in range(4)], return_tensors="pt", do_rescale=False)["pixel_values"]
loss = hub.mae_loss(mae, pixels); loss.backward()
out["mae"] = {{"loss": float(loss), "features": list(hub.mae_features(mae, pixels).shape), "mask_ratio": mae.config.mask_ratio}}

# Chapter 4: a real CLIP through the chapter's encoders
clip, preprocess, clip_tokenizer = hub.load_open_clip("hf-hub:{NAMES["clip"]}", device=device)
img = encode_images(clip, torch.rand(2, 3, 32, 32))
txt = encode_texts(clip, ["a photo of a red square", "a photo of a blue circle"])
out["clip"] = {{"image": list(img.shape), "text": list(txt.shape), "norm": float(img.norm(dim=-1).mean()),
               "tokens": list(clip_tokenizer(["a red square"]).shape)}}

# Chapters 5b and 6: SFT with the loss on the response only, LoRA on the attention projections
tok, lm = hub.load_causal_lm({NAMES["llm"]!r}, device=device)
batch = hub.sft_batch(tok, ["reverse:abc>", "upper:ab>"], ["cba", "AB"])
out["boundary"] = hub.splits_at_boundary(tok, "reverse:abc>\\n", "cba")
full = lm(**batch).loss
targets = hub.attention_projections(lm)
peft_lm = hub.lora_causal_lm(lm, r=4, target_modules=None)
trainable = [n for n, p in peft_lm.named_parameters() if p.requires_grad]
opt = torch.optim.AdamW([p for p in peft_lm.parameters() if p.requires_grad], lr=1e-2)
loss = peft_lm(**batch).loss; loss.backward(); opt.step()
out["llm"] = {{"full_loss": float(full), "lora_loss": float(loss), "targets": targets, "trainable": trainable,
              "task_type": str(peft_lm.peft_config["default"].task_type), "labels": batch["labels"].tolist(),
              "ids": batch["input_ids"].tolist()}}

# Chapter 5b at scale: TRL's SFTTrainer on the same pairs, the loss on the completions only
import tempfile
tok2, lm2 = hub.load_causal_lm({NAMES["llm"]!r}, device=device)
trainer = hub.sft_trainer(lm2, tok2, ["reverse:abc>", "upper:ab>"] * 4, ["cba", "ab"] * 4, output_dir=tempfile.mkdtemp(),
                          max_steps=2, batch_size=4, max_length=64, use_cpu=True, bf16=False, save_strategy="no", logging_steps=1)
collated = trainer.data_collator([trainer.train_dataset[0]])
result = trainer.train()
out["trl"] = {{"labels": collated["labels"].tolist(), "ids": collated["input_ids"].tolist(), "loss": result.training_loss,
              "steps": result.global_step}}
print(json.dumps(out))
"""


def test_sft_batch_masks_the_prompt_and_the_padding():
    class CharTokenizer:
        eos_token_id, pad_token_id = 1, 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    batch = hub.sft_batch(CharTokenizer(), ["ab>", "abcd>"], ["x", "yz"])
    assert batch["input_ids"].tolist() == [[97, 98, 62, 120, 1, 0, 0, 0], [97, 98, 99, 100, 62, 121, 122, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0], [1] * 8]
    assert batch["labels"].tolist() == [[-100, -100, -100, 120, 1, -100, -100, -100], [-100] * 5 + [121, 122, 1]]
    with pytest.raises(ValueError, match="as many prompts"):
        hub.sft_batch(CharTokenizer(), ["a"], [])


def qwen2_layout_tokenizer():
    """A tiny byte-level BPE with Qwen2's pre-tokenizer, its merges learnt from SFT demonstrations."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from lfd13 import sft

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    text = [e.prompt + gap + e.response for e in sft.make_examples(2000, seed=0) for gap in ("", " ", "\n")]
    backend.train_from_iterator(text, trainers.BpeTrainer(vocab_size=600, special_tokens=["<eos>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")


def test_prompts_that_end_on_a_newline_split_at_the_boundary():
    from lfd13 import sft

    tokenizer = qwen2_layout_tokenizer()
    examples = sft.make_examples(200, seed=1)
    # Qwen2's pre-tokenizer glues a symbol to the letters after it: ">cba" is one piece, which BPE may merge
    assert not all(hub.splits_at_boundary(tokenizer, e.prompt, e.response) for e in examples)
    # a trailing space does not help: the space starts the response's piece (" cba"), alone it is a piece of its own
    assert not all(hub.splits_at_boundary(tokenizer, e.prompt + " ", e.response) for e in examples)
    # a newline ends the piece ">\n" and the response starts a new one, alone or inside the whole text
    assert all(hub.splits_at_boundary(tokenizer, e.prompt + "\n", e.response) for e in examples)


def test_attention_projections_of_gpt2_and_an_error_otherwise():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    assert hub.attention_projections(gpt2) == ["c_attn"]
    with pytest.raises(ValueError, match="target_modules"):
        hub.attention_projections(torch.nn.Sequential(torch.nn.Linear(2, 2)))
