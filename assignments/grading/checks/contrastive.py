"""Hidden tests of the contrastive assignment: ``clip_loss``, ``zero_shot_classify``, ``recall_at_k``.

Instructor-only, grader side. The maths is deterministic, so every output is compared exactly (to
float32 round-off) with the reference on features whose sizes, norms and logit scale vary with the
secret: open_clip's ``ClipLoss`` on L2-normalised features (value and gradients), the
cosine-similarity argmax, and image-to-text recall at k.
"""
from __future__ import annotations

import functools

import torch

from lfd13_probe import attempt, need, snapshot

from .base import Check, Fail, Secret, close, entries, field, number, result, tensor


def features(s: Secret, label: str, n: int, d: int) -> torch.Tensor:
    """Unnormalised features [n, d] whose norms vary a lot (forgetting to normalise changes the answers)."""
    g = s.gen(label)
    return torch.randn(n, d, generator=g) * torch.exp(1.5 * torch.randn(n, 1, generator=g))


# ====================================================================== clip_loss
def call_clip_loss(ns: dict, inputs: dict) -> dict:
    """Kernel side: the loss, its backward pass, the gradients and the inputs afterwards, per case."""
    fn = need(ns, "clip_loss")
    out = []
    for c in inputs["cases"]:
        img, txt = c["img"].clone().requires_grad_(True), c["txt"].clone().requires_grad_(True)
        scale = torch.tensor(c["scale"], requires_grad=True) if c["tensor_scale"] else c["scale"]
        rec = attempt(fn, img, txt, scale)
        loss = rec.get("value")
        if isinstance(loss, torch.Tensor):
            rec["value"] = snapshot(loss)
            rec["backward"] = attempt(loss.backward)
        rec["grads"] = [snapshot(img.grad), snapshot(txt.grad),
                        snapshot(scale.grad) if isinstance(scale, torch.Tensor) else None]
        rec["inputs_after"] = [snapshot(img), snapshot(txt)]
        out.append(rec)
    return {"cases": out}


def make_clip(s: Secret) -> dict:
    cases = []
    for i, (low, high, as_tensor) in enumerate(((5, 12, True), (3, 9, False))):
        b, d = s.integer(low, high, f"B{i}"), s.integer(3, 16, f"D{i}")
        cases.append({"img": features(s, f"img{i}", b, d), "txt": features(s, f"txt{i}", b, d),
                      "scale": round(s.uniform(2.0, 30.0, f"scale{i}"), 3), "tensor_scale": as_tensor})
    return {"cases": cases}


def make_clip_edges(s: Secret) -> dict:
    cases = make_clip(s)["cases"]
    d = s.integer(3, 8, "D one")
    cases.append({"img": features(s, "img one", 1, d), "txt": features(s, "txt one", 1, d),
                  "scale": round(s.uniform(2.0, 30.0, "scale one"), 3), "tensor_scale": True})
    return {"cases": cases}


@functools.lru_cache(maxsize=1)
def _clip_loss_cls():
    from open_clip.loss import ClipLoss

    return ClipLoss


def clip_reference(c: dict):
    """open_clip's ClipLoss on L2-normalised features: (loss, d/d img, d/d txt, d/d scale or None)."""
    img, txt = c["img"].clone().requires_grad_(True), c["txt"].clone().requires_grad_(True)
    sc = torch.tensor(c["scale"], requires_grad=True) if c["tensor_scale"] else c["scale"]
    loss = _clip_loss_cls()()(img / img.norm(dim=1, keepdim=True), txt / txt.norm(dim=1, keepdim=True), sc)
    loss.backward()
    return loss.detach(), img.grad, txt.grad, (sc.grad if c["tensor_scale"] else None)


def _loss(c: dict, rec) -> tuple[str, torch.Tensor]:
    b, d = c["img"].shape
    what = f"clip_loss(features of shape {[b, d]}, logit_scale as a {'tensor' if c['tensor_scale'] else 'float'})"
    loss = tensor(result(rec, what), what, floating=True)
    if loss.dim() != 0:
        raise Fail(f"{what} should return a scalar (0-dimensional) tensor, got shape {list(loss.shape)}")
    return what, loss


LOSS = ("should be the CLIP loss: cross-entropy of logit_scale · cosine similarities with the matching "
        "pairs as targets, image-to-text and text-to-image, averaged")


def judge_clip_value(inputs: dict, outputs: dict) -> str:
    for c, rec in zip(inputs["cases"], entries(outputs, "cases", len(inputs["cases"]))):
        what, loss = _loss(c, rec)
        close(loss, clip_reference(c)[0], f"{what}: the value ({LOSS});")
    return "equal to open_clip's ClipLoss on normalised features"


def judge_clip_grad(inputs: dict, outputs: dict) -> str:
    for c, rec in zip(inputs["cases"], entries(outputs, "cases", len(inputs["cases"]))):
        what, _ = _loss(c, rec)
        backward = field(rec, "backward")
        if isinstance(backward, dict) and "error" in backward:
            raise Fail(f"backward() through {what} failed: {str(backward['error'])[:200]} (is the loss detached?)")
        _, g_img, g_txt, g_scale = clip_reference(c)
        grads = field(rec, "grads")
        grads = grads if isinstance(grads, list) and len(grads) == 3 else [None] * 3
        for got, want, which in ((grads[0], g_img, "image_features"), (grads[1], g_txt, "text_features")):
            if got is None:
                raise Fail(f"{what} is not differentiable with respect to {which}")
            close(got, want, f"{what}: the gradient with respect to {which}")
        if g_scale is not None:
            if grads[2] is None:
                raise Fail(f"{what} is not differentiable with respect to logit_scale (CLIP learns it): "
                           "multiply by the tensor, do not convert it to a Python number")
            close(grads[2], g_scale, f"{what}: the gradient with respect to logit_scale")
    return "gradients match open_clip's"


