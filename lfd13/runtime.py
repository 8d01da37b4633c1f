"""Runtime: the one place where the device, the seeds and the threads are chosen.

Every chapter calls :func:`setup` once at the top; every function that draws
random numbers takes a ``seed`` or a :class:`torch.Generator` made by
:func:`make_generator`, so a notebook gives the same numbers on every run.
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import torch

from lfd13.style import use_style

__all__ = [
    "IGNORE_INDEX", "UnknownPresetError", "get_device", "make_generator", "preset", "seed_everything", "seeded",
    "setup",
]

_DEVICES = ("cuda", "mps", "cpu")

#: The label of a position the loss ignores (PyTorch's ``cross_entropy`` default, and every
#: transformers head's): unselected tokens in masked language modelling, the prompt and the padding in SFT.
IGNORE_INDEX = -100

_Config = TypeVar("_Config")


class UnknownPresetError(KeyError):
    """A preset name that a preset table does not hold; the message lists the names it does."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def preset(table: Mapping[str, _Config], name: str, *, what: str, **overrides: Any) -> _Config:
    """``table[name]`` (a frozen config dataclass), with ``overrides`` replaced; the one preset lookup of every model module.

    Raises:
        UnknownPresetError: ``name`` is not in ``table``; the message lists the known names.
    """
    if name not in table:
        raise UnknownPresetError(f"unknown {what} preset {name!r}; the presets are {sorted(table)}")
    return replace(table[name], **overrides) if overrides else table[name]  # type: ignore[type-var]


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device to compute on: ``cuda`` if present, else ``mps``, else ``cpu``.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``). Defaults to the
            environment variable ``LFD13_DEVICE`` if set, else the best available one.
    """
    choice = prefer if prefer is not None else os.environ.get("LFD13_DEVICE")
    if choice:
        kind = choice.split(":")[0]
        if kind not in _DEVICES:
            raise ValueError(f"unknown device {choice!r}: use one of {', '.join(_DEVICES)} (e.g. 'cuda:0')")
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} requested but CUDA is not available; use 'cpu' or unset LFD13_DEVICE")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {choice!r} requested but MPS is not available; use 'cpu' or unset LFD13_DEVICE")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh :class:`torch.Generator` seeded with ``seed`` (on ``device``)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the global generators seeded by ``seed``, then restore them.

    For what draws from PyTorch's global generator and takes no ``generator`` argument
    (layer initialisation, dropout): ``with seeded(seed): model = Net()`` gives the same
    weights for the same seed and leaves the caller's random state as it was.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (for code that uses them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, *, threads: int | None = None, quiet: bool = True, style: bool = True) -> torch.device:
    """Prepare a chapter: seeds, CPU threads, quiet libraries, plot style; return the device.

    Args:
        seed: seed for the global generators.
        threads: CPU threads for PyTorch. Defaults to ``LFD13_NUM_THREADS`` or 2. A fixed number
            keeps floating-point reductions, and therefore the book's numbers, identical across runs.
        quiet: silence the Hugging Face download bars and load reports.
        style: apply the book's matplotlib style (:func:`lfd13.style.use_style`).
    """
    n = threads if threads is not None else int(os.environ.get("LFD13_NUM_THREADS", "2"))
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    seed_everything(seed)
    if quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
    if style:
        use_style()
    return get_device()
