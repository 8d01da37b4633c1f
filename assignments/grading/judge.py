"""Grader-side half of the hidden tests: judge the observations recorded by ``probe.py``.

Instructor-only: never released. This module runs in the nbgrader process, which never executes
student code, so nothing a notebook rebinds (``torch.allclose``, ``torch.testing.assert_close``,
numpy's comparisons, assert helpers) can influence it. Inputs are regenerated from the seed, and
references come from the libraries the assignments re-implement:

* masking:     transformers ``DataCollatorForLanguageModeling`` (statistics) and
               ``ViTMAEEmbeddings.random_masking`` given the same noise (exact);
* contrastive: open_clip ``ClipLoss`` on normalised features (values and gradients);
* lora:        peft's LoRA ``Linear`` layer given the same A and B weights (forward, delta weight).

Deterministic maths is compared exactly (or to float32 round-off); random behaviour is compared
statistically, with tolerances of five standard deviations of the sampled proportion.
"""
from __future__ import annotations

import functools
import math
import types
from dataclasses import dataclass

import torch
from torch import nn

import lfd13_probe as probe


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str


class Fail(Exception):
    """A hidden check failed; the message is shown to the student."""


# ---------------------------------------------------------------- helpers
def _value(call: dict | None, what: str):
    if call is None:
        raise Fail(f"{what} was never called (the cell stopped before the hidden test ran)")
    if not call.get("ok"):
        raise Fail(f"{what} raised {call.get('error')}")
    return _unwrap(call["result"])


def _unwrap(v):
    if isinstance(v, dict) and "__tensor__" in v:
        return v["__tensor__"]
    if isinstance(v, dict) and "__seq__" in v:
        return tuple(_unwrap(x) for x in v["__seq__"])
    if isinstance(v, dict) and "__other__" in v:
        return _Other(v["__other__"], v.get("float"))
    return v


@dataclass
class _Other:
    type_name: str
    float_value: float | None = None


def _tensor(v, what: str, shape=None, dtype=None, floating: bool = False) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        kind = v.type_name if isinstance(v, _Other) else type(v).__name__
        raise Fail(f"{what} should be a torch.Tensor, got {kind}")
    if shape is not None and tuple(v.shape) != tuple(shape):
        raise Fail(f"{what} should have shape {list(shape)}, got {list(v.shape)}")
    if dtype is not None and v.dtype != dtype:
        raise Fail(f"{what} should have dtype {dtype}, got {v.dtype}")
    if floating and not v.is_floating_point():
        raise Fail(f"{what} should be a floating-point tensor, got {v.dtype}")
    return v


def _pair(v, what: str, n: int = 2):
    if not isinstance(v, tuple) or len(v) != n:
        raise Fail(f"{what} should return a tuple of {n} values")
    return v


def _close(got: torch.Tensor, want: torch.Tensor, what: str, rtol=1e-4, atol=1e-5) -> None:
    got, want = got.double(), want.double()
    if got.shape != want.shape:
        raise Fail(f"{what}: shape {list(got.shape)} but expected {list(want.shape)}")
    err = (got - want).abs()
    bad = err > atol + rtol * want.abs()
    if bool(bad.any()):
        raise Fail(f"{what} differs from the reference (largest difference {err.max().item():.3g})")


def _within(name: str, got: float, want: float, n: int, what: str) -> None:
    """Proportion ``got`` measured on ``n`` trials must be within 5 standard deviations of ``want``."""
    tol = 5 * math.sqrt(max(want * (1 - want), 1e-4) / max(n, 1)) + 1e-3
    if abs(got - want) > tol:
        raise Fail(f"{what}: {name} is {got:.1%}, expected {want:.1%} ± {tol:.1%} (measured on {n} positions)")


# ---------------------------------------------------------------- masking
def _masking_call(obs: dict, name: str, bseed: int, b: int, length: int):
    call = obs.get(name)
    out = _pair(_value(call, "mask_tokens"), "mask_tokens")
    batch = probe.masking_batch(bseed, b, length)
    inputs = _tensor(out[0], "inputs (first result)", (b, length), torch.long)
    labels = _tensor(out[1], "labels (second result)", (b, length), torch.long)
    return batch, inputs, labels, call


