"""Student-side half of the hidden tests: call the student's functions, record what they return.

Instructor-only: this file is never released. At grading time the sandboxed kernel imports it
*before* any student code runs (see ``kernel_launcher.py``); a hidden-test cell only calls
``observe(grade_id, globals())``. The probe records *observations* (the outputs of the student's
functions on inputs generated from a seed) and writes them to the kernel's private box. All
judgement happens later, in the grader process, in ``judge.py``: that process never runs student
code, so rebinding ``torch.allclose``, ``numpy`` comparisons or assert helpers inside the notebook
cannot make a hidden test pass. Inputs are regenerated there from the same seed, so an observation
file forged by student code can only pass by containing correct outputs.

Delegation to the libraries the assignments re-implement (transformers' collator and ViTMAE
masking, open_clip's loss, peft) is detected here: every call of a student function runs under a
profiler that records any Python frame executed from those libraries' source files.

Outside the sandbox (an instructor running the source notebook), ``observe`` judges at once and
raises ``AssertionError`` with the judge's message, so ``nbgrader validate`` runs the real checks.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from typing import Any, Callable

import torch
from torch import nn

# ---------------------------------------------------------------- state set by the kernel launcher
BOX: str | None = None      # private directory of this kernel; None outside the grading sandbox
SEED: int = 0               # per-run seed chosen by the grader (unknown to the student beforehand)

# pristine references, taken at import time (before student code can rebind anything)
_save, _clone, _setprofile, _getprofile = torch.save, torch.Tensor.clone, sys.setprofile, sys.getprofile
_Generator, _manual_seed = torch.Generator, torch.Generator.manual_seed


# ---------------------------------------------------------------- which functions each check calls
ASSIGNMENT = {  # grade_id prefix -> assignment
    "mask_tokens": "masking", "random_masking": "masking",
    "clip_loss": "contrastive", "zero_shot": "contrastive", "recall_at_k": "contrastive",
    "lora": "lora", "inject_lora": "lora", "count_parameters": "lora",
}


def assignment_of(grade_id: str) -> str:
    for prefix, name in ASSIGNMENT.items():
        if grade_id.startswith(prefix):
            return name
    raise KeyError(f"unknown hidden test {grade_id!r}")


def _library_dirs(assignment: str) -> tuple[list[str], list[str]]:
    """Source directories (and module prefixes) that a student answer must not execute."""
    def pkg_dir(name: str) -> str | None:
        spec = importlib.util.find_spec(name)
        return spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None

    if assignment == "masking":
        root = pkg_dir("transformers")
        dirs = [] if root is None else [os.path.join(root, "data"), os.path.join(root, "models", "vit_mae")]
        return dirs, ["transformers.data", "transformers.models.vit_mae"]
    name = {"contrastive": "open_clip", "lora": "peft"}[assignment]
    root = pkg_dir(name)
    return ([] if root is None else [root]), [name]


class Watch:
    """Run student calls under a profiler that records frames from forbidden library files."""

    def __init__(self, assignment: str):
        self.dirs, self.modules = _library_dirs(assignment)
        self.hits: set[str] = set()
        self.tampered = False
        self.hook = self._hook  # one bound-method object, so that identity checks work

    def _hook(self, frame, event, arg):  # noqa: ARG002 - profiler signature
        if event == "call":
            filename = frame.f_code.co_filename
            for d in self.dirs:
                if filename.startswith(d):
                    self.hits.add(f"{os.path.relpath(filename, os.path.dirname(d))}:{frame.f_code.co_name}")

    def __call__(self, fn: Callable, *args, **kwargs):
        before, previous = set(sys.modules), _getprofile()
        _setprofile(self.hook)
        try:
            return fn(*args, **kwargs)
        finally:
            if _getprofile() is not self.hook:
                self.tampered = True
            _setprofile(previous)
            for name in set(sys.modules) - before:
                if any(name == m or name.startswith(m + ".") for m in self.modules):
                    self.hits.add(f"import {name}")


def _safe(value: Any) -> Any:
    """Reduce a student's return value to plain data that ``torch.load(weights_only=True)`` accepts."""
    if type(value) is torch.Tensor:
        return {"__tensor__": _clone(value.detach())}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return {"__seq__": [_safe(v) for v in value], "kind": type(value).__name__}
    try:
        return {"__other__": f"{type(value).__module__}.{type(value).__qualname__}", "float": float(value)}
    except Exception:  # noqa: BLE001 - anything unconvertible is recorded by its type name
        return {"__other__": f"{type(value).__module__}.{type(value).__qualname__}"}


