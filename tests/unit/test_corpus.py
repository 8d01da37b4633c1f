"""Tests for lfd13.data.corpus: the shipped literary corpus and its by-document split."""

import pytest

from lfd13.data import load_corpus
from lfd13.data.corpus import SOURCES, load_documents, split_sentences


def test_documents_load_from_every_source():
    docs = load_documents()
    counts = {s: sum(d.source == s for d in docs) for s in SOURCES}
    assert counts == {"book-excerpts": 140, "grimm-tales": 48, "andersen": 3}
    assert all(d.text and "\t" not in d.text and "\n" not in d.text for d in docs)
    assert 200_000 < sum(d.n_words for d in docs) < 220_000
    assert any(d.title == "Cinderella" for d in docs)


def test_split_is_by_document_disjoint_and_deterministic():
    a = load_corpus(held_out=0.1, seed=0)
    b = load_corpus(held_out=0.1, seed=0)
    c = load_corpus(held_out=0.1, seed=1)
    assert a == b
    assert a.test != c.test
    keys = lambda docs: {(d.source, d.title) for d in docs}  # noqa: E731
    assert not keys(a.train) & keys(a.test)
    assert len(a.train) + len(a.test) == 191
    # every source with enough documents is represented in the held-out part
    assert {d.source for d in a.test} == {"book-excerpts", "grimm-tales"}
    assert len(a.test) == round(0.1 * 140) + round(0.1 * 48) + round(0.1 * 3)
    assert a.n_words("train") + a.n_words("test") == sum(d.n_words for d in load_documents())


def test_sources_subset_and_no_holdout():
    c = load_corpus(sources=("andersen",), held_out=0.0)
    assert len(c.train) == 3 and c.test == ()
    assert c.texts("train")[0].startswith("It was terribly cold")


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown corpus source"):
        load_corpus(sources=("wikipedia",))
    with pytest.raises(ValueError, match="held_out"):
        load_corpus(held_out=1.0)
    with pytest.raises(ValueError, match="split must be"):
        load_corpus().texts("validation")


def test_split_sentences_keeps_quotes():
    s = split_sentences("He said: ‘Whither away, Hans?’ Hans answered. ‘To Gretel.’ Then he left!")
    assert s == ["He said: ‘Whither away, Hans?’", "Hans answered.", "‘To Gretel.’", "Then he left!"]


def test_one_source_given_as_a_string_is_that_source():
    split = load_corpus(sources="grimm-tales", held_out=0.25, seed=0)
    assert {d.source for d in split.train + split.test} == {"grimm-tales"}
    assert len(split.train) + len(split.test) == 48 and len(split.test) == 12
