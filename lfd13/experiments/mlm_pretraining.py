"""Chapter 2's small BERT: a masked LM and its left-to-right twin, pre-trained on the course corpus and shipped.

Both models are ``bert-nano`` (:mod:`lfd13.mlm.model`), trained by one recipe
(:class:`lfd13.mlm.PretrainConfig`) on the same blocks with the same WordPiece vocabulary; they
differ only in the attention mask and the objective (:func:`lfd13.mlm.mlm_step`,
:func:`lfd13.mlm.causal_step`). Each is saved in float16 and evaluated *as shipped* (the float16
weights, read back as float32) at the held-out masked positions, against the unigram baseline;
the training run's measurements (seconds, loss and accuracy per step, that held-out accuracy)
are in its checkpoint's JSON::

    python -m lfd13.recreate mlm
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import BertTokenizer, PreTrainedModel

from lfd13 import mlm, shipped
from lfd13.data.corpus import SOURCES
from lfd13.experiments import Entry, command

__all__ = ["KINDS", "NAME", "SETTINGS", "TINY", "ENTRIES", "Result", "Settings", "TrainingRun", "check",
           "checkpoint_name", "files", "load", "run", "write"]

#: This experiment's row in :data:`lfd13.recreate.ENTRIES`.
NAME = "mlm"

#: The two models, in the order they are trained: the bidirectional masked LM and its left-to-right twin.
KINDS = ("mlm", "causal")


@dataclass(frozen=True)
class Settings:
    """The shipped masked LM and its twin: one recipe, one corpus, one vocabulary."""

    pretraining: mlm.PretrainConfig = field(default_factory=lambda: mlm.PretrainConfig(steps=1500))  # the recipe of both
    sources: tuple[str, ...] = SOURCES  # the corpus sources read (lfd13.data.load_corpus)
    # train on the vocabulary of the shipped checkpoints (lfd13/checkpoints/bert-nano-mlm.vocab.txt) rather than
    # a new one: the WordPiece trainer of `tokenizers` breaks ties between equally frequent merges in a
    # run-dependent order, so a freshly trained vocabulary differs in a few entries
    reuse_shipped_vocabulary: bool = True
    eval_seed: int = 1234  # seeds the fixed held-out masks (lfd13.mlm.evaluation_batch)
    eval_repeats: int = 4  # maskings of every held-out block


#: The shipped run.
SETTINGS = Settings()

#: The same run in about a second: the smallest preset, one small source, a vocabulary trained here, two steps.
TINY = Settings(
    pretraining=mlm.PretrainConfig(preset="bert-pico", steps=2, batch_size=8, warmup=1, vocab_size=512, held_out=0.34),
    sources=("andersen",),
    reuse_shipped_vocabulary=False,
    eval_repeats=1,
)


@dataclass(frozen=True)
class TrainingRun:
    """What one model's pre-training measured (the ``result`` of its checkpoint's JSON)."""

    seconds: float  # wall-clock seconds of training
    loss: tuple[float, ...]  # training loss at each step
    acc: tuple[float, ...]  # training accuracy at the selected positions, each step
    held_out_masked_accuracy: float  # top-1 accuracy at the held-out masked positions, float16 weights as shipped
    unigram_baseline: float  # the same for always guessing the most frequent training token
    torch: str  # the torch version that trained it

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint JSON's ``result``."""
        return {"seconds": self.seconds, "torch": self.torch, "history": {"loss": list(self.loss), "acc": list(self.acc)},
                "held_out_masked_accuracy": self.held_out_masked_accuracy, "unigram_baseline": self.unigram_baseline}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TrainingRun:
        return cls(seconds=record["seconds"], loss=tuple(record["history"]["loss"]), acc=tuple(record["history"]["acc"]),
                   held_out_masked_accuracy=record["held_out_masked_accuracy"], unigram_baseline=record["unigram_baseline"],
                   torch=record["torch"])


