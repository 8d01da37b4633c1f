import pytest
import torch

import lfd13
from lfd13.runtime import get_device, make_generator


def test_get_device_defaults_to_an_available_device(monkeypatch):
    monkeypatch.delenv("LFD13_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device().type == expected  # the best device present, in the order cuda, mps, cpu


def test_get_device_honours_environment(monkeypatch):
    monkeypatch.setenv("LFD13_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_get_device_rejects_unknown_and_unavailable():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")


def test_make_generator_is_reproducible():
    a = torch.rand(5, generator=make_generator(3))
    b = torch.rand(5, generator=make_generator(3))
    c = torch.rand(5, generator=make_generator(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(TypeError, match="seed must be an int"):
        make_generator("3")  # type: ignore[arg-type]


def test_setup_seeds_and_sets_threads(monkeypatch):
    monkeypatch.delenv("LFD13_DEVICE", raising=False)
    device = lfd13.setup(seed=7, threads=1)
    assert torch.get_num_threads() == 1
    first = torch.rand(3)
    lfd13.setup(seed=7, threads=2)
    assert torch.equal(first, torch.rand(3))
    assert torch.get_num_threads() == 2
    assert isinstance(device, torch.device)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        lfd13.setup(threads=0)


def test_seeded_fixes_the_draw_and_restores_the_generator():
    from lfd13.runtime import seeded

    torch.manual_seed(7)
    state = torch.get_rng_state()
    with seeded(3):
        a = torch.rand(4)
    with seeded(3):
        b = torch.rand(4)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    with pytest.raises(TypeError, match="int"):
        with seeded(1.5):
            pass