def _masking_consistency(batch: dict, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    ids, special = batch["input_ids"], batch["special_tokens_mask"]
    selected = labels != -100
    if not torch.equal(labels[selected], ids[selected]):
        raise Fail("labels must hold the original token id at every selected position")
    if bool((selected & special).any()):
        raise Fail("a special token ([CLS], [SEP] or [PAD], special_tokens_mask=True) was selected; "
                   "special tokens must never be selected")
    if not torch.equal(inputs[~selected], ids[~selected]):
        raise Fail("positions that were not selected (label -100) must keep their original id in inputs")
    if bool(((inputs < 0) | (inputs >= batch["vocab_size"])).any()):
        raise Fail("inputs contain ids outside [0, vocab_size)")
    return selected


def check_mask_tokens_selection(obs: dict, seed: int) -> str:
    for name, bseed, b, length, p in (("rate", seed, 128, 128, 0.15), ("rate40", seed + 2, 64, 128, 0.4)):
        batch, inputs, labels, _ = _masking_call(obs, name, bseed, b, length)
        selected = _masking_consistency(batch, inputs, labels)
        eligible = int((~batch["special_tokens_mask"]).sum())
        _within("the selected share of eligible positions", int(selected.sum()) / eligible, p, eligible,
                f"mask_tokens(mlm_probability={p})")
    return "selection rate, labels and special tokens are right"


@functools.lru_cache(maxsize=1)
def _collator_shares() -> dict:
    from transformers import DataCollatorForLanguageModeling

    batch = probe.masking_batch(12345, 128, 128)
    tokenizer = _FakeTokenizer()
    coll = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.5, mask_replace_prob=0.8,
                                           random_replace_prob=0.1, return_tensors="pt")
    coll.generator = torch.Generator().manual_seed(0)
    inputs, labels = coll.torch_mask_tokens(batch["input_ids"].clone(),
                                            special_tokens_mask=batch["special_tokens_mask"])
    return _shares(batch, inputs, labels)


class _FakeTokenizer:
    """The part of a tokenizer that ``DataCollatorForLanguageModeling`` uses."""

    mask_token = "[MASK]"
    pad_token = "[PAD]"

    def __len__(self) -> int:
        return 5000

    def convert_tokens_to_ids(self, token: str) -> int:
        return 4


