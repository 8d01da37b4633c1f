"""What every check is made of: the record type, the secret, validation of kernel outputs, statistics.

Instructor-only, grader side. A ``Check`` holds, in one place, the three parts of a hidden test:

* ``make(secret) -> inputs``: the grader's inputs, drawn from the secret (sizes, architectures,
  probabilities and values all vary with it);
* ``call(ns, inputs) -> outputs``: the kernel side, a short function that only calls the
  student's code and returns raw outputs. Its *source* is sent to the kernel with the inputs and
  run there by ``lfd13_probe.run`` with the helpers of ``lfd13_probe.HELPERS`` as its globals, so
  it may use only its arguments, those helpers and builtins (``tests/assignments`` checks this);
* ``judge(inputs, outputs) -> str``: the grader side; recomputes nothing from the kernel but its
  outputs, validates each before use (type, dtype, shape) and raises ``Fail`` with a message that
  says which property failed, never a reference value.

The secret is the grader's seed; every number a check draws comes from a keyed hash of it, the
check's name and a label, so the values handed to the kernel (inputs, generator seeds) reveal
neither the seed nor each other.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

import torch

import wire


class Fail(Exception):
    """A hidden check failed; the message is shown to the student."""


# ---------------------------------------------------------------- the secret
class Secret:
    """Deterministic draws for one check from the grader's seed (never sent to the kernel)."""

    def __init__(self, seed: int, grade_id: str):
        self._key = hashlib.blake2b(f"lfd13/{int(seed)}".encode(), digest_size=32).digest()
        self.grade_id = grade_id

    def seed(self, label: str) -> int:
        """A 63-bit number for ``label``: independent of every other label and of the seed."""
        h = hashlib.blake2b(f"{self.grade_id}/{label}".encode(), key=self._key, digest_size=8).digest()
        return int.from_bytes(h, "little") >> 1

    def gen(self, label: str) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed(label))

    def integer(self, low: int, high: int, label: str) -> int:
        """Uniform in [low, high] (both included)."""
        return low + self.seed(label) % (high - low + 1)

    def uniform(self, low: float, high: float, label: str) -> float:
        return low + (high - low) * (self.seed(label) / 2**63)

    def choose(self, options: list, k: int, label: str) -> list:
        """``k`` distinct options, in a random order."""
        order = torch.randperm(len(options), generator=self.gen(label))[:k]
        return [options[i] for i in order.tolist()]


# ---------------------------------------------------------------- the record of one check
@dataclass(frozen=True)
class Check:
    """One hidden test: its grader-side inputs, its kernel-side call and its judgement, together."""

    grade_id: str                                   # the nbgrader cell it grades
    make: Callable[[Secret], dict]                  # grader side: secret -> inputs (tensors, numbers, lists, dicts)
    call: Callable[[dict, dict], dict]              # kernel side: (student's namespace, inputs) -> raw outputs
    judge: Callable[[dict, dict], str]              # grader side: (inputs, outputs) -> what passed; raises Fail
    what: str = ""                                  # one line for the instructor: what the check establishes

    def inputs(self, seed: int) -> dict:
        return self.make(Secret(seed, self.grade_id))

    def task(self, seed: int) -> dict:
        """What is sent to the kernel: the call's source and the inputs, nothing else."""
        return {"entry": self.call.__name__, "source": textwrap.dedent(inspect.getsource(self.call)),
                "inputs": self.inputs(seed)}


# ---------------------------------------------------------------- validating what the kernel returned
# Every value below comes from the student's kernel: it is looked at only through these helpers,
# which check its type, dtype and exact shape before anything is computed with it.
def kind(v: Any) -> str:
    return v.type_name if isinstance(v, wire.Other) else type(v).__name__


def result(call: Any, what: str) -> Any:
    """The value of an ``attempt`` record, or Fail saying what the student's code raised."""
    if not isinstance(call, dict):
        raise Fail(f"{what} was never reached (the cell stopped before the hidden test ran)")
    if "error" in call:
        error = str(call["error"])[:300]
        if "No module named" in error:
            error += " (the grader's kernel has torch, numpy and matplotlib only: write it yourself with torch)"
        raise Fail(f"{what} raised {error}")
    if "value" not in call:
        raise Fail(f"{what}: no result was recorded")
    return call["value"]


