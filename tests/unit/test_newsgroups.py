"""Tests for lfd13.data.newsgroups: the four-class 20 Newsgroups task shipped with lfd13."""

import gzip

import pytest
import torch

from lfd13.data import load_newsgroups
from lfd13.sampling import subset_indices
from lfd13.data.newsgroups import CLASSES, FILES, TEST_FILE, TRAIN_FILE, SubsetSpec, _cut, _write_tsv


def test_load_shapes_and_balance():
    data = load_newsgroups()
    assert data.classes == CLASSES and data.num_classes == 4
    assert len(data.train_texts) == len(data.train_labels) == 1600
    assert len(data.test_texts) == len(data.test_labels) == 800
    assert data.train_labels.dtype == torch.long
    assert torch.bincount(data.train_labels).tolist() == [400] * 4
    assert torch.bincount(data.test_labels).tolist() == [200] * 4


def test_texts_are_lowercase_letters_and_cut():
    data = load_newsgroups()
    for text in data.train_texts[:200] + data.test_texts[:200]:
        words = text.split()
        assert 10 <= len(words) <= SubsetSpec().max_words
        assert text == text.lower() and all(w.isalpha() for w in words)


def test_test_set_does_not_leak_into_train():
    data = load_newsgroups()
    assert not set(data.train_texts) & set(data.test_texts)
    assert len(set(data.train_texts)) == len(data.train_texts)


def test_small_test_set_is_a_fixed_prefix():
    full, small = load_newsgroups(), load_newsgroups(n_test_per_class=25)
    assert torch.bincount(small.test_labels).tolist() == [25] * 4
    assert set(small.test_texts) <= set(full.test_texts)
    assert small.test_texts == load_newsgroups(n_test_per_class=25).test_texts
    with pytest.raises(ValueError, match="n_test_per_class"):
        load_newsgroups(n_test_per_class=201)


def test_few_label_subset_is_seeded():
    data = load_newsgroups()
    texts, labels = data.train_subset(16, seed=3)
    assert len(texts) == 64 and torch.bincount(labels).tolist() == [16] * 4
    assert texts == data.train_subset(16, seed=3)[0]
    assert texts != data.train_subset(16, seed=4)[0]
    idx = subset_indices(data.train_labels, 16, seed=3)
    assert texts == [data.train_texts[i] for i in idx.tolist()]


def test_files_are_small_and_gzip():
    for name in (TRAIN_FILE, TEST_FILE):
        path = FILES / name
        assert path.stat().st_size < 500_000
        with gzip.open(path, "rt", encoding="utf-8") as f:
            group, _ = f.readline().split("\t", 1)
        assert group in CLASSES


def test_subset_cutting_is_deterministic(tmp_path):
    letters = "abcdefghijklmnop"
    rows = [(g, " ".join([g.replace(".", " ")] + [letters[i] + letters[j] for j in range(12)])) for g in CLASSES for i in range(5)]
    spec = SubsetSpec(train_per_class=3, max_words=8)
    a, b = _cut(rows, spec, 3, exclude=set()), _cut(rows, spec, 3, exclude=set())
    assert a == b and len(a) == 12 and all(len(t.split()) == 8 for _, t in a)
    _write_tsv(a, tmp_path / "a.gz")
    _write_tsv(b, tmp_path / "b.gz")
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    with pytest.raises(ValueError, match="usable posts"):
        _cut(rows, spec, 6, exclude=set())


def test_train_validation_is_the_train_subset_plus_a_disjoint_validation_set():
    from lfd13.sampling import split_indices

    data = load_newsgroups()
    (texts, labels), (val_texts, val_labels) = data.train_validation(8, 20, seed=3)
    assert (texts, labels.tolist()) == (lambda t: (t[0], t[1].tolist()))(data.train_subset(8, seed=3))
    assert torch.bincount(val_labels).tolist() == [20] * data.num_classes
    train_idx, val_idx = split_indices(data.train_labels, 8, 20, seed=3)
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    with pytest.raises(ValueError, match="fewer"):
        split_indices(data.train_labels, 300, 200, seed=0)