def _shares(batch: dict, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
    ids, selected = batch["input_ids"], labels != -100
    n = int(selected.sum())
    masked = selected & (inputs == batch["mask_token_id"])
    unchanged = selected & (inputs == ids)
    random = selected & ~masked & ~unchanged
    return {"n": n, "mask": int(masked.sum()) / max(n, 1), "random": int(random.sum()) / max(n, 1),
            "unchanged": int(unchanged.sum()) / max(n, 1), "random_ids": inputs[random]}


def check_mask_tokens_split(obs: dict, seed: int) -> str:
    batch, inputs, labels, _ = _masking_call(obs, "split", seed + 4, 128, 128)
    _masking_consistency(batch, inputs, labels)
    got = _shares(batch, inputs, labels)
    ref = _collator_shares()
    for key, want in (("mask", 0.8), ("random", 0.1), ("unchanged", 0.1)):
        _within(f"the share of selected positions that became {'[MASK]' if key == 'mask' else key}",
                got[key], want, got["n"], "mask_tokens (80/10/10 rule)")
        _within(key, ref[key], want, ref["n"], "internal check: transformers' collator")  # tolerance sanity
    rand = got["random_ids"]
    vocab = batch["vocab_size"]
    counts = torch.bincount(rand * 10 // vocab, minlength=10).float()
    expected = len(rand) / 10
    spread = 5 * math.sqrt(expected * 0.9)
    if len(rand) < 50 or bool((counts - expected).abs().max() > spread):
        raise Fail("random replacement ids should be uniform over the whole vocabulary [0, vocab_size); "
                   f"counts in ten equal bands were {counts.int().tolist()}")
    return "80/10/10 split and random ids are right"


def check_mask_tokens_contract(obs: dict, seed: int) -> str:
    for name, bseed, b, length in (("rate", seed, 128, 128), ("rate40", seed + 2, 64, 128),
                                   ("split", seed + 4, 128, 128), ("same_a", seed + 6, 8, 32), ("one", seed + 9, 1, 9)):
        after = obs.get(name, {}).get("input_after")
        if not isinstance(after, torch.Tensor) or not torch.equal(after, probe.masking_batch(bseed, b, length)["input_ids"]):
            raise Fail("mask_tokens modified its input tensor in place; clone it first")
    _, in_a, lab_a, _ = _masking_call(obs, "same_a", seed + 6, 8, 32)
    _, in_b, lab_b, _ = _masking_call(obs, "same_b", seed + 6, 8, 32)
    _, in_c, lab_c, _ = _masking_call(obs, "other", seed + 6, 8, 32)
    if not (torch.equal(in_a, in_b) and torch.equal(lab_a, lab_b)):
        raise Fail("two calls with generators seeded alike gave different results: draw every random "
                   "number from `generator`")
    if torch.equal(lab_a, lab_c) and torch.equal(in_a, in_c):
        raise Fail("generators with different seeds gave identical results: use `generator`")
    batch, inputs, labels, _ = _masking_call(obs, "one", seed + 9, 1, 9)
    _masking_consistency(batch, inputs, labels)
    return "generator, untouched input and a batch of one are right"


@functools.lru_cache(maxsize=None)
def _mae_masking():
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

    return ViTMAEEmbeddings.random_masking


def _mae_reference(x: torch.Tensor, ratio: float, noise: torch.Tensor):
    fake_self = types.SimpleNamespace(config=types.SimpleNamespace(mask_ratio=ratio))
    return _mae_masking()(fake_self, x, noise=noise)


_RM_CASES = {"exact75": (4, 16, 8, 0.75), "exact50": (3, 10, 5, 0.5), "odd": (2, 7, 3, 0.75),
             "one": (1, 5, 4, 0.6), "none": (2, 6, 3, 0.0)}


def _rm_compare(obs: dict, name: str, seed: int) -> None:
    b, length, d, ratio = _RM_CASES[name]
    i = list(_RM_CASES).index(name)
    g = torch.Generator().manual_seed(seed + 20 + i)
    x = torch.randn(b, length, d, generator=g)
    noise = torch.rand(b, length, generator=g)
    want = _mae_reference(x, ratio, noise)
    what = f"random_masking(x of shape {[b, length, d]}, mask_ratio={ratio})"
    got = _pair(_value(obs.get(name), what), what, 3)
    keep = int(length * (1 - ratio))
    xv = _tensor(got[0], f"{what}: x_visible", (b, keep, d), floating=True)
    mask = _tensor(got[1], f"{what}: mask", (b, length), floating=True)
    ids = _tensor(got[2], f"{what}: ids_restore", (b, length))
    if ids.is_floating_point():
        raise Fail(f"{what}: ids_restore should hold integer indices")
    if not torch.equal(mask, want[1].to(mask.dtype)):
        raise Fail(f"{what}: mask differs from MAE's (0 = kept, 1 = removed, in the original patch order; "
                   f"keep the {keep} patches with the smallest noise)")
    if not torch.equal(ids.long(), want[2]):
        raise Fail(f"{what}: ids_restore differs from MAE's (it is the argsort of the shuffle)")
    if not torch.equal(xv, want[0]):
        raise Fail(f"{what}: x_visible differs from MAE's (kept patches, in ascending-noise order)")


def check_random_masking_exact(obs: dict, seed: int) -> str:
    for name in ("exact75", "exact50"):
        _rm_compare(obs, name, seed)
    return "identical to ViTMAE's random_masking given the same noise"


def check_random_masking_edges(obs: dict, seed: int) -> str:
    for name in ("odd", "one", "none"):
        _rm_compare(obs, name, seed)
    return "odd lengths (int, not round), a batch of one and mask_ratio=0 are right"


def check_random_masking_random(obs: dict, seed: int) -> str:
    what = "random_masking(x, 0.75, generator=g) without noise"
    g_out = _pair(_value(obs.get("random"), what), what, 3)
    again = _pair(_value(obs.get("random_again"), what), what, 3)
    x = torch.randn(512, 16, 2, generator=torch.Generator().manual_seed(seed + 30))
    xv = _tensor(g_out[0], f"{what}: x_visible", (512, 4, 2), floating=True)
    mask = _tensor(g_out[1], f"{what}: mask", (512, 16), floating=True)
    ids = _tensor(g_out[2], f"{what}: ids_restore", (512, 16)).long()
    if not torch.equal(torch.sort(ids, dim=1).values, torch.arange(16).expand(512, 16)):
        raise Fail(f"{what}: each row of ids_restore must be a permutation of 0..L-1")
    shuffle = torch.argsort(ids, dim=1)
    kept = shuffle[:, :4]
    if not torch.equal(torch.gather(x, 1, kept[..., None].expand(-1, -1, 2)), xv):
        raise Fail(f"{what}: x_visible is not x gathered at the first L_keep indices of the shuffle")
    if not torch.equal(mask, (ids >= 4).float().to(mask.dtype)):
        raise Fail(f"{what}: mask is not 0 exactly at the kept patches")
    if not all(torch.equal(a, b) for a, b in zip(g_out, again)):
        raise Fail(f"{what}: two calls with generators seeded alike differ; draw the noise from `generator`")
    distinct = len({tuple(r) for r in mask.int().tolist()})
    if distinct < 256:
        raise Fail(f"{what}: only {distinct} distinct masks in 512 samples; shuffle each sample independently")
    keep_rate = 1 - mask.double().mean(dim=0)
    for pos, rate in enumerate(keep_rate.tolist()):
        _within(f"the keep rate of patch {pos}", rate, 0.25, 512, what)
    return "independent, reproducible, uniform masks"


# ---------------------------------------------------------------- contrastive
@functools.lru_cache(maxsize=1)
def _clip_loss_cls():
    from open_clip.loss import ClipLoss

    return ClipLoss


_CLIP_CASES = {"b8": (8, 16, 14.3, True, 40), "b5": (5, 3, 1 / 0.07, False, 41), "b1": (1, 4, 10.0, True, 42)}


def _clip_reference(name: str, seed: int):
    b, d, scale, tensor_scale, s = _CLIP_CASES[name]
    img = probe.features(seed + s, b, d).requires_grad_(True)
    txt = probe.features(seed + s + 10, b, d).requires_grad_(True)
    sc = torch.tensor(scale, requires_grad=True) if tensor_scale else scale
    loss = _clip_loss_cls()()(img / img.norm(dim=1, keepdim=True), txt / txt.norm(dim=1, keepdim=True), sc)
    loss.backward()
    return loss.detach(), img.grad, txt.grad, (sc.grad if tensor_scale else None)


def _clip_value(obs: dict, name: str) -> torch.Tensor:
    b, d, scale, _, _ = _CLIP_CASES[name]
    what = f"clip_loss(features of shape {[b, d]}, logit_scale={scale:.3g})"
    loss = _tensor(_value(obs.get(name), what), what, floating=True)
    if loss.dim() != 0:
        raise Fail(f"{what} should return a scalar (0-dimensional) tensor, got shape {list(loss.shape)}")
    return loss


def check_clip_loss_value(obs: dict, seed: int) -> str:
    for name in ("b8", "b5"):
        want = _clip_reference(name, seed)[0]
        got = _clip_value(obs, name)
        if not torch.isclose(got.double(), want.double(), rtol=1e-4, atol=1e-5):
            raise Fail(f"clip_loss on a batch of {_CLIP_CASES[name][0]} is {got.item():.6f}; open_clip's ClipLoss "
                       f"on L2-normalised features gives {want.item():.6f}")
    return "equal to open_clip's ClipLoss on normalised features"


def check_clip_loss_grad(obs: dict, seed: int) -> str:
    for name in ("b8", "b5"):
        _clip_value(obs, name)
        case = obs[name]
        if case.get("backward_error"):
            raise Fail(f"backward() through clip_loss failed: {case['backward_error']} (is the loss detached?)")
        _, g_img, g_txt, g_scale = _clip_reference(name, seed)
        grads = case.get("grads") or [None, None]
        for got, want, which in ((grads[0], g_img, "image_features"), (grads[1], g_txt, "text_features")):
            if got is None:
                raise Fail(f"clip_loss is not differentiable with respect to {which}")
            _close(got, want, f"the gradient of clip_loss with respect to {which}")
        if g_scale is not None:
            if case.get("scale_grad") is None:
                raise Fail("clip_loss is not differentiable with respect to logit_scale (CLIP learns it): "
                           "multiply by the tensor, do not convert it to a Python number")
            _close(case["scale_grad"], g_scale, "the gradient of clip_loss with respect to logit_scale")
    return "gradients match open_clip's"


def check_clip_loss_edges(obs: dict, seed: int) -> str:
    for name, (b, d, _, _, s) in _CLIP_CASES.items():
        after = obs.get(name, {}).get("inputs_after") or [None, None]
        want = [probe.features(seed + s, b, d), probe.features(seed + s + 10, b, d)]
        if not all(isinstance(a, torch.Tensor) and torch.equal(a, w) for a, w in zip(after, want)):
            raise Fail("clip_loss modified its input features in place")
    got = _clip_value(obs, "b1")
    want = _clip_reference("b1", seed)[0]
    if not torch.isclose(got.double(), want.double(), rtol=1e-4, atol=1e-5):
        raise Fail(f"clip_loss on a batch of one is {got.item():.6f}; expected {want.item():.6f}")
    return "scalar result, untouched inputs and a batch of one are right"


def check_zero_shot(obs: dict, seed: int) -> str:
    for name, (n, c, s) in {"n50": (50, 7, 60), "n1": (1, 4, 62)}.items():
        img, cls = probe.features(seed + s, n, 12), probe.features(seed + s + 1, c, 12)
        sims = (img / img.norm(dim=1, keepdim=True)) @ (cls / cls.norm(dim=1, keepdim=True)).T
        want = sims.argmax(dim=1)
        got = _tensor(_value(obs.get(name), "zero_shot_classify"), f"zero_shot_classify on {n} images", (n,),
                      torch.long)
        if not torch.equal(got, want):
            wrong = int((got != want).sum())
            raise Fail(f"zero_shot_classify: {wrong} of {n} images get a different class than the cosine-"
                       "similarity argmax")
    return "cosine-similarity argmax"


def _recall_reference(img: torch.Tensor, txt: torch.Tensor, k: int, dtype) -> float:
    img, txt = img.to(dtype), txt.to(dtype)
    sims = (img / img.norm(dim=1, keepdim=True)) @ (txt / txt.norm(dim=1, keepdim=True)).T
    topk = sims.topk(k, dim=1).indices
    return (topk == torch.arange(len(img))[:, None]).any(dim=1).double().mean().item()


def check_recall_at_k(obs: dict, seed: int) -> str:
    img, txt = probe.recall_pairs(seed)
    for k in (1, 3, 5, 40):
        v = _value(obs.get(f"k{k}"), f"recall_at_k(k={k})")
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, _Other):
            v = v.float_value
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise Fail(f"recall_at_k(k={k}) should return a float, got {type(v).__name__}")
        wants = {_recall_reference(img, txt, k, dt) for dt in (torch.float32, torch.float64)}
        if not any(abs(v - w) < 1e-6 for w in wants):
            raise Fail(f"recall_at_k(k={k}) is {v:.4f}; expected {min(wants):.4f} (image-to-text, cosine "
                       "similarity, the paired text among the k most similar)")
    return "image-to-text recall at k is right"


# ---------------------------------------------------------------- lora
@functools.lru_cache(maxsize=1)
def _peft():
    from peft import LoraConfig
    from peft.tuners.lora.layer import Linear

    return LoraConfig, Linear


def _peft_layer(w: torch.Tensor, bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, r: int, alpha: float):
    LoraConfig, Linear = _peft()
    base = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        base.weight.copy_(w)
        base.bias.copy_(bias)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["base"])
    layer = Linear(base, "default", config=config, r=r, lora_alpha=alpha)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
    return layer