def _gen(seed: int) -> torch.Generator:
    g = _Generator()
    _manual_seed(g, seed)
    return g


# ---------------------------------------------------------------- inputs (shared with the judge)
def masking_batch(seed: int, batch: int, length: int, vocab: int = 5000) -> dict:
    """Token ids drawn from a narrow band [100, 600) of a large vocabulary; [CLS]=1, [SEP]=2, [PAD]=0."""
    g = _gen(seed)
    ids = torch.randint(100, 600, (batch, length), generator=g)
    pad_from = torch.randint(length // 2, length + 1, (batch,), generator=g)
    special = torch.zeros(batch, length, dtype=torch.bool)
    for b in range(batch):
        n = int(pad_from[b])
        ids[b, n:] = 0
        special[b, n:] = True
        ids[b, 0], special[b, 0] = 1, True
        ids[b, min(n, length) - 1], special[b, min(n, length) - 1] = 2, True
    return {"input_ids": ids, "special_tokens_mask": special, "vocab_size": vocab, "mask_token_id": 4}


def features(seed: int, *shape: int) -> torch.Tensor:
    """Unnormalised features whose norms vary a lot (so forgetting to normalise changes answers)."""
    g = _gen(seed)
    x = torch.randn(*shape, generator=g)
    return x * torch.exp(torch.randn(*shape[:-1], 1, generator=g))


def linear(seed: int, n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    g = _gen(seed)
    layer = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_out, n_in, generator=g) / n_in ** 0.5)
        if bias:
            layer.bias.copy_(torch.randn(n_out, generator=g))
    return layer


class Block(nn.Module):
    """A toy transformer block: attention projections, an output layer, a norm and a buffer."""

    def __init__(self, d: int):
        super().__init__()
        self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        self.norm = nn.LayerNorm(d)
        self.register_buffer("scale", torch.tensor(d ** -0.5))

    def forward(self, x):  # x: (B, L, D)
        att = torch.softmax(self.query(x) @ self.key(x).transpose(1, 2) * self.scale, dim=-1)
        return self.norm(x + self.out(att @ self.value(x)))


class TinyEncoder(nn.Module):
    """Embedding, two blocks and a ``value_head`` whose name contains, but does not end with, ``value``."""

    def __init__(self, vocab: int = 20, d: int = 8, n_out: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d), Block(d)])
        self.value_head = nn.Linear(d, n_out)
        self.register_buffer("position", torch.arange(16).float() / 16)

    def forward(self, ids):  # ids: (B, L) -> (B, n_out)
        x = self.embed(ids) + self.position[: ids.shape[1], None]
        for block in self.blocks:
            x = block(x)
        return self.value_head(x.mean(dim=1))


def tiny_encoder(seed: int) -> TinyEncoder:
    torch.manual_seed(seed)
    return TinyEncoder()


