"""Reproducible longer pre-training runs whose small checkpoints ship with the package.

A chapter must run in about a minute on two CPU cores; some results need a longer
pre-training than that. This module is the recipe: it trains the model with
:func:`lfd13.train.train`, then writes ``lfd13/checkpoints/<name>.safetensors`` with a
``.json`` beside it holding the config, the recipe, what the run measured and the
sha256 of every file (see :mod:`lfd13.shipped`). Run::

    python -m lfd13.pretrain pretext      # Chapter 1b's four pretext families, three seeds each
    python -m lfd13.pretrain pretext-benefits  # Chapter 1b's CNNs from scratch and fine-tuning runs, a record (JSON alone)
    python -m lfd13.pretrain mae          # Chapter 3's MAE (mask ratio 0.75)
    python -m lfd13.pretrain mae-sweep    # Chapter 3's mask-ratio sweep (0.25, 0.5, 0.75, 0.9), shorter runs
    python -m lfd13.pretrain mae-record   # Chapter 3's fine-tuning arms (3 x 3 seeds) and sweep probes, into their JSON
    python -m lfd13.pretrain clip         # Chapter 4's CLIP, three seeds
    python -m lfd13.pretrain mlm          # Chapter 2's masked LM and its left-to-right twin
    python -m lfd13.pretrain charlm       # Chapter 5b's character GPT-2, pre-trained on the corpus before SFT
    python -m lfd13.pretrain charlm-sft   # Chapter 5b's SFT comparison from it (4 arms x 3 seeds), recorded in its JSON
    python -m lfd13.pretrain finetune-record  # Chapter 5's fine-tuning and from-scratch runs, a record (JSON alone)
    python -m lfd13.pretrain transfer     # Chapter 5a's source CNN and its layer-transfer runs, recorded in its JSON
    python -m lfd13.pretrain peft         # Chapter 6's LoRA-vs-full seeds and rank sweep; ships the rank-32 adapter

The numbers in the book come from these files, not from this run's log; re-running
on other hardware gives a model of the same quality but not bit-identical weights.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from open_clip.model import CLIP

from lfd13 import clip, finetune, mlm, peft_tools, pretext, sft, shipped
from lfd13.data import load_corpus, load_digits
from lfd13.data.shapes import SHAPES_PRESETS, compositional_split
from lfd13.mae import (FT_ARMS, FT_RECIPE, FT_SEEDS, RECORD, MaskedAutoencoder, build_mae, cls_probe, finetune_arm, mae_config,
                       mae_step)
from lfd13.mae import load_checkpoint as load_mae
from lfd13.mae import save_checkpoint as save_mae
from lfd13.runtime import make_generator, setup
from lfd13.sampling import split_indices
from lfd13.train import History, Recipe, train


@dataclass(frozen=True)
class MAEPretraining:
    """Chapter 3's MAE pre-training: MAE's AdamW recipe (betas 0.9/0.95, weight decay 0.05, warm-up, cosine)."""

    preset: str = "mae-digits"  # model preset in lfd13.mae.PRESETS
    image_size: int = 16  # digits upsampled from 8×8
    mask_ratio: float = 0.75  # share of patches removed per image
    seed: int = 0  # seeds the initialisation, the batch order and the masks
    # the loss leaves the mean-image plateau only after ~700 steps (Chapter 3)
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=6000, lr=2e-3, batch_size=64, weight_decay=0.05,
                                                          warmup=50, betas=(0.9, 0.95)))


@dataclass(frozen=True)
class CLIPPretraining:
    """Chapter 4's CLIP pre-training on the coloured-shape captions (held-out combinations never seen)."""

    preset: str = "clip-shapes"  # model preset in lfd13.clip.CLIP_PRESETS
    world: str = "shapes-24"  # lfd13.data.shapes.SHAPES_PRESETS
    n_train: int = 20_000  # compositional_split(world, n_train, n_test_per_combo=40, seed=split_seed)
    split_seed: int = 0  # seed of the data split
    seed: int = 0  # seeds the initialisation and the batch order
    recipe: Recipe = clip.SHAPES_RECIPE