def check_lora_init(obs: dict, seed: int) -> str:
    init = obs.get("init")
    if init is None:
        raise Fail("LoRALinear was never built")
    if not init["ok"]:
        raise Fail(f"LoRALinear(nn.Linear(6, 10), r=3, alpha=6.0) raised {init['error']}")
    if not init["base_is_same"]:
        raise Fail("`base` should be the nn.Linear that was passed in")
    if not init["base_frozen"]:
        raise Fail("the base layer's weight and bias must be frozen (requires_grad=False)")
    for name, shape in (("A", [3, 6]), ("B", [10, 3])):
        if not init[f"{name}_is_linear"]:
            raise Fail(f"lora_{name} should be an nn.Linear")
        if init[f"{name}_shape"] != shape:
            raise Fail(f"lora_{name}.weight should have shape {shape} for a 6 -> 10 layer with r=3, "
                       f"got {init[f'{name}_shape']}")
        if init[f"{name}_bias"]:
            raise Fail(f"lora_{name} should have no bias")
        if not init[f"{name}_trainable"]:
            raise Fail(f"lora_{name}.weight must be trainable")
    if bool((init["B_weight"] != 0).any()):
        raise Fail("lora_B must start at zero, so that the adapted layer starts equal to the base layer")
    if not bool((init["A_weight"] != 0).any()):
        raise Fail("lora_A must start random (not zero), otherwise lora_B gets no gradient")
    scaling = _unwrap(init["scaling"])
    if isinstance(scaling, torch.Tensor):
        scaling = scaling.item()
    if not isinstance(scaling, (int, float)) or abs(scaling - 2.0) > 1e-9:
        raise Fail(f"scaling should be alpha / r = 6.0 / 3 = 2.0, got {scaling!r}")
    if init["merged"] is not False:
        raise Fail(f"a new layer should have merged == False, got {init['merged']!r}")
    extra = [n for n in init.get("trainable_names", []) if n not in ("lora_A.weight", "lora_B.weight")]
    if extra:
        raise Fail(f"only lora_A and lora_B should be trainable; also trainable: {extra}")
    y = _tensor(_value(init["y"], "LoRALinear.forward"), "the output of a new LoRALinear", (2, 5, 10))
    want = torch.nn.functional.linear(init["x"], init["base_weight"], init["base_bias"])
    _close(y, want, "a new LoRALinear (B = 0) should compute exactly base(x); its output")
    return "frozen base, A random, B zero, scaling alpha/r"