class TiedModel(nn.Module):
    """A model whose output layer shares the embedding matrix, with a frozen norm and a buffer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.norm = nn.LayerNorm(6)
        self.norm.requires_grad_(False)
        self.out = nn.Linear(6, 11, bias=False)
        self.out.weight = self.embed.weight
        self.register_buffer("running", torch.zeros(50))


# ---------------------------------------------------------------- observations
def _try(watch: Watch, fn, *args, **kwargs) -> tuple[Any, str | None]:
    """Call a student function; return (value, None) or (None, error message)."""
    try:
        return watch(fn, *args, **kwargs), None
    except BaseException as err:  # noqa: BLE001 - a KeyboardInterrupt (timeout) must propagate
        if isinstance(err, KeyboardInterrupt):
            raise
        return None, f"{type(err).__name__}: {err}"


def _call(watch: Watch, fn, *args, **kwargs) -> dict:
    """Call a student function; record its result or the error it raised."""
    try:
        return {"ok": True, "result": _safe(watch(fn, *args, **kwargs))}
    except BaseException as err:  # noqa: BLE001 - a KeyboardInterrupt (timeout) must propagate
        if isinstance(err, KeyboardInterrupt):
            raise
        return {"ok": False, "error": f"{type(err).__name__}: {err}",
                "where": "".join(traceback.format_exception_only(type(err), err)).strip()[-500:]}


def _need(ns: dict, name: str) -> Callable:
    if name not in ns:
        raise NameError(f"`{name}` is not defined: run the cell that defines it, and keep its name")
    return ns[name]


def observe_masking(grade_id: str, ns: dict, watch: Watch, seed: int) -> dict:
    obs: dict = {}
    if grade_id.startswith("mask_tokens"):
        fn = _need(ns, "mask_tokens")
        calls = {  # name -> (batch seed, B, L, mlm_probability, generator seed)
            "rate": (seed, 128, 128, 0.15, seed + 1),
            "rate40": (seed + 2, 64, 128, 0.4, seed + 3),
            "split": (seed + 4, 128, 128, 0.5, seed + 5),
            "same_a": (seed + 6, 8, 32, 0.15, seed + 7),
            "same_b": (seed + 6, 8, 32, 0.15, seed + 7),
            "other": (seed + 6, 8, 32, 0.15, seed + 8),
            "one": (seed + 9, 1, 9, 0.15, seed + 10),
        }
        for name, (bseed, b, length, p, gseed) in calls.items():
            batch = masking_batch(bseed, b, length)
            ids = batch["input_ids"]
            obs[name] = _call(watch, fn, ids, vocab_size=batch["vocab_size"], mask_token_id=batch["mask_token_id"],
                              special_tokens_mask=batch["special_tokens_mask"], mlm_probability=p,
                              generator=_gen(gseed))
            obs[name]["input_after"] = _clone(ids)  # the judge compares it with the regenerated input
    else:
        fn = _need(ns, "random_masking")
        cases = {  # name -> (B, L, D, mask_ratio, given noise?)
            "exact75": (4, 16, 8, 0.75, True), "exact50": (3, 10, 5, 0.5, True),
            "odd": (2, 7, 3, 0.75, True), "one": (1, 5, 4, 0.6, True), "none": (2, 6, 3, 0.0, True),
        }
        for i, (name, (b, length, d, r, given)) in enumerate(cases.items()):
            g = _gen(seed + 20 + i)
            x = torch.randn(b, length, d, generator=g)
            noise = torch.rand(b, length, generator=g)
            obs[name] = _call(watch, fn, x, r, noise=noise)
        x = torch.randn(512, 16, 2, generator=_gen(seed + 30))
        obs["random"] = _call(watch, fn, x, 0.75, generator=_gen(seed + 31))
        obs["random_again"] = _call(watch, fn, x, 0.75, generator=_gen(seed + 31))
    return obs


def observe_contrastive(grade_id: str, ns: dict, watch: Watch, seed: int) -> dict:
    obs: dict = {}
    if grade_id.startswith("clip_loss"):
        fn = _need(ns, "clip_loss")
        cases = {"b8": (8, 16, 14.3, True), "b5": (5, 3, 1 / 0.07, False), "b1": (1, 4, 10.0, True)}
        for i, (name, (b, d, scale, tensor_scale)) in enumerate(cases.items()):
            img, txt = features(seed + 40 + i, b, d), features(seed + 50 + i, b, d)
            img_in, txt_in = _clone(img).requires_grad_(True), _clone(txt).requires_grad_(True)
            s = torch.tensor(scale, requires_grad=True) if tensor_scale else scale
            obs[name] = _call(watch, fn, img_in, txt_in, s)
            obs[name]["inputs_after"] = [_clone(img_in.detach()), _clone(txt_in.detach())]
            loss = None
            if obs[name]["ok"]:
                try:
                    loss = watch(fn, img_in, txt_in, s)
                    watch(loss.backward)
                except BaseException as err:  # noqa: BLE001
                    if isinstance(err, KeyboardInterrupt):
                        raise
                    obs[name]["backward_error"] = f"{type(err).__name__}: {err}"
            obs[name]["grads"] = [None if t.grad is None else _clone(t.grad) for t in (img_in, txt_in)]
            obs[name]["scale_grad"] = (None if not isinstance(s, torch.Tensor) or s.grad is None else _clone(s.grad))
    elif grade_id.startswith("zero_shot"):
        fn = _need(ns, "zero_shot_classify")
        obs["n50"] = _call(watch, fn, features(seed + 60, 50, 12), features(seed + 61, 7, 12))
        obs["n1"] = _call(watch, fn, features(seed + 62, 1, 12), features(seed + 63, 4, 12))
    else:
        fn = _need(ns, "recall_at_k")
        img, txt = recall_pairs(seed)
        for k in (1, 3, 5, 40):
            obs[f"k{k}"] = _call(watch, fn, img, txt, k)
    return obs


def recall_pairs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """40 image/text pairs: each text is its image plus noise, texts with very different norms."""
    img = features(seed + 70, 40, 8)
    g = _gen(seed + 71)
    txt = (img / img.norm(dim=1, keepdim=True) + 0.5 * torch.randn(40, 8, generator=g))
    txt = txt * torch.exp(torch.randn(40, 1, generator=g))
    return img, txt


def _layer_facts(layer: Any, base: nn.Linear) -> dict:
    facts: dict = {}
    lora_a, lora_b = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    facts["base_is_same"] = getattr(layer, "base", None) is base
    facts["base_frozen"] = all(not p.requires_grad for p in base.parameters())
    for name, lin in (("A", lora_a), ("B", lora_b)):
        is_lin = isinstance(lin, nn.Linear)
        facts[f"{name}_is_linear"] = is_lin
        facts[f"{name}_shape"] = list(lin.weight.shape) if is_lin else None
        facts[f"{name}_bias"] = (lin.bias is not None) if is_lin else None
        facts[f"{name}_weight"] = _clone(lin.weight.detach()) if is_lin else None
        facts[f"{name}_trainable"] = bool(is_lin and lin.weight.requires_grad)
    facts["scaling"] = _safe(getattr(layer, "scaling", None))
    facts["merged"] = _safe(getattr(layer, "merged", None))
    if isinstance(layer, nn.Module):
        trainable = [n for n, p in layer.named_parameters() if p.requires_grad]
        facts["trainable_names"] = sorted(trainable)
    return facts


def _set_lora(layer: Any, a: torch.Tensor, b: torch.Tensor) -> None:
    with torch.no_grad():
        layer.lora_A.weight.copy_(a)
        layer.lora_B.weight.copy_(b)


def observe_lora(grade_id: str, ns: dict, watch: Watch, seed: int) -> dict:
    obs: dict = {}
    g = _gen(seed + 80)
    x = torch.randn(2, 5, 6, generator=g)
    if grade_id.startswith("lora_"):
        cls = _need(ns, "LoRALinear")
        base = linear(seed + 81, 6, 10)
        layer, err = _try(watch, cls, base, r=3, alpha=6.0)
        obs["init"] = {"ok": err is None, "error": err}
        if err is not None:
            return obs
        obs["init"].update(_layer_facts(layer, base))
        obs["init"]["x"] = x
        obs["init"]["base_weight"], obs["init"]["base_bias"] = _clone(base.weight.detach()), _clone(base.bias.detach())
        obs["init"]["y"] = _call(watch, layer, x)
        if grade_id in ("lora_forward", "lora_merge"):
            for i, (r, alpha) in enumerate(((3, 6.0), (2, None))):
                base_i = linear(seed + 82 + i, 6, 10)
                kwargs = {"r": r} if alpha is None else {"r": r, "alpha": alpha}
                layer_i = watch(cls, base_i, **kwargs)
                a = torch.randn(r, 6, generator=g)
                b = torch.randn(10, r, generator=g)
                watch(_set_lora, layer_i, a, b)
                case = {"r": r, "alpha": 1.0 if alpha is None else alpha, "A": a, "B": b,
                        "W": _clone(base_i.weight.detach()), "bias": _clone(base_i.bias.detach())}
                case["y"] = _call(watch, layer_i, x)
                if grade_id == "lora_forward":
                    try:
                        out = watch(layer_i, x)
                        watch(out.sum().backward)
                        case["grad_A"] = None if layer_i.lora_A.weight.grad is None else _clone(layer_i.lora_A.weight.grad)
                        case["grad_B"] = None if layer_i.lora_B.weight.grad is None else _clone(layer_i.lora_B.weight.grad)
                        case["grad_W"] = None if base_i.weight.grad is None else _clone(base_i.weight.grad)
                    except BaseException as err:  # noqa: BLE001
                        if isinstance(err, KeyboardInterrupt):
                            raise
                        case["backward_error"] = f"{type(err).__name__}: {err}"
                else:
                    case["merge"] = _call(watch, layer_i.merge)
                    case["merged_after_merge"] = _safe(getattr(layer_i, "merged", None))
                    case["W_merged"] = _clone(base_i.weight.detach())
                    case["y_merged"] = _call(watch, layer_i, x)
                    case["unmerge"] = _call(watch, layer_i.unmerge)
                    case["merged_after_unmerge"] = _safe(getattr(layer_i, "merged", None))
                    case["W_unmerged"] = _clone(base_i.weight.detach())
                    case["y_unmerged"] = _call(watch, layer_i, x)
                obs[f"case{i}"] = case
        if grade_id == "lora_dropout":
            base_d = linear(seed + 85, 6, 10)
            layer_d = watch(cls, base_d, r=2, alpha=2.0, dropout=1.0)
            a, b = torch.randn(2, 6, generator=g), torch.randn(10, 2, generator=g)
            watch(_set_lora, layer_d, a, b)
            layer_d.train()
            obs["train"] = _call(watch, layer_d, x)
            layer_d.eval()
            obs["eval"] = _call(watch, layer_d, x)
            obs.update(A=a, B=b, W=_clone(base_d.weight.detach()), bias=_clone(base_d.bias.detach()), x=x)
    elif grade_id.startswith("inject_lora"):
        inject = _need(ns, "inject_lora")
        model = tiny_encoder(seed + 90)
        ids = torch.randint(0, 20, (3, 10), generator=g)
        before = {k: _clone(v) for k, v in model.state_dict().items()}
        with torch.no_grad():
            y0 = model(ids)
        returned, err = _try(watch, inject, model, ["query", "value"], r=2, alpha=4.0)
        obs["call"] = {"ok": err is None, "error": err}
        obs["returned_model"] = returned is model
        if err is None:
            obs["state_before"] = before
            modules = dict(model.named_modules())
            obs["lora_modules"] = sorted(n for n, m in modules.items() if hasattr(m, "lora_A") and hasattr(m, "lora_B"))
            obs["scalings"] = {n: _safe(getattr(modules[n], "scaling", None)) for n in obs["lora_modules"]}
            obs["trainable"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
            obs["all_params"] = sorted(n for n, p in model.named_parameters())
            obs["buffers"] = {n: _clone(b) for n, b in model.named_buffers()}
            obs["base_weights"] = {n: _clone(modules[n].base.weight.detach()) for n in obs["lora_modules"]
                                   if isinstance(getattr(modules[n], "base", None), nn.Linear)}
            obs["y0"], obs["y1"] = y0, _call(watch, lambda: model(ids).detach())
    else:
        count = _need(ns, "count_parameters")
        plain = tiny_encoder(seed + 91)
        for p in plain.blocks[0].parameters():
            p.requires_grad_(False)
        obs["tiny"] = _call(watch, count, plain)
        obs["tied"] = _call(watch, count, TiedModel())
        obs["truth"] = {"tiny": [sum(p.numel() for p in plain.parameters() if p.requires_grad),
                                 sum(p.numel() for p in plain.parameters())]}
    return obs


OBSERVERS = {"masking": observe_masking, "contrastive": observe_contrastive, "lora": observe_lora}


def collect(grade_id: str, ns: dict, seed: int) -> dict:
    assignment = assignment_of(grade_id)
    watch = Watch(assignment)
    try:
        obs = OBSERVERS[assignment](grade_id, ns, watch, seed)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - e.g. a missing function or a crash outside a call
        obs = {"fatal": f"{type(err).__name__}: {err}"}
    obs["grade_id"] = grade_id
    obs["delegation"] = sorted(watch.hits)
    obs["profiler_tampered"] = watch.tampered
    return obs


def observe(grade_id: str, ns: dict) -> None:
    """Entry point of a hidden-test cell."""
    if BOX is None:  # instructor mode: judge right away
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import judge  # noqa: PLC0415 - only the instructor has it

        verdict = judge.judge(grade_id, collect(grade_id, ns, SEED), SEED)
        if not verdict.passed:
            raise AssertionError(verdict.message)
        print(verdict.message)
        return
    obs = collect(grade_id, ns, SEED)
    os.makedirs(os.path.join(BOX, "obs"), exist_ok=True)
    _save(obs, os.path.join(BOX, "obs", f"{grade_id}.pt"))
    print("Recorded for grading.")
