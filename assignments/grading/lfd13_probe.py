"""Kernel side of the hidden tests: a thin caller that knows nothing about grading.

Instructor-only: never released, and treated as untrusted once it is in a student's kernel. A
hidden-test cell only calls ``observe(grade_id, globals())``. In the grading sandbox the grader
has written that test's *task* into the kernel's box (``/box/tasks/<grade_id>``): the inputs it
drew from a seed the kernel never sees, and the source of a short function that calls the
student's code on them (its check's ``call``, see ``checks/``). ``observe`` runs that function
with the helpers below and writes what it returns, raw, to ``/box/out/<grade_id>``. There is no
case generator, no seed, no table of runners and no judgement here: the grader recomputes the
inputs, computes the references with the libraries the assignments re-implement and judges
outside the kernel. Replacing this module or forging its record can therefore only produce
outputs, and only the outputs of the graded computation on the grader's unpredictable inputs
earn points.

Outside the sandbox (an instructor validating the source notebook, where the reference libraries
are installed), ``observe`` draws a fresh secret, runs the same call in this process and judges at
once, raising ``AssertionError`` with the judge's message.

The helpers are also used on the grader's side (``ToyNet`` is built there from the same spec).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import wire

BOX = None  # the kernel's box inside the sandbox (set by kernel_main.py); None outside it


# ---------------------------------------------------------------- helpers the calls may use
def attempt(fn: Callable, *args, **kwargs) -> dict:
    """Call student code: ``{"value": what it returned}`` or ``{"error": what it raised}``."""
    try:
        return {"value": fn(*args, **kwargs)}
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - SystemExit included: the student's error is a result
        return {"error": f"{type(err).__name__}: {err}"[:500]}


def need(ns: dict, name: str) -> Any:
    """The student's definition of ``name``, or a NameError that says how to fix it."""
    if name not in ns:
        raise NameError(f"`{name}` is not defined: run the cell that defines it, and keep its name")
    return ns[name]


def generator(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed`` (a number the grader chose)."""
    return torch.Generator().manual_seed(int(seed))


def snapshot(value: Any) -> Any:
    """A detached copy of a tensor (anything else as it is), so later steps cannot change it."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear(in, out)`` holding ``weight`` [out, in] and ``bias`` [out]."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


@torch.no_grad()
def load_lora(layer: nn.Module, a: torch.Tensor, b: torch.Tensor) -> None:
    """Copy A [r, in] into ``layer.lora_A.weight`` and B [out, r] into ``layer.lora_B.weight``."""
    layer.lora_A.weight.copy_(a)
    layer.lora_B.weight.copy_(b)


def load_adapters(model: nn.Module, adapters: dict) -> None:
    """``adapters``: qualified module name -> [A, B]; loads each into the module of that name."""
    for name, (a, b) in adapters.items():
        load_lora(model.get_submodule(name), a, b)


def sgd_step(modules: list, loss: Callable[[], torch.Tensor], lr: float) -> None:
    """One plain SGD step, ``p -= lr * grad``, on every parameter of ``modules`` that requires a gradient."""
    params, seen = [], set()
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    for p in params:
        p.grad = None
    if not params:
        return
    loss().backward()
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= lr * p.grad


class ToyBlock(nn.Module):
    """Square linear layers named by the grader, applied in turn, a residual and a norm. x: [B, L, D]."""

    def __init__(self, names: list[str], d: int):
        super().__init__()
        self.layers = nn.ModuleDict({name: nn.Linear(d, d) for name in names})
        self.norm = nn.LayerNorm(d)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers.values():
            h = torch.tanh(layer(h))
        return self.norm(x + self.scale * h)


class ToyNet(nn.Module):
    """A small model whose sizes and layer names come from the grader's ``spec``.

    spec: ``vocab`` V, ``d`` D, ``length`` (longest input), ``blocks`` (one list of layer names per
    block), ``head`` (the output layer's attribute name), ``n_out`` C and ``tied`` (the head shares
    the embedding matrix and has V outputs). ``forward(ids [B, L]) -> [B, C]`` (or [B, V] if tied).
    """

    def __init__(self, spec: dict):
        super().__init__()
        d, vocab = int(spec["d"]), int(spec["vocab"])
        self.head_name = str(spec["head"])
        self.embed = nn.Embedding(vocab, d)
        self.register_buffer("position", torch.zeros(int(spec["length"]), d))
        self.blocks = nn.ModuleList(ToyBlock(list(names), d) for names in spec["blocks"])
        if spec.get("tied"):
            head = nn.Linear(d, vocab, bias=False)
            head.weight = self.embed.weight
        else:
            head = nn.Linear(d, int(spec["n_out"]))
        self.add_module(self.head_name, head)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return getattr(self, self.head_name)(x.mean(dim=1))


def freeze(model: nn.Module, names: list[str]) -> nn.Module:
    """Set ``requires_grad = False`` on the parameters called ``names``."""
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(False)
    return model


HELPERS = {f.__name__: f for f in (attempt, need, generator, snapshot, linear, load_lora, load_adapters, sgd_step,
                                   freeze)}
HELPERS.update(ToyNet=ToyNet, ToyBlock=ToyBlock, torch=torch, nn=nn, F=F)


# ---------------------------------------------------------------- running a task
def run(task: dict, ns: dict) -> dict:
    """Run the task's call (``source`` defines ``entry(ns, inputs)``) on the student's namespace ``ns``."""
    try:
        env = dict(HELPERS)
        exec(compile(task["source"], "<hidden test>", "exec"), env)  # noqa: S102 - the grader's own code
        out = env[task["entry"]](ns, task["inputs"])
        return out if isinstance(out, dict) else {"fatal": "the hidden test returned nothing"}
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - e.g. a missing function: recorded, judged as a failure
        return {"fatal": f"{type(err).__name__}: {err}"[:500]}


def observe(grade_id: str, ns: dict) -> None:
    """Entry point of a hidden-test cell."""
    if BOX is None:  # instructor mode (nbgrader validate): judge right away, in this process
        import secrets

        import judge  # noqa: PLC0415 - only the instructor's environment has it and the reference libraries

        seed = secrets.randbits(64)
        record = wire.loads(wire.dumps(run(wire.loads(wire.dumps(judge.task(grade_id, seed))), ns)))
        verdict = judge.judge(grade_id, record, seed)
        if not verdict.passed:
            raise AssertionError(verdict.message)
        print(verdict.message)
        return
    task = wire.load(os.path.join(BOX, "tasks", grade_id))
    wire.dump(run(task, ns), os.path.join(BOX, "out", grade_id))
    print("Recorded for grading.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("lfd13_probe is imported by the grading kernel, not run")