def check_lora_forward(obs: dict, seed: int) -> str:
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(seed + 80))
    for key in ("case0", "case1"):
        case = obs.get(key)
        if case is None:
            raise Fail("LoRALinear.forward was never reached")
        layer = _peft_layer(case["W"], case["bias"], case["A"], case["B"], case["r"], case["alpha"])
        want = layer(x)
        what = f"LoRALinear(r={case['r']}, alpha={case['alpha']}) with given A and B"
        got = _tensor(_value(case["y"], what), f"{what}: output", (2, 5, 10))
        _close(got, want.detach(), f"{what}: output (compared with peft's LoRA layer)")
        if case.get("backward_error"):
            raise Fail(f"{what}: backward failed: {case['backward_error']}")
        if case.get("grad_A") is None or case.get("grad_B") is None:
            raise Fail(f"{what}: no gradient reached lora_A and lora_B")
        if case.get("grad_W") is not None:
            raise Fail(f"{what}: a gradient reached the frozen base weight")
        want.sum().backward()
        _close(case["grad_A"], layer.lora_A["default"].weight.grad, f"{what}: gradient of lora_A")
        _close(case["grad_B"], layer.lora_B["default"].weight.grad, f"{what}: gradient of lora_B")
    return "forward and gradients equal peft's LoRA layer"


