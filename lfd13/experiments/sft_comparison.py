"""Chapter 5b's SFT comparison: pre-trained vs from scratch, and which tokens the loss scores.

Four arms fine-tune the character GPT-2 (the checkpoint ``gpt-nano-char`` written by
:mod:`lfd13.experiments.charlm_pretraining`, or the same architecture randomly initialised) on the
same generated demonstrations with the same recipe, over several seeds; they differ in where they
start and in the SFT loss (:class:`lfd13.sft.SFTLoss`). Each run's exact match on held-out test
prompts, and the validation exact match along training, go to ``lfd13/results/sft_comparison.json``.

Why scoring the prompt costs so much can be measured along a run (``run_arm(..., probe=n)``, not in the
recorded runs): :func:`gradient_parts`, on a fixed batch of training demonstrations, says how much of the every-token gradient the prompt's terms
make up, whether they pull against the response's terms, and the loss on the prompt's random
letters; at the end, :func:`copy_ratio`, how much more probability a prompt letter gets when it
already occurred earlier in the string (copying, which ``upper``, ``reverse`` and ``sort`` need).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2LMHeadModel

from lfd13 import shipped, sft
from lfd13.experiments import Entry, command
from lfd13.runtime import IGNORE_INDEX
from lfd13.sft import EVERY_TOKEN, EVERY_TOKEN_PER_RESPONSE, RESPONSE_ONLY, CharTokenizer, Example, SFTLoss
from lfd13.train import History, Recipe

__all__ = ["NAME", "Arm", "Settings", "SETTINGS", "TINY", "PARTS", "ArmRun", "Result", "data", "gradient_parts", "copy_ratio", "run_arm", "run", "load", "files",
           "write", "check", "ENTRIES"]

#: The result file this experiment writes.
NAME = "sft_comparison"
LOSS_WINDOW = 50  # steps per point of the recorded training-loss curve (response_loss_per_50_steps)


@dataclass(frozen=True)
class Arm:
    """One configuration of the comparison."""

    name: str  # as the tables and plots label it
    pretrained: bool  # start from the pre-trained checkpoint (True) or from a random initialisation of its architecture
    loss: SFTLoss  # which tokens are scored


@dataclass(frozen=True)
class Settings:
    """The comparison: arms, seeds, demonstrations and the SFT recipe shared by every arm."""

    # pre-trained vs from scratch; response only vs every token, normalised two ways
    arms: tuple[Arm, ...] = (
        Arm("pre-trained, response only", True, RESPONSE_ONLY),
        Arm("from scratch, response only", False, RESPONSE_ONLY),
        Arm("pre-trained, every token", True, EVERY_TOKEN),
        Arm("pre-trained, every token, / response tokens", True, EVERY_TOKEN_PER_RESPONSE),
    )
    seeds: tuple[int, ...] = (0, 1, 2)  # SFT seeds: batch order, dropout and, from scratch, the initialisation
    # AdamW, warm-up, cosine (lfd13.train.Recipe), the same for every arm
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=500, lr=3e-3, batch_size=64, weight_decay=0.01, warmup=50,
                                                          betas=(0.9, 0.98), max_grad_norm=1.0))
    n_train: int = 20_000  # generated training demonstrations (no string of validation or test among them)
    n_validation: int = 200  # validation prompts (the curves)
    n_test: int = 400  # test prompts (the final scores)
    train_seed: int = 0  # seed of the training demonstrations (lfd13.sft.make_examples)
    validation_seed: int = 2000  # seed of the validation prompts
    test_seed: int = 1000  # seed of the test prompts
    eval_every: int = 50  # steps between exact-match evaluations on the validation prompts
    pretrained: str = sft.PRETRAINED  # the checkpoint the pre-trained arms start from


#: The shipped comparison, and a smoke run (one seed, two steps, a handful of prompts).
SETTINGS = Settings()
TINY = Settings(seeds=(0,), recipe=Recipe(steps=2, lr=3e-3, batch_size=8, weight_decay=0.01, warmup=1, betas=(0.9, 0.98),
                                          max_grad_norm=1.0), n_train=16, n_validation=4, n_test=8, eval_every=1)
#: What :func:`gradient_parts` measures along training (besides exact match, ``"exact"``).
PARTS = ("prompt_share", "cosine", "letter_loss")


@dataclass(frozen=True)
class ArmRun:
    """What one arm measured with one seed."""

    test: dict[str, float]  # exact match on the test prompts ("all" and per task), response_accuracy, response_loss
    validation_exact: tuple[tuple[int, float], ...]  # (step, exact match on the validation prompts)
    response_loss_per_50_steps: tuple[float, ...]  # training loss on the response tokens, mean per 50 steps
    seconds: float  # training time

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test, "validation_exact": [list(p) for p in self.validation_exact],
                "response_loss_per_50_steps": list(self.response_loss_per_50_steps), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArmRun:
        return cls(test=dict(d["test"]), validation_exact=tuple((int(s), float(v)) for s, v in d["validation_exact"]),
                   response_loss_per_50_steps=tuple(d["response_loss_per_50_steps"]), seconds=d["seconds"])


@dataclass(frozen=True)
class Result:
    """Every arm's runs, by arm name and seed."""

    runs: dict[str, dict[int, ArmRun]]  # arm name -> seed -> its run
    seconds: float  # the whole comparison's time

    def per_seed(self, arm: str, key: str = "all") -> list[float]:
        """``test[key]`` of ``arm`` for each seed, in seed order (e.g. ``"all"``, ``"upper"``, ``"response_loss"``)."""
        return [run.test[key] for _, run in sorted(self.runs[arm].items())]

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds,
                "runs": {arm: {str(s): r.to_dict() for s, r in by_seed.items()} for arm, by_seed in self.runs.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(runs={arm: {int(s): ArmRun.from_dict(r) for s, r in by_seed.items()} for arm, by_seed in d["runs"].items()},
                   seconds=d["seconds"])


def data(settings: Settings = SETTINGS) -> tuple[list[Example], list[Example], list[Example]]:
    """``(train, validation, test)`` demonstrations; no string of the last two occurs in training."""
    test = sft.make_examples(settings.n_test, seed=settings.test_seed)
    validation = sft.make_examples(settings.n_validation, seed=settings.validation_seed)
    held_out = {sft.word_of(e) for e in test + validation}
    return sft.make_examples(settings.n_train, seed=settings.train_seed, exclude=held_out), validation, test


def _letters(examples: Sequence[Example], length: int) -> torch.Tensor:
    """``[N, length - 1]`` True where the target of position t (token t+1) is a letter of the prompt's random string."""
    out = torch.zeros((len(examples), length - 1), dtype=torch.bool)
    for i, e in enumerate(examples):
        start = e.prompt.index(sft.SEPARATOR) + 1  # the string's first letter is token `start`
        out[i, start - 1 : start - 1 + len(sft.word_of(e))] = True
    return out


def gradient_parts(model: nn.Module, examples: Sequence[Example], tokenizer: CharTokenizer) -> dict[str, float]:
    """The every-token gradient split into its prompt and response parts, on ``examples`` (no dropout).

    With ``g_p`` the gradient of the sum of the prompt's terms and ``g_r`` that of the response's
    (its characters and ``[EOS]``), the every-token loss's gradient is proportional to ``g = g_p + g_r``.

    Returns:
        ``prompt_share``: ``<g_p, g> / |g|^2``, the prompt's part of ``g`` along ``g`` (the response's is
        1 minus it); ``cosine``: the cosine of ``g_p`` and ``g_r`` (below 0: they pull apart);
        ``letter_loss``: the mean loss on the prompt's random letters (nats; uniform guessing: ln 26).
    """
    ids, mask, labels, response = sft.sft_data(examples, tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    with torch.enable_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1]  # (N, L-1, V)
        target, is_response = labels[:, 1:].to(device), response[:, 1:].to(device)
        nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none")  # (N, L-1)
        is_prompt = (target != IGNORE_INDEX) & ~is_response
        g_p = torch.autograd.grad((nll * is_prompt).sum(), params, retain_graph=True)
        g_r = torch.autograd.grad((nll * is_response).sum(), params)
    g_p, g_r = torch.cat([g.flatten() for g in g_p]), torch.cat([g.flatten() for g in g_r])
    g = g_p + g_r
    letters = _letters(examples, ids.shape[1]).to(device)
    return {"prompt_share": float(g_p @ g / (g @ g)), "cosine": float(F.cosine_similarity(g_p, g_r, dim=0)),
            "letter_loss": float((nll.detach() * letters).sum() / letters.sum())}


@torch.no_grad()
def copy_ratio(model: nn.Module, examples: Sequence[Example], tokenizer: CharTokenizer) -> float:
    """Mean probability the model gives a prompt letter that already occurred earlier in its string, over the mean
    probability it gives one that did not (both from the 2nd letter on); 1 for a model that guesses uniformly,
    above 1 for one that copies from the context. On random strings the best prediction is uniform (1/26)."""
    ids, mask, _, _ = sft.sft_data(examples, tokenizer)
    device = next(model.parameters()).device
    probs = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].softmax(-1).cpu()
    seen, unseen = [], []
    for i, e in enumerate(examples):
        start, word = e.prompt.index(sft.SEPARATOR) + 1, sft.word_of(e)
        for k in range(1, len(word)):  # letter k of the string is token start + k, predicted at position start + k - 1
            p = float(probs[i, start + k - 1, ids[i, start + k]])
            (seen if word[k] in word[:k] else unseen).append(p)
    return (sum(seen) / len(seen)) / (sum(unseen) / len(unseen)) if seen and unseen else math.nan


