"""Re-run Chapter 6's learning-rate search on the validation split; check it against ``LR_SEARCH``.

    python benchmarks/peft_lr_search.py            # about 12 short trainings, a few minutes on 2 cores
    python benchmarks/peft_lr_search.py --no-save  # print only

Chapter 6 trains every method with one budget (``lfd13.peft_tools.PEFT_BUDGET``) and the
learning rate that scored best on validation posts. Those validation accuracies are recorded in
``lfd13.peft_tools.LR_SEARCH`` so that the chapter does not repeat the search on every run.
This script measures them again exactly as recorded (seed 0, the training part of
``train_validation(16, 50, seed=0)``, 64 tokens, scored on its 200 validation posts), prints both,
saves the measurement under ``"peft_lr_search"`` in ``benchmarks/results.json`` and exits with
status 1 if a measured value differs from the recorded one by more than 0.001 or a different
rate would be chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-save", action="store_true", help="print only, do not touch results.json")
    args = parser.parse_args()

    import lfd13
    from lfd13 import peft_tools
    from lfd13.data.newsgroups import load_newsgroups
    from lfd13.finetune import tokenize_texts, build_sequence_classifier
    from lfd13.pretrained import load_text_encoder

    device = lfd13.setup(seed=0)
    news = load_newsgroups()
    tokenizer, encoder = load_text_encoder(device=device)
    train = peft_tools.training_posts(news, tokenizer, 0)  # the chapter's draw 0
    _, (val_texts, val_labels) = news.train_validation(peft_tools.N_PER_CLASS, peft_tools.N_VAL_PER_CLASS, seed=0)
    validation = tokenize_texts(tokenizer, val_texts, val_labels, max_length=peft_tools.MAX_LENGTH)
    classes = news.num_classes

    def classifier():
        return build_sequence_classifier(encoder, num_labels=classes, seed=0)

    makers = {
        "full fine-tuning": classifier,
        "LoRA r=8, alpha=16": lambda: peft_tools.apply_peft(classifier(), peft_tools.lora_config(8), seed=0),
        "prompt tuning": lambda: peft_tools.apply_peft(
            classifier(), peft_tools.prompt_tuning_config(20), seed=0),
        "head only": lambda: peft_tools.freeze_all_but_head(classifier()),
    }
    measured, mismatches = {}, []
    start = time.perf_counter()
    for method, make in makers.items():
        recorded = peft_tools.LR_SEARCH[method]
        scores = peft_tools.validation_sweep(
            make, train, validation, peft_tools.PEFT_BUDGET, list(recorded), seed=0, device=device)
        measured[method] = scores
        for lr, acc in scores.items():
            flag = "" if abs(acc - recorded[lr]) <= 1e-3 else "   <- differs from LR_SEARCH"
            if flag:
                mismatches.append(f"{method} lr={lr:g}: measured {acc:.3f}, recorded {recorded[lr]:.3f}")
            print(f"{method:20s} lr {lr:<8g} validation {acc:.3f} (recorded {recorded[lr]:.3f}){flag}")
        if peft_tools.best_learning_rate(scores) != peft_tools.best_learning_rate(recorded):
            mismatches.append(f"{method}: a different learning rate would be chosen")
    seconds = time.perf_counter() - start
    print(f"{seconds:.0f} s; {'all as recorded' if not mismatches else 'MISMATCH: ' + '; '.join(mismatches)}")
    if not args.no_save:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results["peft_lr_search"] = {
            "validation_accuracy": {m: {f"{lr:g}": round(a, 4) for lr, a in s.items()} for m, s in measured.items()},
            "matches_LR_SEARCH": not mismatches, "seconds": round(seconds, 1),
        }
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"saved under 'peft_lr_search' in {RESULTS}")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
