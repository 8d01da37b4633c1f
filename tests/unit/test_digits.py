import pytest
import torch

from lfd13.data import labelled_subset, load_digits
from lfd13.sampling import subset_indices


def test_split_is_fixed_stratified_and_in_range():
    a, b = load_digits(), load_digits()
    assert a.x_train.shape == (1257, 1, 8, 8) and a.x_test.shape == (540, 1, 8, 8)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1.0
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 50 and counts.max() <= 56  # stratified: ~54 per class
    assert a.num_classes == 10 and a.image_size == 8


def test_upsampling_keeps_split_and_range():
    d8, d16 = load_digits(), load_digits(size=16)
    assert d16.x_train.shape == (1257, 1, 16, 16)
    assert torch.equal(d8.y_train, d16.y_train)
    assert 0.0 <= float(d16.x_train.min()) and float(d16.x_train.max()) <= 1.0
    # downsampling the upsampled image gives back roughly the original
    back = torch.nn.functional.avg_pool2d(d16.x_train[:20], 2)
    assert (back - d8.x_train[:20]).abs().mean() < 0.1


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        load_digits(size=4)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)


def test_subset_has_n_per_class_and_depends_only_on_seed():
    y = load_digits().y_train
    idx = subset_indices(y, 5, seed=0)
    assert torch.equal(torch.bincount(y[idx], minlength=10), torch.full((10,), 5))
    assert torch.equal(idx, subset_indices(y, 5, seed=0))
    assert not torch.equal(idx, subset_indices(y, 5, seed=1))
    assert len(idx.unique()) == len(idx)
    assert torch.equal(subset_indices(y, None, seed=0), torch.arange(len(y)))


def test_subset_larger_than_class_is_an_error():
    y = torch.tensor([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="class 1 has only 2 examples"):
        subset_indices(y, 3, seed=0)
    with pytest.raises(ValueError, match="n_per_class must be >= 1"):
        subset_indices(y, 0, seed=0)
    with pytest.raises(ValueError, match="1-D"):
        subset_indices(y[None], 1, seed=0)


def test_labelled_subset_returns_matching_pairs():
    d = load_digits()
    x, y = labelled_subset(d.x_train, d.y_train, 3, seed=2)
    assert x.shape == (30, 1, 8, 8) and y.shape == (30,)
    idx = subset_indices(d.y_train, 3, seed=2)
    assert torch.equal(x, d.x_train[idx])
    with pytest.raises(ValueError, match="same length"):
        labelled_subset(d.x_train[:5], d.y_train, 1, seed=0)