def run_arm(
    arm: Arm, examples: tuple[Sequence[Example], Sequence[Example], Sequence[Example]], settings: Settings = SETTINGS, *,
    seed: int, device: Any = None, progress: bool | None = None, directory: Path | str | None = None, probe: int = 0,
) -> tuple[GPT2LMHeadModel, History, dict[str, float]]:
    """Fine-tune one arm: the pre-trained checkpoint (or its architecture, initialised with ``seed``) with ``arm.loss``.

    Args:
        examples: ``(train, validation, test)`` as :func:`data` returns them.
        seed: seeds the batch order and dropout (and the initialisation from scratch).
        directory: where the pre-trained checkpoint lies (default: the package's).
        probe: if above 0, also measure :func:`gradient_parts` on the first ``probe`` training demonstrations
            at every evaluation, and :func:`copy_ratio` on the test prompts at the end (the recorded runs do not).

    Returns:
        ``(model, history, scores)``: the history holds exact match on the validation prompts every
        ``settings.eval_every`` steps (``evals["exact"]``; with ``probe``, also ``evals[k]`` for ``k`` in
        :data:`PARTS`); ``scores`` is :func:`lfd13.sft.exact_match` on the test prompts plus ``response_accuracy``
        and ``response_loss`` from :func:`lfd13.sft.response_scores` (with ``probe``, also ``copy_ratio``).
    """
    train_set, validation, test = examples
    model, tokenizer, info = sft.load_char_gpt(settings.pretrained, directory=directory)
    if not arm.pretrained:
        model = sft.build_char_gpt(sft.CharGPTConfig(**info.config), seed=seed)

    probed = list(train_set[:probe])

    def evaluate(m: nn.Module) -> dict[str, float]:  # no dropout and no random draw: training runs as without it
        exact = {"exact": sft.exact_match(m, validation, tokenizer, device=device)["all"]}
        return exact | gradient_parts(m, probed, tokenizer) if probed else exact

    history = sft.train_sft(model, train_set, tokenizer, settings.recipe, loss=arm.loss, seed=seed, device=device,
                            evaluate=evaluate, eval_every=settings.eval_every, progress=progress)
    teacher_forced = sft.response_scores(model, test, tokenizer, device=device)
    scores = sft.exact_match(model, test, tokenizer, device=device)
    scores |= {"response_accuracy": teacher_forced["accuracy"], "response_loss": teacher_forced["loss"]}
    if probed:
        scores["copy_ratio"] = copy_ratio(model, test, tokenizer)
    return model, history, scores


