"""The book's "scaling up" snippets run end to end, offline, on tiny random models saved in the hub's layout."""

import json
import os
import subprocess
import sys

import pytest

from tests.unit.test_hub import SNIPPETS, hub_cache  # noqa: F401  (the fixture)


@pytest.mark.slow
def test_scaling_up_snippets_run_on_tiny_models_by_hub_name(hub_cache, tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HOME", None)
    proc = subprocess.run([sys.executable, "-c", SNIPPETS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    [guesses] = out["fill_mask"]
    assert len(guesses) == 3 and all(0.0 <= p <= 1.0 for _, p in guesses)
    assert out["mae"]["features"] == [4, 32] and out["mae"]["mask_ratio"] == 0.75 and out["mae"]["loss"] > 0
    assert out["clip"]["image"] == [2, 16] and out["clip"]["text"] == [2, 16] and abs(out["clip"]["norm"] - 1) < 1e-4
    assert out["clip"]["tokens"] == [1, 16]
    llm = out["llm"]
    assert llm["targets"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert llm["task_type"].endswith("CAUSAL_LM")
    assert llm["trainable"] and all("lora_" in n for n in llm["trainable"])
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in llm["trainable"]} == set(llm["targets"])
    assert llm["full_loss"] > 0 and llm["lora_loss"] > 0
    # the loss is on the response and [EOS] only: "reverse:abc>" (12 characters) is ignored, "cba" + EOS scored
    assert llm["labels"][0][:12] == [-100] * 12 and llm["labels"][0][12:16] == llm["ids"][0][12:16]
    trl = out["trl"]  # the same masking in TRL's collator: "reverse:abc>" ignored, "cba" (+ EOS) scored
    assert trl["labels"][0][:12] == [-100] * 12 and trl["labels"][0][12:15] == trl["ids"][0][12:15]
    assert trl["steps"] == 2 and trl["loss"] > 0