@dataclass(frozen=True)
class Result:
    """The two trained models, their shared tokenizer, and what each training run measured."""

    runs: dict[str, TrainingRun]  # "mlm" or "causal" -> its run
    models: dict[str, PreTrainedModel] = field(default_factory=dict, compare=False, repr=False)  # float32, CPU, eval mode
    tokenizer: BertTokenizer | None = field(default=None, compare=False, repr=False)  # the shared WordPiece tokenizer

    def to_dict(self) -> dict[str, Any]:
        return {kind: run.to_dict() for kind, run in self.runs.items()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Result:
        return cls(runs={kind: TrainingRun.from_dict(run) for kind, run in record.items()})


def checkpoint_name(settings: Settings, kind: str) -> str:
    """``bert-nano-mlm``, ``bert-nano-causal``: the model preset, then the kind."""
    return f"{settings.pretraining.preset}-{kind}"


def files(settings: Settings) -> tuple[str, ...]:
    """The files this experiment writes: weights, vocabulary and JSON of each model."""
    return tuple(f"{checkpoint_name(settings, kind)}.{ext}" for kind in KINDS
                 for ext in ("safetensors", mlm.VOCAB_SUFFIX, "json"))


def _tokenizer(settings: Settings) -> BertTokenizer | None:
    """The shipped vocabulary when the settings reuse it (read before this run overwrites it), else None (train one)."""
    if not settings.reuse_shipped_vocabulary:
        return None
    path = shipped.CHECKPOINT_DIR / f"{checkpoint_name(SETTINGS, KINDS[0])}.{mlm.VOCAB_SUFFIX}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: restore it (git checkout) or set reuse_shipped_vocabulary=False "
                                "to train a new vocabulary")
    return mlm.tokenizer_from_vocab(path.read_text(encoding="utf-8").splitlines())


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None) -> Result:
    """Pre-train both models on the same blocks; evaluate each as shipped (float16 weights) on the held-out blocks."""
    config = settings.pretraining
    tokenizer, train_blocks, test_blocks = mlm.prepare_corpus(config, _tokenizer(settings), sources=settings.sources)
    held_out = mlm.evaluation_batch(tokenizer, test_blocks, seed=settings.eval_seed, repeats=settings.eval_repeats)
    originals = test_blocks.repeat(settings.eval_repeats, 1)  # what the causal model reads
    baseline, top = mlm.unigram_baseline(train_blocks, held_out["labels"])
    print(f"train blocks {tuple(train_blocks.shape)}, held-out blocks {tuple(test_blocks.shape)}, "
          f"unigram baseline {baseline:.4f} ({tokenizer.convert_ids_to_tokens(top)})", flush=True)
    runs, models = {}, {}
    for kind in KINDS:
        start = time.perf_counter()
        trained = mlm.pretrain(tokenizer, train_blocks, config, causal=kind == "causal", device=device, progress=progress)
        seconds = time.perf_counter() - start
        as_shipped = copy.deepcopy(trained.model).to(torch.float16).float().eval()  # what loading the checkpoint gives
        acc = mlm.masked_token_accuracy(as_shipped, held_out, originals=originals)  # on the training device
        as_shipped.cpu()
        runs[kind] = TrainingRun(
            seconds=round(seconds, 1), loss=tuple(round(v, 4) for v in trained.history["loss"]),
            acc=tuple(round(v, 4) for v in trained.history["acc"]), held_out_masked_accuracy=round(acc, 4),
            unigram_baseline=round(baseline, 4), torch=torch.__version__,
        )
        models[kind] = as_shipped
        print(f"{checkpoint_name(settings, kind)}: {seconds:.0f} s, held-out accuracy at masked positions {acc:.4f} "
              f"({acc / baseline:.2f}x baseline)", flush=True)
    return Result(runs=runs, models=models, tokenizer=tokenizer)


def write(settings: Settings = SETTINGS, *, checkpoints: Path, results: Path, device: Any = None,
          progress: bool | None = None) -> Result:
    """Train (:func:`run`) and save both models in float16, with their vocabulary, in ``checkpoints`` (no result file)."""
    result = run(settings, device=device, progress=progress)
    assert result.tokenizer is not None
    for kind, model in result.models.items():
        shipped.save_model(checkpoint_name(settings, kind), copy.deepcopy(model).to(torch.float16), kind=mlm.KIND,
                           command=command(NAME), config=mlm.checkpoint_config(model), recipe=asdict(settings.pretraining),
                           result=result.runs[kind].to_dict(), extra_files=mlm.vocab_file(result.tokenizer),
                           directory=checkpoints)
    return result


def check(*, checkpoints: Path, results: Path) -> Result:
    """Load what this row wrote into ``checkpoints`` (the shipped run's, else the tiny run's), hashes checked."""
    return load(checkpoints, SETTINGS if (Path(checkpoints) / files(SETTINGS)[-1]).is_file() else TINY)


def load(directory: Path | str | None = None, settings: Settings = SETTINGS) -> Result:
    """The shipped models (or those in ``directory``), their tokenizer and what their training measured, hashes checked."""
    runs, models, tokenizers = {}, {}, []
    for kind in KINDS:
        models[kind], tokenizer, info = mlm.load_trained_bert(checkpoint_name(settings, kind), directory=directory)
        runs[kind] = TrainingRun.from_dict(info.result)
        tokenizers.append(mlm.vocab_list(tokenizer))
    if tokenizers[0] != tokenizers[1]:
        raise ValueError(f"the two models in {directory or shipped.CHECKPOINT_DIR} do not share one vocabulary; "
                         f"run `{command(NAME)}`")
    return Result(runs=runs, models=models, tokenizer=tokenizer)


#: This module's rows of the recreate table (:data:`lfd13.recreate.ENTRIES`).
ENTRIES: tuple[Entry, ...] = (
    Entry(NAME, "Chapter 2: the masked LM bert-nano-mlm and its left-to-right twin bert-nano-causal (float16, one vocabulary)",
          SETTINGS, TINY, files, write, check),
)
