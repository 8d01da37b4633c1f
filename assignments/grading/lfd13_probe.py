"""Kernel-side half of the hidden tests: call the student's functions on the grader's inputs.

Instructor-only: never released. A hidden-test cell only calls ``observe(grade_id, globals())``.
In the grading sandbox the grader has already written that test's inputs into the kernel's box
(``/box/tasks/<grade_id>``); ``observe`` calls the student's functions on them and writes their
raw outputs to ``/box/out/<grade_id>``. That is all the kernel does: the grader chose the inputs
from a seed the kernel never sees, recomputes them, computes the reference values and judges
(``judge.py``), after validating every output's type, dtype, shape and size. Replacing this
module, forging its record or rebinding anything in the kernel can therefore only produce
outputs, and only correct outputs pass. The kernel's environment has torch, numpy and
matplotlib, not the libraries the assignments re-implement, so an answer cannot call them.

Outside the sandbox (an instructor validating the source notebook, where the reference
libraries are installed), ``observe`` runs the same calls on inputs from a fresh seed and judges
at once, raising ``AssertionError`` with the judge's message.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

import torch
from torch import nn

import cases
import wire

BOX = None  # the kernel's box inside the sandbox (set by kernel_main.py); None outside it


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _call(fn: Callable, *args, **kwargs) -> dict:
    """Call a student function: {"value": what it returned} or {"error": what it raised}."""
    try:
        return {"value": fn(*args, **kwargs)}
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - SystemExit included: the student's error is a result
        return {"error": f"{type(err).__name__}: {err}"[:500]}


def _need(ns: dict, name: str) -> Callable:
    if name not in ns:
        raise NameError(f"`{name}` is not defined: run the cell that defines it, and keep its name")
    return ns[name]


def _detach(v: Any) -> Any:
    return v.detach().clone() if isinstance(v, torch.Tensor) else v


# ---------------------------------------------------------------- one runner per family of checks
def run_mask_tokens(ns: dict, task: dict) -> dict:
    fn, out = _need(ns, "mask_tokens"), {}
    for name, c in task["calls"].items():
        ids = c["input_ids"].clone()
        out[name] = _call(fn, ids, vocab_size=task["vocab_size"], mask_token_id=task["mask_token_id"],
                          special_tokens_mask=c["special_tokens_mask"].clone(), mlm_probability=c["p"],
                          generator=_gen(c["gseed"]))
        out[name]["input_after"] = ids
    return out


def run_random_masking(ns: dict, task: dict) -> dict:
    fn, out = _need(ns, "random_masking"), {}
    for name, c in task["given"].items():
        out[name] = _call(fn, c["x"].clone(), c["ratio"], noise=c["noise"].clone())
    free = task["free"]
    out["random"] = _call(fn, free["x"].clone(), free["ratio"], generator=_gen(free["gseed"]))
    out["random_again"] = _call(fn, free["x"].clone(), free["ratio"], generator=_gen(free["gseed"]))
    return out


def run_clip_loss(ns: dict, task: dict) -> dict:
    fn, out = _need(ns, "clip_loss"), {}
    for name, c in task["cases"].items():
        img, txt = c["img"].clone().requires_grad_(True), c["txt"].clone().requires_grad_(True)
        scale = torch.tensor(c["scale"], requires_grad=True) if c["tensor_scale"] else c["scale"]
        rec = _call(fn, img, txt, scale)
        loss = rec.get("value")
        if isinstance(loss, torch.Tensor):
            rec["value"] = loss.detach().clone()
            rec["backward"] = _call(loss.backward)
        rec["grads"] = [_detach(img.grad), _detach(txt.grad),
                        _detach(scale.grad) if isinstance(scale, torch.Tensor) else None]
        rec["inputs_after"] = [img.detach().clone(), txt.detach().clone()]
        out[name] = rec
    return out


def run_zero_shot(ns: dict, task: dict) -> dict:
    fn = _need(ns, "zero_shot_classify")
    return {name: _call(fn, c["img"].clone(), c["cls"].clone()) for name, c in task["cases"].items()}


def run_recall_at_k(ns: dict, task: dict) -> dict:
    fn = _need(ns, "recall_at_k")
    return {f"k{k}": _call(fn, task["img"].clone(), task["txt"].clone(), k) for k in task["ks"]}


def _base(spec: dict) -> nn.Linear:
    layer = nn.Linear(cases.LORA_IN, cases.LORA_OUT)
    with torch.no_grad():
        layer.weight.copy_(spec["W"])
        layer.bias.copy_(spec["bias"])
    return layer


def _facts(layer: Any, base: nn.Linear) -> dict:
    facts: dict = {"base_is_same": getattr(layer, "base", None) is base,
                   "base_frozen": all(not p.requires_grad for p in base.parameters())}
    for name in ("A", "B"):
        lin = getattr(layer, f"lora_{name}", None)
        is_lin = isinstance(lin, nn.Linear)
        facts[name] = {"is_linear": is_lin, "weight": lin.weight.detach().clone() if is_lin else None,
                       "bias": (lin.bias is not None) if is_lin else None,
                       "trainable": bool(is_lin and lin.weight.requires_grad)}
    facts["scaling"] = getattr(layer, "scaling", None)
    facts["merged"] = getattr(layer, "merged", None)
    if isinstance(layer, nn.Module):
        facts["trainable_names"] = sorted(n for n, p in layer.named_parameters() if p.requires_grad)
    return facts


def _set_lora(layer: Any, a: torch.Tensor, b: torch.Tensor) -> None:
    with torch.no_grad():
        layer.lora_A.weight.copy_(a)
        layer.lora_B.weight.copy_(b)


def run_lora(ns: dict, task: dict) -> dict:
    cls, gid, x = _need(ns, "LoRALinear"), task["grade_id"], task["x"]
    out: dict = {}
    if gid == "lora_init":
        base = _base(task["init"])
        made = _call(cls, base, r=3, alpha=6.0)
        out["init"] = {"error": made["error"]} if "error" in made else {
            **_facts(made["value"], base), "y": _call(lambda: made["value"](x.clone()).detach())}
    elif gid in ("lora_forward", "lora_merge"):
        for i, c in enumerate(task["cases"]):
            base = _base(c)
            kwargs = {"r": c["r"]} if c["alpha"] is None else {"r": c["r"], "alpha": c["alpha"]}
            made = _call(cls, base, **kwargs)
            if "error" in made:
                out[f"case{i}"] = {"error": made["error"]}
                continue
            layer = made["value"]
            rec = {"set": _call(_set_lora, layer, c["A"], c["B"])}
            rec["y"] = _call(lambda: layer(x.clone()).detach())
            if gid == "lora_forward":
                def backward():
                    layer(x.clone()).sum().backward()
                    return [_detach(layer.lora_A.weight.grad), _detach(layer.lora_B.weight.grad),
                            _detach(base.weight.grad)]
                rec["grads"] = _call(backward)
            else:
                rec["merge"] = _call(layer.merge)
                rec["merged_after_merge"] = getattr(layer, "merged", None)
                rec["W_merged"] = base.weight.detach().clone()
                rec["y_merged"] = _call(lambda: layer(x.clone()).detach())
                rec["unmerge"] = _call(layer.unmerge)
                rec["merged_after_unmerge"] = getattr(layer, "merged", None)
                rec["W_unmerged"] = base.weight.detach().clone()
                rec["y_unmerged"] = _call(lambda: layer(x.clone()).detach())
            out[f"case{i}"] = rec
    else:  # lora_dropout
        spec = task["dropout"]
        made = _call(cls, _base(spec), r=2, alpha=2.0, dropout=1.0)
        if "error" in made:
            return {"error": made["error"]}
        layer = made["value"]
        out["set"] = _call(_set_lora, layer, spec["A"], spec["B"])
        out["train"] = _call(lambda: (layer.train(), layer(x.clone()).detach())[1])
        out["eval"] = _call(lambda: (layer.eval(), layer(x.clone()).detach())[1])
    return out


def run_inject_lora(ns: dict, task: dict) -> dict:
    inject = _need(ns, "inject_lora")
    model = cases.TinyEncoder()
    model.load_state_dict(task["state"])
    rec = _call(inject, model, list(cases.INJECT_TARGETS), r=2, alpha=4.0)
    if "error" in rec:
        return {"call": rec}
    out: dict = {"call": {"value": None}, "returned_model": rec["value"] is model}
    modules = dict(model.named_modules())
    names = sorted(n for n, m in modules.items() if hasattr(m, "lora_A") and hasattr(m, "lora_B"))
    out["lora_modules"] = names
    out["scalings"] = {n: getattr(modules[n], "scaling", None) for n in names}
    out["trainable"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    out["buffers"] = {n: b.detach().clone() for n, b in model.named_buffers()}
    out["base_weights"] = {n: modules[n].base.weight.detach().clone() for n in names
                           if isinstance(getattr(modules[n], "base", None), nn.Linear)}
    out["y"] = _call(lambda: model(task["ids"].clone()).detach())
    return out


def run_count_parameters(ns: dict, task: dict) -> dict:
    count = _need(ns, "count_parameters")
    plain = cases.TinyEncoder()
    plain.load_state_dict(task["state"])
    for p in plain.blocks[task["frozen_block"]].parameters():
        p.requires_grad_(False)
    return {"tiny": _call(count, plain), "tied": _call(count, cases.TiedModel())}


RUNNERS = {"mask_tokens": run_mask_tokens, "random_masking": run_random_masking, "clip_loss": run_clip_loss,
           "zero_shot": run_zero_shot, "recall_at_k": run_recall_at_k, "lora": run_lora,
           "inject_lora": run_inject_lora, "count_parameters": run_count_parameters}


def run(grade_id: str, ns: dict, task: dict) -> dict:
    try:
        return RUNNERS[cases.family(grade_id)](ns, task)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - e.g. a missing function: recorded, judged as a failure
        return {"fatal": f"{type(err).__name__}: {err}"[:500]}


def observe(grade_id: str, ns: dict) -> None:
    """Entry point of a hidden-test cell."""
    if BOX is None:  # instructor mode (nbgrader validate): judge right away, in this process
        import secrets

        import judge  # noqa: PLC0415 - only the instructor's environment has it and the reference libraries

        seed = secrets.randbelow(2**31 - 1000)
        record = wire.loads(wire.dumps(run(grade_id, ns, cases.inputs(grade_id, seed))))
        verdict = judge.judge(grade_id, record, seed)
        if not verdict.passed:
            raise AssertionError(verdict.message)
        print(verdict.message)
        return
    task = wire.load(os.path.join(BOX, "tasks", grade_id))
    wire.dump(run(grade_id, ns, task), os.path.join(BOX, "out", grade_id))
    print("Recorded for grading.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("lfd13_probe is imported by the grading kernel, not run")