def run(settings: Settings = SETTINGS, *, device: Any = None, progress: bool | None = None,
        directory: Path | str | None = None) -> Result:
    """Every arm with every seed; ``directory`` holds the pre-trained checkpoint (default: the package's)."""
    examples = data(settings)
    runs: dict[str, dict[int, ArmRun]] = {}
    start = time.perf_counter()
    for arm in settings.arms:
        for seed in settings.seeds:
            _, history, scores = run_arm(arm, examples, settings, seed=seed, device=device, progress=progress,
                                         directory=directory)
            losses = history["response_loss"]
            runs.setdefault(arm.name, {})[seed] = ArmRun(
                test={k: round(v, 5) for k, v in scores.items()},
                validation_exact=tuple((step, round(v, 4)) for step, v in history.evals["exact"]),
                response_loss_per_50_steps=tuple(round(sum(losses[i : i + LOSS_WINDOW]) / LOSS_WINDOW, 4)
                                                 for i in range(0, len(losses), LOSS_WINDOW)),
                seconds=round(history.seconds[-1], 1),
            )
    return Result(runs=runs, seconds=round(time.perf_counter() - start, 1))


def load(directory: Path | str | None = None) -> Result:
    """What the shipped comparison measured, from ``lfd13/results/sft_comparison.json``."""
    return Result.from_dict(shipped.load_result(NAME, directory=directory).result)


def files(settings: Settings) -> tuple[str, ...]:
    """The file :func:`write` creates."""
    return (f"{NAME}.json",)


def write(settings: Settings, *, checkpoints: Path, results: Path, device: Any = None, progress: bool | None = None) -> None:
    """Run the comparison from the pre-trained checkpoint in ``checkpoints``; save the result in ``results``."""
    result = run(settings, device=device, progress=progress, directory=checkpoints)
    shipped.save_result(NAME, command=command("sft"), settings=asdict(settings), result=result.to_dict(), directory=results)


def check(*, checkpoints: Path, results: Path) -> None:
    """Read the result file back."""
    load(results)


#: This module's rows of the recreate table (lfd13.recreate.ENTRIES), in order.
ENTRIES: tuple[Entry, ...] = (
    Entry(name="sft", doc="Chapter 5b: SFT from gpt-nano-char, 4 arms x 3 seeds (results/sft_comparison.json)",
          settings=SETTINGS, tiny=TINY, files=files, write=write, check=check),
)