def tensor(v: Any, what: str, shape=None, dtype: torch.dtype | None = None, floating: bool = False) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise Fail(f"{what} should be a torch.Tensor, got {kind(v)}")
    if shape is not None and tuple(v.shape) != tuple(shape):
        raise Fail(f"{what} should have shape {list(shape)}, got {list(v.shape)}")
    if dtype is not None and v.dtype != dtype:
        raise Fail(f"{what} should have dtype {dtype}, got {v.dtype}")
    if floating and not v.is_floating_point():
        raise Fail(f"{what} should be a floating-point tensor, got {v.dtype}")
    return v


def number(v: Any, what: str) -> float:
    if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dim() <= 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Fail(f"{what} should be a number, got {kind(v)}")
    return float(v)


def items(v: Any, what: str, n: int) -> list:
    if not isinstance(v, list) or len(v) != n:
        raise Fail(f"{what} should return a tuple of {n} values")
    return v


def field(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, dict) else None


def entries(record: Any, key: str, n: int) -> list:
    """The list ``record[key]`` of ``n`` per-call records (None where missing)."""
    v = field(record, key)
    return v if isinstance(v, list) and len(v) == n else [None] * n


def close(got: Any, want: torch.Tensor, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """``got`` equals ``want`` to float32 round-off; the message names the property, not the values."""
    got = tensor(got, what, tuple(want.shape), floating=want.is_floating_point())
    got, want = got.double(), want.double()
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    bad = ~((got - want).abs() <= atol * scale + rtol * want.abs())  # NaN counts as a difference
    if bool(bad.any()):
        raise Fail(f"{what} is wrong ({int(bad.sum())} of {want.numel()} values differ)")


# ---------------------------------------------------------------- statistics
# Every statistical check compares an average of n independent (or negatively associated) bounded
# variables with its expected value, with the tolerance of Bernstein's inequality at DELTA:
#     P(|mean - mu| >= t) <= 2 exp(-n t^2 / (2 var + 2 b t / 3)) = DELTA,
# where var bounds the variance and b bounds |X - mu|. Sums of negatively associated variables
# (indicators of sampling without replacement, e.g. an exact number of selections per row, and
# increasing functions of disjoint groups of them) obey the same bound (Dubhashi & Ranjan 1998).
# A correct implementation fails one test with probability at most DELTA; a grading run makes
# fewer than 100 such tests per submission, so a correct submission loses a point with
# probability below 1e-7.
DELTA = 1e-9


def bernstein(n: int, var: float, b: float, delta: float = DELTA) -> float:
    """Half-width t of the interval that holds the mean of ``n`` variables with probability 1 - delta."""
    if n <= 0:
        return math.inf
    log = math.log(2 / delta)
    lin = 2 * b * log / 3
    return (lin + math.sqrt(lin * lin + 8 * n * var * log)) / (2 * n)


def within(measured: float, expected: float, n: int, what: str, *, var: float | None = None, b: float = 1.0,
           slack: float = 0.0, delta: float = DELTA, percent: bool = True) -> None:
    """Fail unless ``measured`` (a mean of n variables) is within the Bernstein tolerance of ``expected``.

    ``var`` defaults to a Bernoulli variance; ``slack`` widens the interval by a known bias (e.g. the
    rounding of an exact count per row, which the specification allows)."""
    if var is None:  # the largest Bernoulli variance of a mean within the slack of the expected one
        means = [min(max(q, 0.0), 1.0) for q in (expected - slack, expected, expected + slack)]
        if means[0] <= 0.5 <= means[-1]:
            means.append(0.5)
        var = max(max(q * (1 - q) for q in means), 1 / max(n, 1))
    tol = bernstein(n, var, b, delta) + slack
    if not abs(measured - expected) <= tol:
        f = (lambda v: f"{v:.1%}") if percent else (lambda v: f"{v:.3g}")
        raise Fail(f"{what} is {f(measured)}, expected {f(expected)} ± {f(tol)} (measured over {n})")
