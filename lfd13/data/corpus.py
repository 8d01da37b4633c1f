"""An offline English literary corpus for pre-training a small masked language model.

BERT (Devlin et al., 2018) was pre-trained on BooksCorpus and English Wikipedia, 3.3 billion
words. This course ships a tiny stand-in with the same flavour — real English prose, mostly
stories — small enough to live in the package (about 210,000 words, 0.4 MB gzip'd):

- ``book-excerpts``: 140 excerpts of Project Gutenberg books, half written for children;
- ``grimm-tales``: 48 Grimm tales in 19th-century English translations;
- ``andersen``: 3 Andersen tales in H. P. Paull's 1872 translation.

All three are public domain; ``lfd13/data/files/PROVENANCE.md`` says where they came from and
how they were extracted. ``load_corpus`` splits them into training and held-out text *by
document* (a held-out tale is never seen in pieces during training), deterministically for a seed.

Example::

    corpus = load_corpus(held_out=0.1, seed=0)
    len(corpus.train), len(corpus.test)      # documents
    corpus.texts("train")[0][:60]
"""

from __future__ import annotations

import gzip
import random
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SOURCES", "CorpusSplit", "Document", "load_corpus", "load_documents", "split_sentences"]

FILES_DIR = Path(__file__).parent / "files"

#: Corpus sources shipped with lfd13, in a fixed order (file ``<name>.tsv.gz`` in ``FILES_DIR``).
SOURCES: tuple[str, ...] = ("book-excerpts", "grimm-tales", "andersen")


@dataclass(frozen=True)
class Document:
    """One text of the corpus."""

    source: str  # one of SOURCES
    title: str  # tale title, or e.g. "children-001" for an untitled book excerpt
    text: str  # the whole document on one line, whitespace collapsed

    @property
    def n_words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class CorpusSplit:
    """Training and held-out documents (disjoint: the split is by document)."""

    train: tuple[Document, ...]  # documents to pre-train on
    test: tuple[Document, ...]  # held-out documents for evaluation
    held_out: float  # requested fraction of documents held out, per source
    seed: int  # seed of the split

    def texts(self, split: str = "train") -> list[str]:
        """The document texts of ``split`` (``"train"`` or ``"test"``)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return [d.text for d in (self.train if split == "train" else self.test)]

    def n_words(self, split: str = "train") -> int:
        """Number of whitespace-separated words in ``split``."""
        return sum(len(t.split()) for t in self.texts(split))


def load_documents(sources: tuple[str, ...] | list[str] = SOURCES) -> list[Document]:
    """All documents of the given sources, in file order.

    Raises:
        ValueError: for an unknown source name.
        FileNotFoundError: when a data file is missing from the installed package.
    """
    if isinstance(sources, str):
        sources = (sources,)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown corpus source(s) {unknown}; choose from {list(SOURCES)}")
    if not sources:
        raise ValueError(f"give at least one source from {list(SOURCES)}")
    docs: list[Document] = []
    for source in sources:
        path = FILES_DIR / f"{source}.tsv.gz"
        if not path.is_file():
            raise FileNotFoundError(
                f"corpus file {path} is missing; reinstall lfd13 (`pip install -e .`) so that its package data "
                "is present, or rebuild it as lfd13/data/files/PROVENANCE.md describes"
            )
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            header = fh.readline().rstrip("\n")
            if header != "title\ttext":
                raise ValueError(f"{path} has an unexpected header {header!r}; expected 'title<TAB>text'")
            for line in fh:
                title, _, text = line.rstrip("\n").partition("\t")
                if text:
                    docs.append(Document(source=source, title=title, text=text))
    return docs


def load_corpus(
    *, sources: str | tuple[str, ...] | list[str] = SOURCES, held_out: float = 0.1, seed: int = 0
) -> CorpusSplit:
    """The literary corpus split into training and held-out documents.

    Within each source, a fraction ``held_out`` of the documents (rounded) is drawn with
    ``random.Random(seed)`` and held out, so that every source is represented in both parts and
    the same seed always gives the same split.

    Args:
        sources: which of ``SOURCES`` to use (one name or several).
        held_out: fraction of documents per source to hold out, in [0, 1).
        seed: seed of the split.
    """
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out must be a fraction in [0, 1), got {held_out}")
    if isinstance(sources, str):
        sources = (sources,)  # one source name, not its characters
    docs = load_documents(sources)
    train: list[Document] = []
    test: list[Document] = []
    rng = random.Random(seed)
    for source in sources:
        group = [d for d in docs if d.source == source]
        order = list(range(len(group)))
        rng.shuffle(order)
        n_test = round(held_out * len(group))
        test_idx = set(order[:n_test])
        for i, d in enumerate(group):
            (test if i in test_idx else train).append(d)
    return CorpusSplit(train=tuple(train), test=tuple(test), held_out=held_out, seed=seed)


_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][’”'\"]))\s+(?=[‘“'\"A-Z])")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences at ``.``, ``!`` or ``?`` followed by a capitalised word.

    A simple rule, good enough for building sentence pairs (next-sentence prediction); the
    book excerpts lost most of their full stops upstream, so their "sentences" are long.
    """
    parts = _SENTENCE_END.split(text.strip())
    return [p.strip() for p in parts if p.strip()]
