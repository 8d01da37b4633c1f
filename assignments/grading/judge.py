"""Grader-side half of the hidden tests: judge the raw outputs a student's kernel returned.

Instructor-only: never released. This module runs in the grader's judge process
(``judge_worker.py``), which never executes student code, so nothing a notebook rebinds can
influence it. It trusts nothing the kernel wrote except as an output to check: the inputs are
recomputed from the grader's seed (``cases.py``), every output is checked for type, dtype and
exact shape before any computation, and the references come from the libraries the
assignments re-implement:

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

import cases
import wire


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str


class Fail(Exception):
    """A hidden check failed; the message is shown to the student."""


# ---------------------------------------------------------------- validating what the kernel returned
# Every value below comes from the student's kernel: it is looked at only through these helpers,
# which check its type, dtype and exact shape before anything is computed with it.
def _get(rec, *path):
    for key in path:
        if isinstance(rec, dict):
            rec = rec.get(key)
        elif isinstance(rec, list) and isinstance(key, int) and 0 <= key < len(rec):
            rec = rec[key]
        else:
            return None
    return rec


def _value(call, what: str):
    if not isinstance(call, dict):
        raise Fail(f"{what} was never called (the cell stopped before the hidden test ran)")
    if "error" in call:
        error = str(call["error"])[:300]
        if "No module named" in error:
            error += " (the grader's kernel has torch, numpy and matplotlib only: write it yourself with torch)"
        raise Fail(f"{what} raised {error}")
    if "value" not in call:
        raise Fail(f"{what}: no result was recorded")
    return call["value"]


def _kind(v) -> str:
    return v.type_name if isinstance(v, wire.Other) else type(v).__name__


def _tensor(v, what: str, shape=None, dtype=None, floating: bool = False) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise Fail(f"{what} should be a torch.Tensor, got {_kind(v)}")
    if shape is not None and tuple(v.shape) != tuple(shape):
        raise Fail(f"{what} should have shape {list(shape)}, got {list(v.shape)}")
    if dtype is not None and v.dtype != dtype:
        raise Fail(f"{what} should have dtype {dtype}, got {v.dtype}")
    if floating and not v.is_floating_point():
        raise Fail(f"{what} should be a floating-point tensor, got {v.dtype}")
    return v


def _number(v, what: str) -> float:
    if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dim() <= 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Fail(f"{what} should be a number, got {_kind(v)}")
    return float(v)


def _seq(v, what: str, n: int):
    if not isinstance(v, list) or len(v) != n:
        raise Fail(f"{what} should return a tuple of {n} values")
    return v


def _names(v, what: str, limit: int = 200) -> list[str]:
    if not isinstance(v, list) or len(v) > limit or not all(isinstance(x, str) for x in v):
        raise Fail(f"{what}: not a list of names")
    return v


def _close(got: torch.Tensor, want: torch.Tensor, what: str, rtol=1e-4, atol=1e-5) -> None:
    got = _tensor(got, what, tuple(want.shape))
    got, want = got.double(), want.double()
    err = (got - want).abs()
    bad = ~(err <= atol + rtol * want.abs())  # NaN counts as a difference
    if bool(bad.any()):
        raise Fail(f"{what} differs from the reference (largest difference {err.max().item():.3g})")


def _within(name: str, got: float, want: float, n: int, what: str) -> None:
    """Proportion ``got`` measured on ``n`` trials must be within 5 standard deviations of ``want``."""
    tol = 5 * math.sqrt(max(want * (1 - want), 1e-4) / max(n, 1)) + 1e-3
    if abs(got - want) > tol:
        raise Fail(f"{what}: {name} is {got:.1%}, expected {want:.1%} ± {tol:.1%} (measured on {n} positions)")


# ---------------------------------------------------------------- masking
def _masking_call(rec: dict, task: dict, name: str):
    call, batch = rec.get(name), task["calls"][name]
    b, length = batch["input_ids"].shape
    out = _seq(_value(call, "mask_tokens"), "mask_tokens", 2)
    inputs = _tensor(out[0], "inputs (first result)", (b, length), torch.long)
    labels = _tensor(out[1], "labels (second result)", (b, length), torch.long)
    return batch, inputs, labels


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
    if bool(((inputs < 0) | (inputs >= cases.VOCAB)).any()):
        raise Fail("inputs contain ids outside [0, vocab_size)")
    return selected


def check_mask_tokens_selection(rec: dict, task: dict) -> str:
    for name in ("rate", "rate40"):
        batch, inputs, labels = _masking_call(rec, task, name)
        selected = _masking_consistency(batch, inputs, labels)
        eligible = int((~batch["special_tokens_mask"]).sum())
        p = batch["p"]
        _within("the selected share of eligible positions", int(selected.sum()) / eligible, p, eligible,
                f"mask_tokens(mlm_probability={p})")
    return "selection rate, labels and special tokens are right"


@functools.lru_cache(maxsize=1)
def _collator_shares() -> dict:
    from transformers import DataCollatorForLanguageModeling

    batch = cases.masking_batch(12345, 128, 128)
    coll = DataCollatorForLanguageModeling(tokenizer=_FakeTokenizer(), mlm_probability=0.5, mask_replace_prob=0.8,
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
        return cases.VOCAB

    def convert_tokens_to_ids(self, token: str) -> int:
        return cases.MASK_ID


def _shares(batch: dict, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
    ids, selected = batch["input_ids"], labels != -100
    n = int(selected.sum())
    masked = selected & (inputs == cases.MASK_ID)
    unchanged = selected & (inputs == ids)
    random = selected & ~masked & ~unchanged
    return {"n": n, "mask": int(masked.sum()) / max(n, 1), "random": int(random.sum()) / max(n, 1),
            "unchanged": int(unchanged.sum()) / max(n, 1), "random_ids": inputs[random]}


def check_mask_tokens_split(rec: dict, task: dict) -> str:
    batch, inputs, labels = _masking_call(rec, task, "split")
    _masking_consistency(batch, inputs, labels)
    got = _shares(batch, inputs, labels)
    ref = _collator_shares()
    for key, want in (("mask", 0.8), ("random", 0.1), ("unchanged", 0.1)):
        _within(f"the share of selected positions that became {'[MASK]' if key == 'mask' else key}",
                got[key], want, got["n"], "mask_tokens (80/10/10 rule)")
        _within(key, ref[key], want, ref["n"], "internal check: transformers' collator")  # tolerance sanity
    rand = got["random_ids"]
    counts = torch.bincount(rand * 10 // cases.VOCAB, minlength=10).float()
    expected = len(rand) / 10
    spread = 5 * math.sqrt(expected * 0.9)
    if len(rand) < 50 or bool((counts - expected).abs().max() > spread):
        raise Fail("random replacement ids should be uniform over the whole vocabulary [0, vocab_size); "
                   f"counts in ten equal bands were {counts.int().tolist()}")
    return "80/10/10 split and random ids are right"


def check_mask_tokens_contract(rec: dict, task: dict) -> str:
    for name in ("rate", "rate40", "split", "same_a", "one"):
        want = task["calls"][name]["input_ids"]
        after = _get(rec, name, "input_after")
        if not isinstance(after, torch.Tensor) or after.shape != want.shape or after.dtype != want.dtype \
                or not torch.equal(after, want):
            raise Fail("mask_tokens modified its input tensor in place; clone it first")
    _, in_a, lab_a = _masking_call(rec, task, "same_a")
    _, in_b, lab_b = _masking_call(rec, task, "same_b")
    _, in_c, lab_c = _masking_call(rec, task, "other")
    if not (torch.equal(in_a, in_b) and torch.equal(lab_a, lab_b)):
        raise Fail("two calls with generators seeded alike gave different results: draw every random "
                   "number from `generator`")
    if torch.equal(lab_a, lab_c) and torch.equal(in_a, in_c):
        raise Fail("generators with different seeds gave identical results: use `generator`")
    batch, inputs, labels = _masking_call(rec, task, "one")
    _masking_consistency(batch, inputs, labels)
    return "generator, untouched input and a batch of one are right"


@functools.lru_cache(maxsize=None)
def _mae_masking():
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

    return ViTMAEEmbeddings.random_masking


def _mae_reference(x: torch.Tensor, ratio: float, noise: torch.Tensor):
    fake_self = types.SimpleNamespace(config=types.SimpleNamespace(mask_ratio=ratio))
    return _mae_masking()(fake_self, x, noise=noise)


def _rm_compare(rec: dict, task: dict, name: str) -> None:
    c = task["given"][name]
    x, noise, ratio = c["x"], c["noise"], c["ratio"]
    b, length, d = x.shape
    want = _mae_reference(x, ratio, noise)
    what = f"random_masking(x of shape {[b, length, d]}, mask_ratio={ratio})"
    got = _seq(_value(rec.get(name), what), what, 3)
    keep = int(length * (1 - ratio))
    xv = _tensor(got[0], f"{what}: x_visible", (b, keep, d), floating=True)
    mask = _tensor(got[1], f"{what}: mask", (b, length), floating=True)
    ids = _tensor(got[2], f"{what}: ids_restore", (b, length))
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise Fail(f"{what}: ids_restore should hold integer indices")
    if not torch.equal(mask, want[1].to(mask.dtype)):
        raise Fail(f"{what}: mask differs from MAE's (0 = kept, 1 = removed, in the original patch order; "
                   f"keep the {keep} patches with the smallest noise)")
    if not torch.equal(ids.long(), want[2]):
        raise Fail(f"{what}: ids_restore differs from MAE's (it is the argsort of the shuffle)")
    if xv.dtype != want[0].dtype or not torch.equal(xv, want[0]):
        raise Fail(f"{what}: x_visible differs from MAE's (kept patches, in ascending-noise order)")


def check_random_masking_exact(rec: dict, task: dict) -> str:
    for name in ("exact75", "exact50"):
        _rm_compare(rec, task, name)
    return "identical to ViTMAE's random_masking given the same noise"


def check_random_masking_edges(rec: dict, task: dict) -> str:
    for name in ("odd", "one", "none"):
        _rm_compare(rec, task, name)
    return "odd lengths (int, not round), a batch of one and mask_ratio=0 are right"


def check_random_masking_random(rec: dict, task: dict) -> str:
    what = "random_masking(x, 0.75, generator=g) without noise"
    x = task["free"]["x"]
    b, length, d = x.shape
    keep = int(length * (1 - task["free"]["ratio"]))
    outs = []
    for name in ("random", "random_again"):
        got = _seq(_value(rec.get(name), what), what, 3)
        outs.append([_tensor(got[0], f"{what}: x_visible", (b, keep, d), floating=True),
                     _tensor(got[1], f"{what}: mask", (b, length), floating=True),
                     _tensor(got[2], f"{what}: ids_restore", (b, length))])
    xv, mask, ids = outs[0]
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise Fail(f"{what}: ids_restore should hold integer indices")
    ids = ids.long()
    if not torch.equal(torch.sort(ids, dim=1).values, torch.arange(length).expand(b, length)):
        raise Fail(f"{what}: each row of ids_restore must be a permutation of 0..L-1")
    kept = torch.argsort(ids, dim=1)[:, :keep]
    if xv.dtype != x.dtype or not torch.equal(torch.gather(x, 1, kept[..., None].expand(-1, -1, d)), xv):
        raise Fail(f"{what}: x_visible is not x gathered at the first L_keep indices of the shuffle")
    if not torch.equal(mask, (ids >= keep).to(mask.dtype)):
        raise Fail(f"{what}: mask is not 0 exactly at the kept patches")
    if not all(a.dtype == c.dtype and torch.equal(a, c) for a, c in zip(outs[0], outs[1])):
        raise Fail(f"{what}: two calls with generators seeded alike differ; draw the noise from `generator`")
    distinct = len({tuple(r) for r in mask.int().tolist()})
    if distinct < b // 2:
        raise Fail(f"{what}: only {distinct} distinct masks in {b} samples; shuffle each sample independently")
    keep_rate = 1 - mask.double().mean(dim=0)
    for pos, rate in enumerate(keep_rate.tolist()):
        _within(f"the keep rate of patch {pos}", rate, keep / length, b, what)
    return "independent, reproducible, uniform masks"


# ---------------------------------------------------------------- contrastive
@functools.lru_cache(maxsize=1)
def _clip_loss_cls():
    from open_clip.loss import ClipLoss

    return ClipLoss


def _clip_reference(c: dict):
    img, txt = c["img"].clone().requires_grad_(True), c["txt"].clone().requires_grad_(True)
    sc = torch.tensor(c["scale"], requires_grad=True) if c["tensor_scale"] else c["scale"]
    loss = _clip_loss_cls()()(img / img.norm(dim=1, keepdim=True), txt / txt.norm(dim=1, keepdim=True), sc)
    loss.backward()
    return loss.detach(), img.grad, txt.grad, (sc.grad if c["tensor_scale"] else None)


def _clip_value(rec: dict, c: dict, name: str) -> torch.Tensor:
    b, d = c["img"].shape
    what = f"clip_loss(features of shape {[b, d]}, logit_scale={c['scale']:.3g})"
    loss = _tensor(_value(rec.get(name), what), what, floating=True)
    if loss.dim() != 0:
        raise Fail(f"{what} should return a scalar (0-dimensional) tensor, got shape {list(loss.shape)}")
    return loss


def check_clip_loss_value(rec: dict, task: dict) -> str:
    for name in ("b8", "b5"):
        c = task["cases"][name]
        want = _clip_reference(c)[0]
        got = _clip_value(rec, c, name)
        if not bool(torch.isclose(got.double(), want.double(), rtol=1e-4, atol=1e-5)):
            raise Fail(f"clip_loss on a batch of {c['img'].shape[0]} is {got.item():.6f}; open_clip's ClipLoss "
                       f"on L2-normalised features gives {want.item():.6f}")
    return "equal to open_clip's ClipLoss on normalised features"


def check_clip_loss_grad(rec: dict, task: dict) -> str:
    for name in ("b8", "b5"):
        c = task["cases"][name]
        _clip_value(rec, c, name)
        backward = _get(rec, name, "backward")
        if isinstance(backward, dict) and "error" in backward:
            raise Fail(f"backward() through clip_loss failed: {str(backward['error'])[:200]} (is the loss detached?)")
        _, g_img, g_txt, g_scale = _clip_reference(c)
        grads = _get(rec, name, "grads")
        grads = grads if isinstance(grads, list) and len(grads) == 3 else [None] * 3
        for got, want, which in ((grads[0], g_img, "image_features"), (grads[1], g_txt, "text_features")):
            if got is None:
                raise Fail(f"clip_loss is not differentiable with respect to {which}")
            _close(got, want, f"the gradient of clip_loss with respect to {which}")
        if g_scale is not None:
            if grads[2] is None:
                raise Fail("clip_loss is not differentiable with respect to logit_scale (CLIP learns it): "
                           "multiply by the tensor, do not convert it to a Python number")
            _close(grads[2], g_scale, "the gradient of clip_loss with respect to logit_scale")
    return "gradients match open_clip's"


def check_clip_loss_edges(rec: dict, task: dict) -> str:
    for name, c in task["cases"].items():
        after = _get(rec, name, "inputs_after")
        after = after if isinstance(after, list) and len(after) == 2 else [None, None]
        for a, w in zip(after, (c["img"], c["txt"])):
            if not isinstance(a, torch.Tensor) or a.shape != w.shape or a.dtype != w.dtype or not torch.equal(a, w):
                raise Fail("clip_loss modified its input features in place")
    c = task["cases"]["b1"]
    got = _clip_value(rec, c, "b1")
    want = _clip_reference(c)[0]
    if not bool(torch.isclose(got.double(), want.double(), rtol=1e-4, atol=1e-5)):
        raise Fail(f"clip_loss on a batch of one is {got.item():.6f}; expected {want.item():.6f}")
    return "scalar result, untouched inputs and a batch of one are right"


def check_zero_shot(rec: dict, task: dict) -> str:
    for name, c in task["cases"].items():
        img, cls = c["img"], c["cls"]
        n = img.shape[0]
        want = ((img / img.norm(dim=1, keepdim=True)) @ (cls / cls.norm(dim=1, keepdim=True)).T).argmax(dim=1)
        got = _tensor(_value(rec.get(name), "zero_shot_classify"), f"zero_shot_classify on {n} images", (n,),
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


def check_recall_at_k(rec: dict, task: dict) -> str:
    img, txt = task["img"], task["txt"]
    for k in task["ks"]:
        v = _value(rec.get(f"k{k}"), f"recall_at_k(k={k})")
        if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dim() <= 1:
            v = v.item()
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise Fail(f"recall_at_k(k={k}) should return a float, got {_kind(v)}")
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


def _peft_layer(c: dict):
    LoraConfig, Linear = _peft()
    r, alpha = c["r"], (1.0 if c.get("alpha") is None else c["alpha"])
    base = nn.Linear(c["W"].shape[1], c["W"].shape[0])
    with torch.no_grad():
        base.weight.copy_(c["W"])
        base.bias.copy_(c["bias"])
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["base"])
    layer = Linear(base, "default", config=config, r=r, lora_alpha=alpha)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(c["A"])
        layer.lora_B["default"].weight.copy_(c["B"])
    return layer


def _flag(v, what: str) -> bool:
    if not isinstance(v, bool):
        raise Fail(f"{what} should be a bool, got {_kind(v)}")
    return v


def _layer_built(rec, what: str) -> dict:
    if not isinstance(rec, dict):
        raise Fail(f"{what} was never built")
    if "error" in rec:
        raise Fail(f"{what} raised {str(rec['error'])[:300]}")
    return rec


def check_lora_init(rec: dict, task: dict) -> str:
    init = _layer_built(rec.get("init"), "LoRALinear(nn.Linear(6, 10), r=3, alpha=6.0)")
    if init.get("base_is_same") is not True:
        raise Fail("`base` should be the nn.Linear that was passed in")
    if init.get("base_frozen") is not True:
        raise Fail("the base layer's weight and bias must be frozen (requires_grad=False)")
    weights = {}
    for name, shape in (("A", (3, cases.LORA_IN)), ("B", (cases.LORA_OUT, 3))):
        facts = init.get(name) if isinstance(init.get(name), dict) else {}
        if facts.get("is_linear") is not True:
            raise Fail(f"lora_{name} should be an nn.Linear")
        weights[name] = _tensor(facts.get("weight"), f"lora_{name}.weight (for a 6 -> 10 layer with r=3)", shape,
                                floating=True)
        if facts.get("bias") is not False:
            raise Fail(f"lora_{name} should have no bias")
        if facts.get("trainable") is not True:
            raise Fail(f"lora_{name}.weight must be trainable")
    if bool((weights["B"] != 0).any()):
        raise Fail("lora_B must start at zero, so that the adapted layer starts equal to the base layer")
    if not bool((weights["A"] != 0).any()):
        raise Fail("lora_A must start random (not zero), otherwise lora_B gets no gradient")
    scaling = init.get("scaling")
    if isinstance(scaling, torch.Tensor) and scaling.numel() == 1:
        scaling = scaling.item()
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or abs(scaling - 2.0) > 1e-9:
        raise Fail(f"scaling should be alpha / r = 6.0 / 3 = 2.0, got {scaling!r}")
    if init.get("merged") is not False:
        raise Fail(f"a new layer should have merged == False, got {init.get('merged')!r}")
    extra = [n for n in _names(init.get("trainable_names", []), "trainable parameters")
             if n not in ("lora_A.weight", "lora_B.weight")]
    if extra:
        raise Fail(f"only lora_A and lora_B should be trainable; also trainable: {extra[:4]}")
    base = task["init"]
    want = torch.nn.functional.linear(task["x"], base["W"], base["bias"])
    y = _tensor(_value(init.get("y"), "LoRALinear.forward"), "the output of a new LoRALinear", tuple(want.shape))
    _close(y, want, "a new LoRALinear (B = 0) should compute exactly base(x); its output")
    return "frozen base, A random, B zero, scaling alpha/r"


def _case(rec: dict, i: int, c: dict) -> tuple[dict, str]:
    what = f"LoRALinear(r={c['r']}, alpha={1.0 if c['alpha'] is None else c['alpha']})"
    case = _layer_built(rec.get(f"case{i}"), what)
    _value(case.get("set"), f"{what}: setting lora_A.weight and lora_B.weight")
    return case, what


def check_lora_forward(rec: dict, task: dict) -> str:
    x = task["x"]
    for i, c in enumerate(task["cases"]):
        case, what = _case(rec, i, c)
        layer = _peft_layer(c)
        want = layer(x)
        got = _tensor(_value(case.get("y"), what), f"{what}: output", tuple(want.shape))
        _close(got, want.detach(), f"{what}: output (compared with peft's LoRA layer)")
        grads = _seq(_value(case.get("grads"), f"{what}: backward"), f"{what}: backward", 3)
        if grads[0] is None or grads[1] is None:
            raise Fail(f"{what}: no gradient reached lora_A and lora_B")
        if grads[2] is not None:
            raise Fail(f"{what}: a gradient reached the frozen base weight")
        want.sum().backward()
        _close(grads[0], layer.lora_A["default"].weight.grad, f"{what}: gradient of lora_A")
        _close(grads[1], layer.lora_B["default"].weight.grad, f"{what}: gradient of lora_B")
    return "forward and gradients equal peft's LoRA layer"


def check_lora_merge(rec: dict, task: dict) -> str:
    x = task["x"]
    for i, c in enumerate(task["cases"]):
        case, what = _case(rec, i, c)
        layer = _peft_layer(c)
        delta = layer.get_delta_weight("default").detach()
        y0 = layer(x).detach()
        _close(_value(case.get("y"), f"{what}.forward"), y0, f"{what}: output")
        _value(case.get("merge"), f"{what}.merge()")
        if case.get("merged_after_merge") is not True:
            raise Fail(f"{what}: after merge(), merged should be True")
        _close(case.get("W_merged"), c["W"] + delta, f"{what}: base.weight after merge() (W + scaling·B·A, as peft)")
        _close(_value(case.get("y_merged"), f"{what}.forward after merge()"), y0,
               f"{what}: the output after merge() should not change; it")
        _value(case.get("unmerge"), f"{what}.unmerge()")
        if case.get("merged_after_unmerge") is not False:
            raise Fail(f"{what}: after unmerge(), merged should be False")
        _close(case.get("W_unmerged"), c["W"], f"{what}: base.weight after merge() then unmerge()", atol=1e-5)
        _close(_value(case.get("y_unmerged"), f"{what}.forward after unmerge()"), y0,
               f"{what}: the output after unmerge() should not change; it")
    return "merge/unmerge round trip"


def check_lora_dropout(rec: dict, task: dict) -> str:
    what = "LoRALinear(r=2, alpha=2.0, dropout=1.0)"
    if "error" in rec:
        raise Fail(f"{what} raised {str(rec['error'])[:300]}")
    if "train" not in rec:
        raise Fail(f"{what} was never reached")
    _value(rec.get("set"), f"{what}: setting lora_A.weight and lora_B.weight")
    x, c = task["x"], task["dropout"]
    base_out = torch.nn.functional.linear(x, c["W"], c["bias"])
    _close(_value(rec.get("train"), what), base_out, f"{what} in train mode should drop the whole LoRA input and "
           "return base(x) (dropout applies to the LoRA branch only); its output")
    full = base_out + x @ c["A"].T @ c["B"].T
    _close(_value(rec.get("eval"), what), full, f"{what} in eval mode (no dropout)")
    return "dropout on the LoRA branch only"


def check_inject_lora(rec: dict, task: dict) -> str:
    call = rec.get("call")
    if not isinstance(call, dict):
        raise Fail("inject_lora was never called")
    if "error" in call:
        raise Fail(f"inject_lora(model, ['query', 'value'], r=2, alpha=4.0) raised {str(call['error'])[:300]}")
    if rec.get("returned_model") is not True:
        raise Fail("inject_lora should return the model it was given")
    targets = cases.INJECTED
    replaced = _names(rec.get("lora_modules"), "the LoRA modules")
    if replaced != targets:
        raise Fail(f"inject_lora(model, ['query', 'value']) should replace exactly {targets} (names that END "
                   f"with a target), replaced {replaced[:8]}")
    scalings = rec.get("scalings") if isinstance(rec.get("scalings"), dict) else {}
    for name in targets:
        s = scalings.get(name)
        if isinstance(s, bool) or not isinstance(s, (int, float)) or abs(s - 2.0) > 1e-9:
            raise Fail(f"{name}.scaling should be alpha / r = 2.0, got {s!r}")
    want = sorted(f"{t}.lora_{ab}.weight" for t in targets for ab in "AB")
    trainable = _names(rec.get("trainable"), "the trainable parameters")
    if trainable != want:
        extra = sorted(set(trainable) - set(want))
        missing = sorted(set(want) - set(trainable))
        raise Fail("after inject_lora only the LoRA weights should be trainable"
                   + (f"; still trainable: {extra[:4]}" if extra else "")
                   + (f"; frozen: {missing[:4]}" if missing else ""))
    before = task["state"]
    buffers = rec.get("buffers") if isinstance(rec.get("buffers"), dict) else {}
    for name in ("position", "blocks.0.scale", "blocks.1.scale"):
        b = buffers.get(name)
        if not isinstance(b, torch.Tensor) or b.shape != before[name].shape or not torch.equal(b, before[name]):
            raise Fail(f"the buffer {name} was lost or changed by inject_lora")
    weights = rec.get("base_weights") if isinstance(rec.get("base_weights"), dict) else {}
    for name in targets:
        w, w0 = weights.get(name), before[f"{name}.weight"]
        if not isinstance(w, torch.Tensor) or w.shape != w0.shape or not torch.equal(w, w0):
            raise Fail(f"{name}: the LoRALinear should wrap the original layer (its weights were lost)")
    model = cases.TinyEncoder()
    model.load_state_dict(before)
    with torch.no_grad():
        y0 = model(task["ids"])
    _close(_value(rec.get("y"), "the injected model"), y0,
           "the injected model (B = 0) should compute what the original did; its output")
    return "targets replaced, everything else frozen, buffers kept"


def check_count_parameters(rec: dict, task: dict) -> str:
    plain = cases.TinyEncoder()
    for p in plain.blocks[task["frozen_block"]].parameters():
        p.requires_grad_(False)
    tied = cases.TiedModel()
    truth = {name: (sum(p.numel() for p in m.parameters() if p.requires_grad), sum(p.numel() for p in m.parameters()))
             for name, m in (("tiny", plain), ("tied", tied))}
    for name, want in truth.items():
        got = _value(rec.get(name), "count_parameters")
        if not isinstance(got, list) or len(got) != 2:
            raise Fail("count_parameters should return a tuple (trainable, total)")
        got = tuple(_number(g, "count_parameters") for g in got)
        if got != want:
            model = "a model with a frozen block" if name == "tiny" else "a model with tied weights and a buffer"
            raise Fail(f"count_parameters on {model} returned {tuple(int(g) if g.is_integer() else g for g in got)}, "
                       f"expected {want} (count each parameter once; buffers are not parameters)")
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


def judge(grade_id: str, record, seed: int) -> Verdict:
    """Turn one cell's raw outputs into a verdict; the inputs and references are recomputed from ``seed``."""
    if grade_id not in CHECKS:
        raise KeyError(f"no hidden check called {grade_id!r}")
    if record is None:
        return Verdict(False, "Hidden tests did not run: the notebook stopped (error, timeout or a dead kernel) "
                              "before reaching this cell.")
    if not isinstance(record, dict):
        return Verdict(False, "Hidden tests did not run: their record is missing or invalid.")
    if "fatal" in record:
        return Verdict(False, f"Hidden tests failed: {str(record['fatal'])[:300]}")
    try:
        return Verdict(True, f"Hidden tests passed: {CHECKS[grade_id](record, cases.inputs(grade_id, seed))}.")
    except Fail as err:
        return Verdict(False, f"Hidden tests failed: {err}")
    except Exception as err:  # noqa: BLE001 - malformed results (e.g. wrong types) count as failures
        return Verdict(False, f"Hidden tests failed: the results could not be checked ({type(err).__name__}: "
                              f"{str(err)[:200]}); check the types and shapes your functions return.")


def judge_file(grade_id: str, path: str, seed: int) -> Verdict:
    """Judge the record a kernel wrote at ``path`` (missing, malformed or oversized: the test did not run)."""
    import os

    if not os.path.lexists(path):
        return judge(grade_id, None, seed)
    try:
        record = wire.load(path)
    except wire.WireError as err:
        return Verdict(False, f"Hidden tests did not run: their record is invalid ({str(err)[:200]}).")
    except OSError:
        return Verdict(False, "Hidden tests did not run: their record is invalid (unreadable).")
    return judge(grade_id, record, seed)