def check_lora_merge(obs: dict, seed: int) -> str:
    for key in ("case0", "case1"):
        case = obs.get(key)
        if case is None:
            raise Fail("merge() was never reached")
        what = f"LoRALinear(r={case['r']}, alpha={case['alpha']})"
        layer = _peft_layer(case["W"], case["bias"], case["A"], case["B"], case["r"], case["alpha"])
        delta = layer.get_delta_weight("default").detach()
        y0 = _tensor(_value(case["y"], f"{what}.forward"), f"{what}: output", (2, 5, 10))
        _value(case["merge"], f"{what}.merge()")
        if case["merged_after_merge"] is not True:
            raise Fail(f"{what}: after merge(), merged should be True")
        _close(case["W_merged"], case["W"] + delta, f"{what}: base.weight after merge() (W + scaling·B·A, as peft)")
        _close(_tensor(_value(case["y_merged"], f"{what}.forward after merge()"), "output", (2, 5, 10)), y0,
               f"{what}: the output after merge() should not change; it")
        _value(case["unmerge"], f"{what}.unmerge()")
        if case["merged_after_unmerge"] is not False:
            raise Fail(f"{what}: after unmerge(), merged should be False")
        _close(case["W_unmerged"], case["W"], f"{what}: base.weight after merge() then unmerge()", atol=1e-5)
        _close(_tensor(_value(case["y_unmerged"], f"{what}.forward after unmerge()"), "output", (2, 5, 10)), y0,
               f"{what}: the output after unmerge() should not change; it")
    return "merge/unmerge round trip"