@dataclass(frozen=True)
class CharLMPretraining:
    """Chapter 5b's character-level GPT-2 (:class:`lfd13.sft.TinyGPTConfig`), next-character prediction on the course corpus."""

    held_out: float = 0.1  # share of documents per source held out (lfd13.data.load_corpus)
    split_seed: int = 0  # seed of that split
    block: int = 32  # characters per training window (the model's n_positions)
    stride: int = 16  # a new window every 16 characters: consecutive windows overlap by half
    seed: int = 0  # seeds the initialisation, the batch order and dropout
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=2000, lr=3e-3, batch_size=64, weight_decay=0.1,
                                                          warmup=100, betas=(0.9, 0.98), max_grad_norm=1.0))


SWEEP_RATIOS = (0.25, 0.5, 0.75, 0.9)
SWEEP_STEPS = 3000  # half the main run, so that the four-run sweep stays affordable
CLIP_SEEDS = (0, 1, 2)


def _loss_per_50_steps(history: History) -> list[float]:
    losses = history["loss"]
    return [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 5) for i in range(0, len(losses), 50)]


def pretrain_mae(run: MAEPretraining = MAEPretraining(), *, device: Any = None,
                 progress: bool | None = None) -> tuple[MaskedAutoencoder, dict[str, Any]]:
    """Pre-train the chapter's MAE on the digits' training images (labels unused).

    Returns:
        ``(model, result)``: the trained model and what the run measured (final loss, seconds, loss curve).
    """
    data = load_digits(size=run.image_size)
    model = build_mae(mae_config(run.preset, mask_ratio=run.mask_ratio), seed=run.seed)
    step = partial(mae_step, generator=make_generator(run.seed + 1))  # the masks' own generator
    def report(i: int, values: Any) -> None:
        if i % 250 == 0:
            print(f"  mask ratio {run.mask_ratio}: step {i}/{run.recipe.steps}, loss {values['loss']:.4f}", flush=True)

    start = time.perf_counter()
    history = train(model, (data.x_train,), step, run.recipe, seed=run.seed, device=device, progress=progress,
                    desc=f"MAE {run.mask_ratio}", callbacks=(report,))
    result = {"final_loss": round(history.last("loss", 50), 5), "seconds": round(time.perf_counter() - start, 1),
              "loss_per_50_steps": _loss_per_50_steps(history), "torch": torch.__version__}
    return model, result


def pretrain_clip(run: CLIPPretraining = CLIPPretraining(), *, device: Any = None,
                  progress: bool | None = None) -> tuple[CLIP, clip.CLIPConfig, dict[str, Any]]:
    """Train Chapter 4's CLIP on the coloured-shape captions.

    Returns:
        ``(model, config, result)``.
    """
    split = compositional_split(SHAPES_PRESETS[run.world], n_train=run.n_train, n_test_per_combo=40, seed=run.split_seed)
    config = clip.CLIP_PRESETS[run.preset]
    tokens = clip.tokenize(split.train.captions, context_length=config.context_length)
    model = clip.build_clip(config, texts=split.train.captions, seed=run.seed)
    start = time.perf_counter()
    history = clip.train_clip(model, split.train.images, tokens, run.recipe, seed=run.seed, device=device, progress=progress)
    result = {"final_loss": round(history.last("loss", 50), 4), "seconds": round(time.perf_counter() - start, 1),
              "loss_per_50_steps": _loss_per_50_steps(history), "torch": torch.__version__}
    return model, config, result