def judge_clip_edges(inputs: dict, outputs: dict) -> str:
    recs = entries(outputs, "cases", len(inputs["cases"]))
    for c, rec in zip(inputs["cases"], recs):
        after = field(rec, "inputs_after")
        after = after if isinstance(after, list) and len(after) == 2 else [None, None]
        for a, w in zip(after, (c["img"], c["txt"])):
            if not isinstance(a, torch.Tensor) or a.shape != w.shape or a.dtype != w.dtype or not torch.equal(a, w):
                raise Fail("clip_loss modified its input features in place")
        what, loss = _loss(c, rec)
        close(loss, clip_reference(c)[0], f"{what}: the value ({LOSS});")
    return "scalar result, untouched inputs and a batch of one are right"


# ====================================================================== retrieval
def call_zero_shot(ns: dict, inputs: dict) -> dict:
    fn = need(ns, "zero_shot_classify")
    return {"cases": [attempt(fn, c["img"].clone(), c["cls"].clone()) for c in inputs["cases"]]}


def make_zero_shot(s: Secret) -> dict:
    d = s.integer(6, 16, "D")
    sizes = [(s.integer(30, 80, "N"), s.integer(4, 10, "C")), (1, s.integer(2, 6, "C one"))]
    return {"cases": [{"img": features(s, f"img{i}", n, d), "cls": features(s, f"cls{i}", c, d)}
                      for i, (n, c) in enumerate(sizes)]}


def judge_zero_shot(inputs: dict, outputs: dict) -> str:
    for c, rec in zip(inputs["cases"], entries(outputs, "cases", len(inputs["cases"]))):
        img, cls = c["img"], c["cls"]
        n = img.shape[0]
        want = ((img / img.norm(dim=1, keepdim=True)) @ (cls / cls.norm(dim=1, keepdim=True)).T).argmax(dim=1)
        what = f"zero_shot_classify on {n} image{'s' * (n != 1)}"
        got = tensor(result(rec, what), what, (n,), torch.long)
        if not torch.equal(got, want):
            raise Fail(f"{what}: {int((got != want).sum())} of {n} images get a class other than the one of "
                       "highest cosine similarity")
    return "cosine-similarity argmax"


def call_recall_at_k(ns: dict, inputs: dict) -> dict:
    fn = need(ns, "recall_at_k")
    return {"ks": [attempt(fn, inputs["img"].clone(), inputs["txt"].clone(), k) for k in inputs["ks"]]}


def make_recall(s: Secret) -> dict:
    """Image/text pairs: each text is its image plus noise, texts with very different norms."""
    n, d = s.integer(30, 60, "N"), s.integer(6, 12, "D")
    img = features(s, "img", n, d)
    g = s.gen("txt")
    txt = img / img.norm(dim=1, keepdim=True) + s.uniform(0.4, 0.7, "noise") * torch.randn(n, d, generator=g)
    txt = txt * torch.exp(torch.randn(n, 1, generator=g))
    return {"img": img, "txt": txt, "ks": [1, s.integer(2, 4, "k small"), s.integer(5, 9, "k mid"), n]}


def recall_reference(img: torch.Tensor, txt: torch.Tensor, k: int, dtype: torch.dtype) -> float:
    img, txt = img.to(dtype), txt.to(dtype)
    sims = (img / img.norm(dim=1, keepdim=True)) @ (txt / txt.norm(dim=1, keepdim=True)).T
    topk = sims.topk(k, dim=1).indices
    return (topk == torch.arange(len(img))[:, None]).any(dim=1).double().mean().item()


def judge_recall(inputs: dict, outputs: dict) -> str:
    img, txt = inputs["img"], inputs["txt"]
    for k, rec in zip(inputs["ks"], entries(outputs, "ks", len(inputs["ks"]))):
        what = f"recall_at_k(k={k})"
        v = number(result(rec, what), f"{what} (a float)")
        wants = {recall_reference(img, txt, k, dt) for dt in (torch.float32, torch.float64)}
        if not any(abs(v - w) < 1e-6 for w in wants):
            raise Fail(f"{what} is wrong: it should be the fraction of images whose paired text (same row) is "
                       "among the k texts of highest cosine similarity to the image")
    return "image-to-text recall at k is right"


CHECKS = [
    Check("clip_loss_value", make_clip, call_clip_loss, judge_clip_value, "value equal to open_clip's ClipLoss"),
    Check("clip_loss_grad", make_clip, call_clip_loss, judge_clip_grad,
          "gradients w.r.t. both features and a tensor logit_scale equal open_clip's"),
    Check("clip_loss_edges", make_clip_edges, call_clip_loss, judge_clip_edges,
          "scalar result, inputs not modified, a batch of one"),
    Check("zero_shot", make_zero_shot, call_zero_shot, judge_zero_shot, "cosine-similarity argmax, N=1 included"),
    Check("recall_at_k", make_recall, call_recall_at_k, judge_recall, "image-to-text recall at several k"),
]