def check_lora_dropout(obs: dict, seed: int) -> str:
    if "train" not in obs:
        raise Fail("LoRALinear(..., dropout=1.0) was never reached")
    base_out = torch.nn.functional.linear(obs["x"], obs["W"], obs["bias"])
    what = "LoRALinear(r=2, alpha=2.0, dropout=1.0)"
    train = _tensor(_value(obs["train"], what), f"{what} in train mode", (2, 5, 10))
    _close(train, base_out, f"{what} in train mode should drop the whole LoRA input and return base(x) "
           "(dropout applies to the LoRA branch only); its output")
    full = base_out + obs["x"] @ obs["A"].T @ obs["B"].T
    _close(_tensor(_value(obs["eval"], what), f"{what} in eval mode", (2, 5, 10)), full,
           f"{what} in eval mode (no dropout)")
    return "dropout on the LoRA branch only"


_TARGETS = sorted(f"blocks.{i}.{n}" for i in range(2) for n in ("query", "value"))


def check_inject_lora(obs: dict, seed: int) -> str:
    call = obs.get("call")
    if call is None:
        raise Fail("inject_lora was never called")
    if not call["ok"]:
        raise Fail(f"inject_lora(model, ['query', 'value'], r=2, alpha=4.0) raised {call['error']}")
    if not obs["returned_model"]:
        raise Fail("inject_lora should return the model it was given")
    if obs["lora_modules"] != _TARGETS:
        raise Fail(f"inject_lora(model, ['query', 'value']) should replace exactly {_TARGETS} (names that END "
                   f"with a target), replaced {obs['lora_modules']}")
    for name, s in obs["scalings"].items():
        s = _unwrap(s)
        if not isinstance(s, (int, float)) or abs(s - 2.0) > 1e-9:
            raise Fail(f"{name}.scaling should be alpha / r = 2.0, got {s!r}")
    want = sorted(f"{t}.lora_{ab}.weight" for t in _TARGETS for ab in "AB")
    if obs["trainable"] != want:
        extra = sorted(set(obs["trainable"]) - set(want))
        missing = sorted(set(want) - set(obs["trainable"]))
        raise Fail("after inject_lora only the LoRA weights should be trainable"
                   + (f"; still trainable: {extra[:4]}" if extra else "")
                   + (f"; frozen: {missing[:4]}" if missing else ""))
    before = obs["state_before"]
    for name in ("position", "blocks.0.scale", "blocks.1.scale"):
        if name not in obs["buffers"] or not torch.equal(obs["buffers"][name], before[name]):
            raise Fail(f"the buffer {name} was lost or changed by inject_lora")
    for name in _TARGETS:
        if name not in obs["base_weights"] or not torch.equal(obs["base_weights"][name], before[f"{name}.weight"]):
            raise Fail(f"{name}: the LoRALinear should wrap the original layer (its weights were lost)")
    _close(_tensor(_value(obs["y1"], "the injected model"), "the injected model's output", tuple(obs["y0"].shape)),
           obs["y0"], "the injected model (B = 0) should compute what the original did; its output")
    return "targets replaced, everything else frozen, buffers kept"


