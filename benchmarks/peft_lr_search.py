"""Re-run Chapter 6's learning-rate search on the validation split; check it against the shipped result.

    python benchmarks/peft_lr_search.py            # about 12 short trainings, a few minutes on 2 cores
    python benchmarks/peft_lr_search.py --no-save  # print only

Chapter 6 trains every method with one budget (``SETTINGS.budget`` of
:mod:`lfd13.experiments.peft_comparison`) and the learning rate that scored best on validation
posts. The search is the first step of that experiment (``python -m lfd13.recreate peft``), which
stores the validation scores in ``lfd13/results/peft_comparison.json`` and chooses each rate from
them. This script measures the search again exactly as the experiment does
(:func:`~lfd13.experiments.peft_comparison.learning_rate_search` on ``SETTINGS``), prints both,
saves the measurement under ``"peft_lr_search"`` in ``benchmarks/results.json`` and exits with
status 1 if a measured value differs from the stored one by more than 0.001 or a different
rate would be chosen.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results import RESULTS, update_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-save", action="store_true", help="print only, do not touch results.json")
    args = parser.parse_args()

    import lfd13
    from lfd13.data.newsgroups import load_newsgroups
    from lfd13.experiments import peft_comparison as exp
    from lfd13.pretrained import load_text_encoder

    device = lfd13.setup(seed=0)
    settings, stored = exp.SETTINGS, exp.load().lr_search
    news = load_newsgroups(n_test_per_class=settings.n_test_per_class)
    tokenizer, encoder = load_text_encoder(settings.encoder, device=device)
    start = time.perf_counter()
    measured = exp.learning_rate_search(settings, news, tokenizer, encoder, device=device)
    seconds = time.perf_counter() - start
    mismatches = []
    for method, scores in measured.items():
        for lr, acc in scores.items():
            flag = "" if abs(acc - stored[method][lr]) <= 1e-3 else "   <- differs from the shipped result"
            if flag:
                mismatches.append(f"{method} lr={lr:g}: measured {acc:.3f}, stored {stored[method][lr]:.3f}")
            print(f"{method:20s} lr {lr:<8g} validation {acc:.3f} (stored {stored[method][lr]:.3f}){flag}")
        if exp.best_learning_rate(scores) != exp.best_learning_rate(stored[method]):
            mismatches.append(f"{method}: a different learning rate would be chosen")
    print(f"{seconds:.0f} s; {'all as stored' if not mismatches else 'MISMATCH: ' + '; '.join(mismatches)}")
    if not args.no_save:
        update_results("peft_lr_search", {
            "validation_accuracy": {m: {f"{lr:g}": round(a, 4) for lr, a in s.items()} for m, s in measured.items()},
            "matches_stored": not mismatches, "seconds": round(seconds, 1),
        })
        print(f"saved under 'peft_lr_search' in {RESULTS}")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
