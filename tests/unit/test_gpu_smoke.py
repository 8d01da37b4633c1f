"""``benchmarks/gpu_smoke.py`` keeps working between GPU loans: each chapter model's one training step runs on the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.gpu_smoke import CASES, one_step


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_takes_a_finite_step_on_the_cpu(name):
    _, case = CASES[name]
    out = one_step(case, torch.device("cpu"))
    assert out["finite"] and math.isfinite(out["loss_after_step"]), out
    assert out["trainable_parameters"] > 0 and out["parameters_on"] == ["cpu"]