def check_count_parameters(obs: dict, seed: int) -> str:
    truth = {"tiny": tuple(obs["truth"]["tiny"])}
    tied = probe.TiedModel()
    truth["tied"] = (sum(p.numel() for p in tied.parameters() if p.requires_grad),
                     sum(p.numel() for p in tied.parameters()))
    for name, want in truth.items():
        got = _value(obs.get(name), "count_parameters")
        if not isinstance(got, tuple) or len(got) != 2:
            raise Fail("count_parameters should return a tuple (trainable, total)")
        got = tuple(g.item() if isinstance(g, torch.Tensor) else g for g in got)
        if got != want:
            model = "a model with a frozen block" if name == "tiny" else "a model with tied weights and a buffer"
            raise Fail(f"count_parameters on {model} returned {got}, expected {want} "
                       "(count each parameter once; buffers are not parameters)")
    return "trainable and total parameters are right"


CHECKS = {
    "mask_tokens_selection": check_mask_tokens_selection,
    "mask_tokens_split": check_mask_tokens_split,
    "mask_tokens_contract": check_mask_tokens_contract,
    "random_masking_exact": check_random_masking_exact,
    "random_masking_edges": check_random_masking_edges,
    "random_masking_random": check_random_masking_random,
    "clip_loss_value": check_clip_loss_value,
    "clip_loss_grad": check_clip_loss_grad,
    "clip_loss_edges": check_clip_loss_edges,
    "zero_shot": check_zero_shot,
    "recall_at_k": check_recall_at_k,
    "lora_init": check_lora_init,
    "lora_forward": check_lora_forward,
    "lora_merge": check_lora_merge,
    "lora_dropout": check_lora_dropout,
    "inject_lora": check_inject_lora,
    "count_parameters": check_count_parameters,
}

LIBRARY = {"masking": "transformers' DataCollatorForLanguageModeling / ViTMAE", "contrastive": "open_clip",
           "lora": "peft"}


def judge(grade_id: str, obs: dict | None, seed: int) -> Verdict:
    """Turn one cell's observations into a verdict with a message for the student."""
    if grade_id not in CHECKS:
        raise KeyError(f"no hidden check called {grade_id!r}")
    if obs is None:
        return Verdict(False, "Hidden tests did not run: the notebook stopped (error, timeout or a dead kernel) "
                              "before reaching this cell.")
    if obs.get("grade_id") != grade_id:
        return Verdict(False, "Hidden tests did not run: their record is missing or invalid.")
    if obs.get("profiler_tampered"):
        return Verdict(False, "Hidden tests failed: your code replaced the interpreter's profiler "
                              "(sys.setprofile); graded functions must not do that.")
    if obs.get("delegation"):
        lib = LIBRARY[probe.assignment_of(grade_id)]
        return Verdict(False, f"Hidden tests failed: your answer uses {lib}'s own implementation "
                              f"({', '.join(obs['delegation'][:3])}). Write it yourself with torch.")
    if "fatal" in obs:
        return Verdict(False, f"Hidden tests failed: {obs['fatal']}")
    try:
        return Verdict(True, f"Hidden tests passed: {CHECKS[grade_id](obs, seed)}.")
    except Fail as err:
        return Verdict(False, f"Hidden tests failed: {err}")
    except Exception as err:  # noqa: BLE001 - malformed results (e.g. wrong types) count as failures
        return Verdict(False, f"Hidden tests failed: the results could not be checked ({type(err).__name__}: "
                              f"{err}); check the types and shapes your functions return.")