def pretrain_char_lm(run: CharLMPretraining = CharLMPretraining(), *, device: Any = None,
                     progress: bool | None = None) -> tuple[Any, sft.CharTokenizer, dict[str, Any]]:
    """Pre-train Chapter 5b's character GPT-2 on the corpus's training documents; measure it on the held-out ones.

    Returns:
        ``(model, tokenizer, result)``; ``result`` holds the held-out loss in nats and bits per character,
        the bits per character of a unigram model of the training text, the seconds and the loss curve.
    """
    corpus = load_corpus(held_out=run.held_out, seed=run.split_seed)
    tokenizer = sft.CharTokenizer()
    train_data = sft.corpus_blocks(corpus.texts("train"), tokenizer, block=run.block, stride=run.stride)
    test_data = sft.corpus_blocks(corpus.texts("test"), tokenizer, block=run.block)
    counts = Counter(train_data[0][:: run.block // run.stride].flatten().tolist())  # non-overlapping windows
    n = sum(counts.values())
    unigram_bits = -sum(c / n * math.log2(c / n) for c in counts.values())
    model = sft.tiny_gpt(tokenizer, sft.TinyGPTConfig(n_positions=run.block), seed=run.seed)
    print(f"{len(train_data[0])} training windows of {run.block} characters, {len(test_data[0])} held-out windows")
    def report(i: int, values: Any) -> None:
        if i % 250 == 0:
            print(f"  step {i}/{run.recipe.steps}, loss {values['loss']:.3f}", flush=True)

    start = time.perf_counter()
    history = train(model, train_data, sft.lm_step, run.recipe, seed=run.seed, device=device, progress=progress,
                    desc="char LM", callbacks=(report,))
    seconds = time.perf_counter() - start
    loss = sft.held_out_loss(model, test_data, device=device)
    result = {"final_loss": round(history.last("loss", 50), 4), "held_out_loss": round(loss, 4),
              "held_out_bits_per_char": round(loss / math.log(2), 4), "unigram_bits_per_char": round(unigram_bits, 4),
              "seconds": round(seconds, 1), "loss_per_50_steps": _loss_per_50_steps(history), "torch": torch.__version__}
    return model.cpu(), tokenizer, result


def record_sft_comparison(*, seeds: Sequence[int] = sft.SEEDS, device: Any = None, directory: Path | None = None) -> dict[str, Any]:
    """Run Chapter 5b's SFT arms (:data:`lfd13.sft.ARMS`) for every seed; add what they measured to the checkpoint's JSON.

    The weights are written again unchanged (same bytes, same sha256); ``result["sft_comparison"]``
    holds, per arm and seed, the test scores and the validation exact match every
    :data:`lfd13.sft.EVAL_EVERY` steps.
    """
    data = sft.chapter_data()
    runs: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for arm in sft.ARMS:
        for seed in seeds:
            _, history, scores = sft.run_arm(arm, data, seed=seed, device=device, progress=False, directory=directory)
            runs.setdefault(arm.name, {})[str(seed)] = {
                "test": {k: round(v, 5) for k, v in scores.items()},
                "validation_exact": [[step, round(v, 4)] for step, v in history.evals["exact"]],
                "response_loss_per_50_steps": [round(sum(history["response_loss"][i : i + 50]) / 50, 4)
                                               for i in range(0, len(history["response_loss"]), 50)],
                "seconds": round(history.seconds[-1], 1),
            }
            print(f"  {arm.name}, seed {seed}: exact match {scores['all']:.3f}, {history.seconds[-1]:.0f} s", flush=True)
    record = {"command": "python -m lfd13.pretrain charlm-sft", "recipe": asdict(sft.SFT_DEMO), "seeds": list(seeds),
              "n_train": sft.N_TRAIN, "n_validation": sft.N_VALIDATION, "n_test": sft.N_TEST, "eval_every": sft.EVAL_EVERY,
              "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__, "runs": runs}
    model, tokenizer, info = sft.load_checkpoint(directory=directory)
    sft.save_checkpoint(model, tokenizer, info.name, recipe=info.recipe, result=info.result | {"sft_comparison": record},
                        command=info.command, directory=directory or shipped.CHECKPOINT_DIR)
    return record


def record_mae(*, device: Any = None, directory: Path | None = None) -> dict[str, Any]:
    """Record Chapter 3's longer measurements in its checkpoints' JSON files; the weights are written again unchanged.

    - ``mae_digits``: ``result["finetune_comparison"]`` holds, per arm of :data:`lfd13.mae.FT_ARMS` and
      seed, the test accuracy, the step chosen on validation and the validation curve;
    - each ``mae_digits_ratio*`` checkpoint: ``result["cls_probe"]``, its :func:`lfd13.mae.cls_probe`
      accuracy per seed.

    Run it again after ``python -m lfd13.pretrain mae`` or ``mae-sweep``, which write the JSON anew.
    """
    runs: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for seed in FT_SEEDS:
        for arm in FT_ARMS:
            res = finetune_arm(arm, seed, device=device, directory=directory)
            runs.setdefault(arm, {})[str(seed)] = res.to_record()
            print(f"  {arm}, seed {seed}: accuracy {res.accuracy:.3f} at step {res.best_step}", flush=True)
    record = {"command": RECORD, "seeds": list(FT_SEEDS), "transformer_recipe": asdict(FT_RECIPE),
              "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__, "runs": runs}
    model, info = load_mae("mae_digits", directory=directory)
    save_mae(model, info.name, recipe=info.recipe, result=info.result | {"finetune_comparison": record}, command=info.command,
             directory=directory or shipped.CHECKPOINT_DIR)
    digits = load_digits(size=MAEPretraining().image_size)
    for ratio in SWEEP_RATIOS:
        model, info = load_mae(f"mae_digits_ratio{int(round(ratio * 100)):02d}", directory=directory)
        probe = cls_probe(model, digits, device=device)
        print(f"  mask ratio {ratio}: [CLS] probe {probe.mean:.3f}", flush=True)
        probe_record = {"command": RECORD, "n_per_class": probe.n_per_class, "seeds": list(FT_SEEDS),
                        "accuracies": [round(a, 5) for a in probe.accuracies]}
        save_mae(model, info.name, recipe=info.recipe, result=info.result | {"cls_probe": probe_record}, command=info.command,
                 directory=directory or shipped.CHECKPOINT_DIR)
    return record


def record_pretext_benefits(*, device: Any = None, directory: Path | None = None) -> dict[str, Any]:
    """Run Chapter 1b's trainings for slide 8 and save them as the record :data:`lfd13.pretext.BENEFITS`.

    - ``scratch[n]``: Chapter 1a's CNN trained from scratch on ``n`` labels per class, one test
      accuracy per probe run (its label draw), for every budget of :data:`lfd13.pretext.BENEFIT_BUDGETS`;
    - ``finetune[start]``: for every shipped seed, the encoder of the family chosen on validation
      (:func:`lfd13.pretext.best_by_validation`, ``family``) and the random initialisation its
      pre-training started from, fine-tuned by :func:`lfd13.pretext.finetune_run`.

    Run it again after ``python -m lfd13.pretrain pretext``: the fine-tuning starts from those checkpoints.
    """
    pt = pretext
    digits = load_digits()
    tasks = {f: [pt.load_checkpoint(pt.checkpoint_name(f, s)) for s in pt.SHIPPED_SEEDS] for f in pt.FAMILIES}
    family, _ = pt.best_by_validation({f: [info for _, info in per_seed] for f, per_seed in tasks.items()})
    config, run = tasks[family][0][0].encoder.config, tasks[family][0][1].recipe
    start = time.perf_counter()
    scratch = {str(n): [round(pt.scratch_accuracy(digits, n, r, device=device), 5) for r in pt.PROBE_RUNS]
               for n in pt.BENEFIT_BUDGETS}
    starts = {"pre-trained": [task.encoder for task, _ in tasks[family]],
              "random weights": [pt.build_encoder(config, seed=s) for s in pt.SHIPPED_SEEDS]}
    finetuned = {name: [pt.finetune_run(e, digits, s, n_val=run["n_val_per_class"], device=device).to_record()
                        for s, e in zip(pt.SHIPPED_SEEDS, encoders)] for name, encoders in starts.items()}
    for name, rows in finetuned.items():
        accs = ", ".join(f"{row['accuracy']:.3f}" for row in rows)
        print(f"  fine-tuned from {name}: test accuracy {accs}", flush=True)
    result = {"family": family, "seeds": list(pt.SHIPPED_SEEDS), "runs": list(pt.PROBE_RUNS),
              "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
              "scratch": scratch, "finetune": finetuned}
    shipped.save_record(pt.BENEFITS, command=pt.BENEFITS_RECORD,
                        config={"budgets": list(pt.BENEFIT_BUDGETS), "finetune_labels": pt.FINETUNE_LABELS,
                                "eval_every": pt.FINETUNE_EVAL_EVERY, "n_val_per_class": run["n_val_per_class"]},
                        recipe=asdict(pt.SCRATCH_RECIPE), result=result, directory=directory or shipped.CHECKPOINT_DIR)
    return result


def record_finetune_comparison(*, device: Any = None, directory: Path | None = None) -> dict[str, Any]:
    """Run Chapter 5's transformer runs (:data:`lfd13.finetune.COMPARISON_RUNS`) and save them as a record.

    ``result["runs"][run_key]`` holds each run's test accuracy, the step chosen on validation, its
    validation curve and its seconds; no weights are kept.
    """
    from lfd13.data.newsgroups import load_newsgroups
    from lfd13.pretrained import load_text_encoder

    ft = finetune
    data = load_newsgroups(n_test_per_class=40)
    tokenizer, encoder = load_text_encoder(device=device)
    test = ft.encode_texts(tokenizer, data.test_texts, data.test_labels, max_length=ft.COMPARISON_MAX_TOKENS)
    start, runs = time.perf_counter(), {}
    for n, seed, pretrained in ft.COMPARISON_RUNS:
        res = ft.early_stopped_run(encoder, tokenizer, data, test, n, seed, pretrained=pretrained, device=device)
        runs[ft.run_key(n, seed, pretrained)] = res.to_record()
        print(f"  {ft.run_key(n, seed, pretrained)}: accuracy {res.accuracy:.3f} at step {res.best_step}", flush=True)
    result = {"seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__, "n_test": len(test.labels),
              "runs": runs}
    shipped.save_record(ft.COMPARISON, command=ft.COMPARISON_RECORD,
                        config={"budgets": list(ft.COMPARISON_BUDGETS), "seeds": list(ft.COMPARISON_SEEDS),
                                "n_val": ft.COMPARISON_N_VAL, "eval_every": ft.COMPARISON_EVAL_EVERY,
                                "max_tokens": ft.COMPARISON_MAX_TOKENS},
                        recipe={"pretrained": asdict(ft.COMPARISON_RECIPES[True]),
                                "from scratch": asdict(ft.COMPARISON_RECIPES[False])},
                        result=result, directory=directory or shipped.CHECKPOINT_DIR)
    return result


def record_transfer(*, device: Any = None, directory: Path | None = None) -> dict[str, Any]:
    """Train Chapter 5a's source CNN, run every target network of :data:`lfd13.finetune.TRANSFER_RUNS`, save both.

    ``result["runs"][task][variant]`` holds the test accuracy of each seed, in seed order.
    """
    ft = finetune
    digits = load_digits()
    tasks = ft.transfer_tasks(digits)
    start = time.perf_counter()
    source = ft.train_source_cnn(digits, device=device)
    runs: dict[str, dict[str, list[float]]] = {}
    for task, (variants, seeds) in ft.TRANSFER_RUNS.items():
        for variant in variants:
            accs = [ft.transfer_accuracy(source, tasks, task, ft.TRANSFER_VARIANTS[variant], s, device=device) for s in seeds]
            runs.setdefault(task, {})[variant] = [round(a, 5) for a in accs]
            print(f"  {task}, copy {variant}: {sum(accs) / len(accs):.3f} over {len(seeds)} seeds", flush=True)
    result = {"seeds": {task: list(seeds) for task, (_, seeds) in ft.TRANSFER_RUNS.items()},
              "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__, "runs": runs}
    ft.save_source_cnn(source.cpu(), result=result, directory=directory or shipped.CHECKPOINT_DIR)
    return result


def record_peft_comparison(*, device: Any = None, directory: Path | None = None) -> dict[str, Any]:
    """Run Chapter 6's longer comparisons; save the rank sweep's rank-32 adapter with them in its JSON.

    - ``seeds``: full fine-tuning and LoRA (r = 8, alpha = 16) for every seed of
      :data:`lfd13.peft_tools.SEEDS`, each seed drawing its labelled posts, head and batch order;
    - ``update_energy``: the share of seed 0's full fine-tuning update (W - W0) of every layer's
      query and value matrices in their top :data:`lfd13.peft_tools.ENERGY_TOP_K` singular
      directions, and the same for a full fine-tuning on shuffled labels (the control);
    - ``rank_sweep``: LoRA at seed 0 for every rank of :data:`lfd13.peft_tools.RANKS`, with alpha
      fixed at :data:`lfd13.peft_tools.LORA_ALPHA` and with alpha = 2 r, all at LoRA's learning rate
      (the rank-8, alpha-16 run is seed 0 of ``seeds``).

    Every run is the chapter's: the same posts, recipes and :func:`lfd13.peft_tools.fit_and_score`.
    """
    from lfd13.data.newsgroups import load_newsgroups
    from lfd13.finetune import sequence_classifier, train_classifier
    from lfd13.pretrained import load_text_encoder

    pt = peft_tools
    news = load_newsgroups(n_test_per_class=pt.N_TEST_PER_CLASS)
    tokenizer, encoder = load_text_encoder(device=device)
    test, classes = pt.test_posts(news, tokenizer), news.num_classes
    total = sequence_classifier(encoder, num_labels=classes).num_parameters()
    start = time.perf_counter()

    def run(model: torch.nn.Module, train_set: Any, recipe: Recipe, seed: int, label: str) -> dict[str, Any]:
        row = pt.fit_and_score(label, model, train_set, test, recipe, total=total, seed=seed, device=device)
        print(f"  {label}, seed {seed}: accuracy {row.accuracy:.3f}, {row.seconds:.0f} s", flush=True)
        return {"accuracy": round(row.accuracy, 5), "trainable": row.trainable, "seconds": round(row.seconds, 1)}

    seeds: dict[str, dict[str, Any]] = {"full fine-tuning": {}, "LoRA r=8": {}}
    energy: dict[str, Any] = {"top_k": pt.ENERGY_TOP_K}  # the seed-0 update's low-rank share, with a shuffled-label control
    for seed in pt.SEEDS:
        train_set = pt.training_posts(news, tokenizer, seed)
        full = sequence_classifier(encoder, num_labels=classes, seed=seed)
        seeds["full fine-tuning"][str(seed)] = run(full, train_set, pt.FULL_SHORT, seed, "full fine-tuning")
        if seed == 0:
            before = sequence_classifier(encoder, num_labels=classes, seed=seed)
            null = sequence_classifier(encoder, num_labels=classes, seed=seed)
            train_classifier(null, pt.shuffled_labels(train_set, seed=seed), pt.FULL_SHORT, seed=seed, device=device)
            energy |= {"task labels": pt.update_energy(before, full), "shuffled labels": pt.update_energy(before, null)}
            del before, null
        lora = pt.apply_peft(sequence_classifier(encoder, num_labels=classes, seed=seed), pt.lora_config(8), seed=seed)
        seeds["LoRA r=8"][str(seed)] = run(lora, train_set, pt.LORA_FINETUNE, seed, "LoRA r=8")
    train_set, kept = pt.training_posts(news, tokenizer, 0), None
    sweep: dict[str, dict[str, Any]] = {"alpha fixed": {}, "alpha = 2r": {}}
    for r in pt.RANKS:
        for arm, alpha in (("alpha fixed", pt.LORA_ALPHA), ("alpha = 2r", 2.0 * r)):
            if (r, alpha) == (8, pt.LORA_ALPHA):
                sweep[arm][str(r)] = seeds["LoRA r=8"]["0"]  # the same configuration, the same run
                continue
            model = pt.apply_peft(sequence_classifier(encoder, num_labels=classes, seed=0),
                                  pt.lora_config(r, alpha=alpha), seed=0)
            sweep[arm][str(r)] = run(model, train_set, pt.LORA_FINETUNE, 0, f"LoRA r={r}, {arm}")
            if (r, arm) == (max(pt.RANKS), "alpha fixed"):
                kept = model
    assert kept is not None
    record = {"seeds": list(pt.SEEDS), "ranks": list(pt.RANKS), "lora_alpha": pt.LORA_ALPHA,
              "n_per_class": pt.N_PER_CLASS, "n_test": len(test.labels), "max_length": pt.MAX_LENGTH,
              "recipes": {"full fine-tuning": asdict(pt.FULL_SHORT), "LoRA": asdict(pt.LORA_FINETUNE)},
              "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
              "seed_comparison": seeds, "rank_sweep": sweep, "update_energy": energy}
    pt.save_adapter(kept.cpu(), pt.ADAPTER, seed=0, recipe=asdict(pt.LORA_FINETUNE), result=record,
                    directory=directory or shipped.CHECKPOINT_DIR)
    return record


def pretrain_mlm(steps: int, *, vocab: Path | None, out: Path, device: Any, only: str | None = None) -> None:
    """Pre-train the masked LM and its left-to-right twin; save both, evaluated as shipped (float16)."""
    config = mlm.PretrainConfig(steps=steps)
    # tokenizers' WordPiece trainer breaks frequency ties in a run-dependent order, so both models
    # must share one trained vocabulary: train it once, or pass the shipped one with --vocab
    given = mlm.tokenizer_from_vocab(vocab.read_text(encoding="utf-8").splitlines()) if vocab else None
    tokenizer, train_blocks, test_blocks = mlm.prepare_corpus(config, tokenizer=given)
    held_out = mlm.evaluation_batch(tokenizer, test_blocks)
    base, top = mlm.unigram_baseline(train_blocks, held_out["labels"])
    print(f"train blocks {tuple(train_blocks.shape)}, held-out blocks {tuple(test_blocks.shape)}, "
          f"unigram baseline {base:.4f} ({tokenizer.convert_ids_to_tokens(top)})")
    command = f"{mlm.RECREATE} --steps {steps}" + (f" --vocab {vocab}" if vocab else "")
    for kind in ("mlm", "causal"):
        if only and only != kind:
            continue
        start = time.perf_counter()
        res = mlm.pretrain(tokenizer, train_blocks, config, causal=kind == "causal", device=device, progress=False)
        result: dict[str, Any] = {
            "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
            "history": {"loss": [round(v, 4) for v in res.history["loss"]], "acc": [round(v, 4) for v in res.history["acc"]]},
        }
        name = f"bert-nano-{kind}"
        # evaluate exactly what ships: the float16 weights, read back
        mlm.save_checkpoint(name, res.model, tokenizer, recipe=asdict(config), result=result, command=command, directory=out)
        model, _, _ = mlm.load_checkpoint(name, directory=out, device=device)
        acc = mlm.masked_token_accuracy(model, held_out, originals=test_blocks.repeat(4, 1))
        result |= {"held_out_masked_accuracy": round(acc, 4), "unigram_baseline": round(base, 4)}
        mlm.save_checkpoint(name, res.model, tokenizer, recipe=asdict(config), result=result, command=command, directory=out)
        print(f"{name}: {result['seconds']:.0f} s, held-out accuracy at masked positions {acc:.4f} ({acc / base:.2f}x baseline)")


PRETEXT_SEEDS = pretext.SHIPPED_SEEDS


@dataclass(frozen=True)
class PretextPretraining:
    """Chapter 1b's pre-training of one pretext family, probed on a validation split of the training pool as it trains."""

    family: str = "rotation"  # one of lfd13.pretext.FAMILIES
    preset: str = "pretext-digits"  # encoder preset in lfd13.pretext.PRESETS
    seed: int = 0  # seeds the initial weights, the batch order and the random rotations / masks / views
    steps: int = 2000  # optimiser steps, the same for every family
    rounds: int = 20  # clustering: a fresh k-means every steps / rounds = 100 steps (about 10 epochs)
    probe_steps: tuple[int, ...] = (0, 100, 250, 500, 1000, 1500, 2000)  # when the validation probe runs
    n_per_class: int = 10  # labelled images per class the validation probe is fitted on
    n_val_per_class: int = 30  # validation images per class it is scored on (training pool, disjoint; no test image)
    split_seed: int = 0  # seed of that split (lfd13.sampling.split_indices)


def _per_10_steps(values: list[float]) -> list[float]:
    return [round(sum(values[i : i + 10]) / len(values[i : i + 10]), 5) for i in range(0, len(values), 10)]


def pretrain_pretext(run: PretextPretraining = PretextPretraining(), *, device: Any = None,
                     progress: bool | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Pre-train one family on the digits' training images; probe both layers on the validation split at ``probe_steps``.

    Returns:
        ``(task, result)``; ``result`` holds the loss (and pretext accuracy) per 10 steps, the
        validation probes by step and the seconds of training (probes excluded).
    """
    data = load_digits()
    config = pretext.pretext_config(run.preset, steps=run.steps, rounds=run.rounds)
    task = pretext.build_task(run.family, config, seed=run.seed)
    train_idx, val_idx = split_indices(data.y_train, run.n_per_class, run.n_val_per_class, seed=run.split_seed)
    probes: dict[str, list[float]] = {"step": [], "conv": [], "last": []}
    probe_seconds = [0.0]

    def probe(i: int, _: Any = None) -> None:
        if i not in run.probe_steps:
            return
        start = time.perf_counter()
        acc = pretext.probe_layers(task.encoder, data.x_train, data.y_train, train_idx, val_idx, device=device)
        task.train()
        probes["step"].append(i)
        for layer, value in acc.items():
            probes[layer].append(round(value, 4))
        probe_seconds[0] += time.perf_counter() - start
        print(f"  {run.family} seed {run.seed}: step {i}/{run.steps}, validation probe "
              f"conv {acc['conv']:.3f}, last {acc['last']:.3f}", flush=True)

    probe(0)
    start = time.perf_counter()
    history = pretext.train_task(task, data.x_train, seed=run.seed, device=device, progress=progress, callbacks=(probe,))
    result: dict[str, Any] = {
        "final_loss": round(history.last("loss", 50), 5),
        "seconds": round(time.perf_counter() - start - probe_seconds[0], 1),
        "probe_seconds": round(probe_seconds[0], 1),
        "loss_per_10_steps": _per_10_steps(history["loss"]),
        "validation_probe": probes,
        "torch": torch.__version__,
    }
    if "acc" in history.metrics:
        result["pretext_acc_per_10_steps"] = _per_10_steps(history["acc"])
    return task.cpu().eval(), result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lfd13.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["pretext", "mae", "mae-sweep", "clip", "mlm", "charlm", "charlm-sft", "peft", "mae-record", "transfer", "finetune-record", "pretext-benefits"], help="which checkpoint(s) to (re)create")
    parser.add_argument("--out", type=Path, default=shipped.CHECKPOINT_DIR, help="output folder (default: the package's checkpoints)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the recipe's)")
    parser.add_argument("--vocab", type=Path, default=None, help="mlm: use this vocabulary (one token per line) instead of training one")
    parser.add_argument("--only", choices=("mlm", "causal"), default=None, help="mlm: train only one of the two models")
    args = parser.parse_args(argv)
    device = setup(seed=0, style=False)
    args.out.mkdir(parents=True, exist_ok=True)
    command = f"python -m lfd13.pretrain {args.what}" + (f" --steps {args.steps}" if args.steps else "")
    if args.what == "pretext":
        for family in pretext.FAMILIES:
            for seed in PRETEXT_SEEDS:
                run = PretextPretraining(family=family, seed=seed)
                if args.steps:
                    run = replace(run, steps=args.steps, probe_steps=tuple(sorted({*(s for s in run.probe_steps
                                                                                     if s < args.steps), args.steps})))
                task, result = pretrain_pretext(run, device=device, progress=False)
                name = pretext.checkpoint_name(family, seed)
                info = pretext.save_checkpoint(task, name, recipe=asdict(run), result=result, command=command,
                                               directory=args.out)
                print(f"{name}: loss {result['final_loss']}, {result['seconds']} s, sha256 {info.sha256[:12]}", flush=True)
        return
    if args.what == "mlm":
        pretrain_mlm(args.steps or mlm.PretrainConfig.steps, vocab=args.vocab, out=args.out, device=device, only=args.only)
        return
    recorders = {  # comparisons recorded in a checkpoint's JSON: command -> (recorder, checkpoint written)
        "charlm-sft": (record_sft_comparison, sft.PRETRAINED), "mae-record": (record_mae, "mae_digits and mae_digits_ratio*"),
        "transfer": (record_transfer, finetune.SOURCE_CNN), "peft": (record_peft_comparison, peft_tools.ADAPTER),
        "finetune-record": (record_finetune_comparison, finetune.COMPARISON),
        "pretext-benefits": (record_pretext_benefits, pretext.BENEFITS),
    }
    if args.what in recorders:
        recorder, written = recorders[args.what]
        record = recorder(device=device, directory=args.out)
        print(f"{args.what}: recorded in {written} ({args.out}), {record['seconds']:.0f} s")
        return
    if args.what == "charlm":
        run = CharLMPretraining()
        run = replace(run, recipe=replace(run.recipe, steps=args.steps)) if args.steps else run
        model, tokenizer, result = pretrain_char_lm(run, device=device)
        info = sft.save_checkpoint(model, tokenizer, recipe=asdict(run), result=result, command=command, directory=args.out)
        print(f"{info.name}: held-out {result['held_out_bits_per_char']} bits/char (unigram {result['unigram_bits_per_char']}), "
              f"{result['seconds']} s, sha256 {info.sha256[:12]}")
        return
    if args.what == "clip":
        for seed in CLIP_SEEDS:
            run = CLIPPretraining(seed=seed)
            run = replace(run, recipe=replace(run.recipe, steps=args.steps)) if args.steps else run
            model, config, result = pretrain_clip(run, device=device)
            info = clip.save_checkpoint(model.cpu(), config, f"clip_shapes_seed{seed}", recipe=asdict(run), result=result,
                                        directory=args.out)
            print(f"clip_shapes_seed{seed}: loss {result['final_loss']}, {result['seconds']} s, sha256 {info.sha256[:12]}")
        return
    if args.what == "mae":
        jobs = [(MAEPretraining(), "mae_digits")]
    else:
        jobs = [(MAEPretraining(mask_ratio=r, recipe=replace(MAEPretraining().recipe, steps=SWEEP_STEPS)),
                 f"mae_digits_ratio{int(round(r * 100)):02d}") for r in SWEEP_RATIOS]
    for run, name in jobs:
        run = replace(run, recipe=replace(run.recipe, steps=args.steps)) if args.steps else run
        model, result = pretrain_mae(run, device=device)
        info = save_mae(model.cpu(), name, recipe=asdict(run), result=result, command=command, directory=args.out)
        print(f"{name}: loss {result['final_loss']}, {result['seconds']} s, sha256 {info.sha256[:12]}")


if __name__ == "__main__":
    main()
