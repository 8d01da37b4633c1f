"""One training step of every chapter's model on a CUDA GPU, when there is one.

The book runs on a CPU; on Colab, Binder or a laptop with a GPU, ``lfd13.get_device()`` (the
one place the device is chosen) picks CUDA and the same code runs there. This script checks
that: for the model of each chapter — the pretext CNN (1), the tiny BERT masked LM (2), the
MAE (3), CLIP (4), MiniLM with a classification head and LoRA (5, 6), the tiny GPT of SFT
(5b) — one forward pass, backward pass and AdamW step on the device, with the step's time and
the peak GPU memory. It prints a table and writes it under ``"gpu_smoke"`` in
``benchmarks/results.json`` (that key only).

Without CUDA it says so and exits 0: a GPU is never required.

Usage::

    python benchmarks/gpu_smoke.py                # CUDA if present, else "no CUDA device: nothing to run"
    python benchmarks/gpu_smoke.py --device cpu   # the same steps on the CPU (checks the script; not recorded)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# Everything this script uses from lfd13, in one place (module names follow the package's public API).
import lfd13
from lfd13 import clip as lfd13_clip
from lfd13 import finetune, mae, mlm, peft_tools, pretext, sft
from lfd13.pretrained import load_text_encoder
from lfd13.runtime import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import RESULTS, update_results  # noqa: E402
BATCH = 16

# Each entry builds a chapter's model on ``device`` and returns it with a function that computes
# the loss of one batch; the batches are small and random where the data does not matter.
Case = Callable[[torch.device, torch.Generator], tuple[torch.nn.Module, Callable[[], torch.Tensor]]]


def pretext_cnn(device, g):
    model = pretext.RotationPretext(pretext.build_encoder(pretext.pretext_config(), seed=0)).to(device)
    size = model.encoder.config.image_size
    x = torch.rand(BATCH, 1, size, size, generator=g).to(device)
    return model, lambda: model.step((x,))["loss"]


def bert_mlm(device, g):
    model = mlm.build_bert("bert-nano", seed=0).to(device)
    vocab, length = model.config.vocab_size, 64
    ids = torch.randint(5, vocab, (BATCH, length), generator=g)
    selected = torch.rand(BATCH, length, generator=g) < 0.15
    selected[:, 0] = True  # at least one masked position per row
    labels = ids.masked_fill(~selected, IGNORE_INDEX)
    batch = {"input_ids": ids.to(device), "labels": labels.to(device)}
    return model, lambda: mlm.mlm_step(model, batch)["loss"]


def mae_digits(device, g):
    model = mae.build_mae("mae-digits").to(device)
    cfg = model.config
    imgs = torch.rand(BATCH, cfg.num_channels, cfg.image_size, cfg.image_size, generator=g).to(device)
    return model, lambda: mae.mae_step(model, (imgs,))


def clip_shapes(device, g):
    config = lfd13_clip.PRESETS["clip-shapes"]
    captions = ["a red square", "a small blue circle", "a drawing of a large green cross", "a yellow triangle"] * (BATCH // 4)
    model = lfd13_clip.build_clip(config, texts=captions, seed=0).to(device)
    images = torch.rand(BATCH, 3, config.image_size, config.image_size, generator=g).to(device)
    tokens = lfd13_clip.tokenize(captions, context_length=config.context_length).to(device)
    return model, lambda: lfd13_clip.clip_step(model, (images, tokens))["loss"]


def minilm_lora(device, g):
    tokenizer, encoder = load_text_encoder(device="cpu")
    model = finetune.build_sequence_classifier(encoder, num_labels=4)
    model = peft_tools.apply_peft(model, peft_tools.lora_config(8)).to(device)
    texts = ["the engine needs new spark plugs", "a telescope sees far galaxies", "render the mesh in 3d", "the doctor prescribed rest"]
    batch = tokenizer(texts * (BATCH // 4), padding=True, truncation=True, max_length=64, return_tensors="pt").to(device)
    labels = torch.arange(4).repeat(BATCH // 4).to(device)
    return model, lambda: model(**batch, labels=labels).loss


def gpt_sft(device, g):
    tokenizer = sft.CharTokenizer()
    model = sft.build_char_gpt("gpt-nano-char", seed=0).to(device)
    ids, mask, labels = sft.encode_examples(sft.make_examples(BATCH, seed=0), tokenizer)  # loss on the responses only
    batch = (ids.to(device), mask.to(device), labels.to(device))
    return model, lambda: sft.lm_step(model, batch)


CASES: dict[str, tuple[str, Case]] = {
    "pretext_cnn": ("1 pretext tasks", pretext_cnn),
    "bert_mlm": ("2 BERT", bert_mlm),
    "mae": ("3 MAE", mae_digits),
    "clip": ("4 CLIP", clip_shapes),
    "minilm_lora": ("5/6 fine-tuning, LoRA", minilm_lora),
    "gpt_sft": ("5b SFT", gpt_sft),
}


def one_step(case: Case, device: torch.device) -> dict:
    """Build, then time one forward + backward + AdamW step; loss before and after, peak memory."""
    g = torch.Generator().manual_seed(0)
    model, loss_of = case(device, g)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    loss = loss_of()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        after = float(loss_of())
    on_device = {p.device.type for p in model.parameters()}
    return {
        "loss": round(float(loss.detach()), 4),
        "loss_after_step": round(after, 4),
        "finite": bool(torch.isfinite(loss.detach()).item()),
        "step_seconds": round(seconds, 4),
        "trainable_parameters": sum(p.numel() for p in params),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        "parameters_on": sorted(on_device),
    }


def save(records: dict, device: torch.device) -> None:
    """Read-modify-write the ``"gpu_smoke"`` key of benchmarks/results.json only."""
    update_results("gpu_smoke", {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "all_ok": all(r.get("ok") for r in records.values()),
        "steps": records,
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="run on this device instead (e.g. cpu, to check the script); not recorded")
    args = parser.parse_args(argv)
    if args.device is None:
        if not torch.cuda.is_available():
            print("no CUDA device: nothing to run")
            return 0
        lfd13.setup(seed=0)
        device = lfd13.get_device()  # the one place the device is chosen: CUDA when present
        if device.type != "cuda":
            print(f"lfd13.get_device() chose {device}, not CUDA: nothing to run")
            return 0
    else:
        lfd13.setup(seed=0)
        device = torch.device(args.device)
    records: dict[str, dict] = {}
    print(f"one training step per chapter's model on {device}")
    print(f"{'model':14} {'chapter':22} {'loss':>8} {'after':>8} {'step (s)':>9} {'peak MB':>8}  status")
    for key, (chapter, case) in CASES.items():
        try:
            rec = one_step(case, device)
            rec["ok"] = rec["finite"] and rec["parameters_on"] == [device.type]
            status = "ok" if rec["ok"] else f"FAILED: loss {rec['loss']}, parameters on {rec['parameters_on']}"
        except Exception as err:  # one broken model must not hide the others
            rec = {"ok": False, "error": f"{type(err).__name__}: {err}"[:500]}
            status = "ERROR " + rec["error"]
        records[key] = {"chapter": chapter, **rec}
        peak = rec.get("peak_memory_mb")
        print(f"{key:14} {chapter:22} {rec.get('loss', float('nan')):8.4f} {rec.get('loss_after_step', float('nan')):8.4f} "
              f"{rec.get('step_seconds', float('nan')):9.4f} {peak if peak is not None else '-':>8}  {status}", flush=True)
    if device.type == "cuda" and args.device is None:
        save(records, device)
        print(f'wrote the "gpu_smoke" key of {RESULTS.relative_to(ROOT)}')
    return 0 if all(r["ok"] for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
