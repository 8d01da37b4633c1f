"""Hidden tests of the LoRA assignment: ``LoRALinear``, ``inject_lora``, ``count_parameters``.

Instructor-only, grader side. Nothing here asks the kernel *whether* something holds (is the base
frozen, is the layer merged, which layers were replaced, what is the scaling): every property is
tested by behaviour the grader controls and computes itself with peft's LoRA. The grader sends
weights (base W and b, non-zero A and B to load), inputs, a loss weighting G and a learning rate;
the kernel builds the student's layer or model, loads the weights, runs forward passes, one plain
SGD step on whatever requires a gradient, merge and unmerge, and returns outputs and weights.
Sizes, rank, alpha (never equal to r), architectures and layer names all vary with the secret.

* frozen base: its weights are unchanged by the step, and the outputs after it equal peft's;
* scaling alpha / r: the outputs, and the step of lora_B (its gradient is proportional to it);
* B = 0 and A random: the first outputs equal the base's, A has full rank, and the step matches;
* merged state: outputs after merge() equal those before, base.weight is W + scaling · B A, and
  after unmerge() W again, with the LoRA branch active (a step still changes the outputs as peft's);
* which layers were replaced (names that *end* with a target): a layer replaced wrongly gets a
  trainable lora_B that the step moves, a layer not replaced cannot load its A and B, and the
  outputs after the step differ from peft's ``inject_adapter_in_model``;
* parameter counts on models whose shapes, tying and frozen parts vary.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from lfd13_probe import ToyNet, attempt, freeze, linear, load_adapters, load_lora, need, sgd_step, snapshot

from .base import Check, Fail, Secret, close, entries, field, items, number, result, tensor

POOL = ["query", "key", "value", "out", "dense", "proj", "gate", "fc"]  # no name ends with another


# ---------------------------------------------------------------- the grader's inputs
def _rank_alpha(s: Secret, label: str, r_max: int) -> tuple[int, float]:
    r = s.integer(2, r_max, label + " r")
    alpha = round(s.uniform(0.5, 8.0, label + " alpha"), 2)
    if abs(alpha - r) < 0.5:  # alpha = r would hide an inverted scaling (r / alpha)
        alpha = r + 1.5
    return r, alpha


def layer_case(s: Secret, label: str, *, default_alpha: bool = False, zero_b: bool = False) -> dict:
    """A base layer (W [out, in], b [out]), LoRA weights A [r, in] and B [out, r], inputs x and x2
    [2, n, in], a loss weighting G [2, n, out] and a learning rate."""
    g = s.gen(label)
    n_in, n_out = s.integer(4, 9, label + " in"), s.integer(5, 12, label + " out")
    r, alpha = _rank_alpha(s, label, min(4, n_in - 1))
    n = s.integer(2, 5, label + " n")
    case = {"W": torch.randn(n_out, n_in, generator=g) / n_in ** 0.5, "bias": torch.randn(n_out, generator=g),
            "A": torch.randn(r, n_in, generator=g) / n_in ** 0.5, "B": 0.5 * torch.randn(n_out, r, generator=g),
            "r": r, "alpha": None if default_alpha else alpha,
            "x": torch.randn(2, n, n_in, generator=g), "x2": torch.randn(2, n, n_in, generator=g),
            "G": torch.randn(2, n, n_out, generator=g), "lr": round(s.uniform(0.05, 0.3, label + " lr"), 3)}
    if zero_b:
        del case["A"], case["B"]
    return case


def alpha_of(c: dict) -> float:
    return 1.0 if c["alpha"] is None else c["alpha"]


# ---------------------------------------------------------------- the reference: peft's LoRA layer
@functools.lru_cache(maxsize=1)
def _peft():
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora.layer import Linear

    return LoraConfig, Linear, inject_adapter_in_model


def peft_layer(W: torch.Tensor, bias: torch.Tensor, A: torch.Tensor, B: torch.Tensor, r: int, alpha: float):
    """peft's ``lora.Linear`` around nn.Linear(W, bias), with A and B loaded; only A and B trainable."""
    LoraConfig, Linear, _ = _peft()
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["base"])
    layer = Linear(linear(W, bias), "default", config=config, r=r, lora_alpha=alpha)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(A)
        layer.lora_B["default"].weight.copy_(B)
    for name, p in layer.named_parameters():
        p.requires_grad_("lora_" in name)
    return layer


def _step(layer, c: dict) -> None:
    sgd_step([layer], lambda: (layer(c["x"]) * c["G"]).sum(), c["lr"])


def _weights(layer) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()


# ---------------------------------------------------------------- judging helpers
def _built(outputs: dict, what: str) -> None:
    result(field(outputs, "build"), what)


def _unchanged(got, want: torch.Tensor, what: str) -> None:
    got = tensor(got, what, tuple(want.shape), floating=True)
    if not torch.equal(got.to(want.dtype), want):
        raise Fail(what)


FROZEN = "the base layer's weight or bias changed during a training step: freeze them (requires_grad=False)"
BRANCH = "(forward = base(x) + lora_B(lora_A(dropout(x))) · alpha / r, with lora_A and lora_B trainable)"


# ====================================================================== LoRALinear: a new layer
def call_lora_init(ns: dict, inputs: dict) -> dict:
    """Kernel side: build a layer, read its A and B, take one SGD step, return outputs and weights."""
    cls = need(ns, "LoRALinear")
    base = linear(inputs["W"], inputs["bias"])
    made = attempt(cls, base, r=inputs["r"], alpha=inputs["alpha"])
    if "error" in made:
        return {"build": made}
    layer = made["value"]
    out = {"build": {"value": None}}
    out["y0"] = attempt(lambda: snapshot(layer(inputs["x"].clone())))
    out["A0"] = attempt(lambda: snapshot(layer.lora_A.weight))
    out["B0"] = attempt(lambda: snapshot(layer.lora_B.weight))
    out["step"] = attempt(sgd_step, [layer, base], lambda: (layer(inputs["x"].clone()) * inputs["G"]).sum(),
                          inputs["lr"])
    out["A1"] = attempt(lambda: snapshot(layer.lora_A.weight))
    out["B1"] = attempt(lambda: snapshot(layer.lora_B.weight))
    out["W1"], out["b1"] = snapshot(base.weight), snapshot(base.bias)
    out["y1"] = attempt(lambda: snapshot(layer(inputs["x2"].clone())))
    return out


def make_init(s: Secret) -> dict:
    return layer_case(s, "init", zero_b=True)


def judge_init(c: dict, outputs: dict) -> str:
    r, n_out, n_in = c["r"], *c["W"].shape
    what = f"LoRALinear(nn.Linear({n_in}, {n_out}), r={r}, alpha={c['alpha']})"
    _built(outputs, what)
    base_y = F.linear(c["x"], c["W"], c["bias"])
    close(result(field(outputs, "y0"), f"{what}(x)"), base_y,
          f"the output of a new {what} (B = 0, so it must equal base(x))")
    a0 = tensor(result(field(outputs, "A0"), f"{what}.lora_A.weight"), f"{what}.lora_A.weight", (r, n_in),
                floating=True)
    b0 = tensor(result(field(outputs, "B0"), f"{what}.lora_B.weight"), f"{what}.lora_B.weight", (n_out, r),
                floating=True)
    if bool((b0 != 0).any()):
        raise Fail("lora_B must start at zero, so that the adapted layer starts equal to the base layer")
    if not bool(torch.isfinite(a0).all()) or int(torch.linalg.matrix_rank(a0.double())) < r:
        raise Fail("lora_A must start random (not zero, not constant), otherwise lora_B's first steps are degenerate")
    _after_one_step(peft_layer(c["W"], c["bias"], a0.float(), b0.float(), r, alpha_of(c)), c, outputs, what, "")
    return "frozen base, A random, B zero, scaling alpha/r: one training step equals peft's"


def _after_one_step(ref, c: dict, rec, what: str, prefix: str) -> None:
    """The kernel's SGD step left the base unchanged, and A, B and the output where peft's layer ``ref`` gets them."""
    result(field(rec, "step"), f"a training step of {what}")
    _unchanged(field(rec, "W1"), c["W"], FROZEN)
    _unchanged(field(rec, "b1"), c["bias"], FROZEN)
    _step(ref, c)
    a1, b1 = _weights(ref)
    close(result(field(rec, "A1"), "lora_A.weight after a step"), a1,
          f"{prefix}lora_A.weight after one SGD step (its gradient) {BRANCH}")
    close(result(field(rec, "B1"), "lora_B.weight after a step"), b1,
          f"{prefix}lora_B.weight after one SGD step (its gradient) {BRANCH}")
    close(result(field(rec, "y1"), f"{what}(x) after a step"), ref(c["x2"]).detach(),
          f"{prefix}the output after one SGD step {BRANCH}")


# ====================================================================== LoRALinear: forward and gradients
def call_lora_forward(ns: dict, inputs: dict) -> dict:
    """Kernel side, per case: build, load A and B, forward, one SGD step, the weights afterwards."""
    cls = need(ns, "LoRALinear")
    out = []
    for c in inputs["cases"]:
        base = linear(c["W"], c["bias"])
        made = attempt(cls, base, **({"r": c["r"]} if c["alpha"] is None else {"r": c["r"], "alpha": c["alpha"]}))
        if "error" in made:
            out.append({"build": made})
            continue
        layer = made["value"]
        rec = {"build": {"value": None}, "load": attempt(load_lora, layer, c["A"], c["B"])}
        rec["y0"] = attempt(lambda: snapshot(layer(c["x"].clone())))
        rec["step"] = attempt(sgd_step, [layer, base], lambda: (layer(c["x"].clone()) * c["G"]).sum(), c["lr"])
        rec["A1"] = attempt(lambda: snapshot(layer.lora_A.weight))
        rec["B1"] = attempt(lambda: snapshot(layer.lora_B.weight))
        rec["W1"], rec["b1"] = snapshot(base.weight), snapshot(base.bias)
        rec["y1"] = attempt(lambda: snapshot(layer(c["x2"].clone())))
        out.append(rec)
    return {"cases": out}


def make_forward(s: Secret) -> dict:
    return {"cases": [layer_case(s, "given alpha"), layer_case(s, "default alpha", default_alpha=True)]}


def _loaded(c: dict, rec) -> str:
    what = f"LoRALinear(r={c['r']}" + (f", alpha={c['alpha']})" if c["alpha"] is not None else ")")
    _built(rec, what)
    result(field(rec, "load"), f"{what}: setting lora_A.weight and lora_B.weight")
    return what


def judge_forward(inputs: dict, outputs: dict) -> str:
    for c, rec in zip(inputs["cases"], entries(outputs, "cases", len(inputs["cases"]))):
        what = _loaded(c, rec)
        ref = peft_layer(c["W"], c["bias"], c["A"], c["B"], c["r"], alpha_of(c))
        close(result(field(rec, "y0"), f"{what}(x)"), ref(c["x"]).detach(), f"the output of {what} {BRANCH}")
        _after_one_step(ref, c, rec, what, f"{what}: ")
    return "forward, gradients and a training step equal peft's LoRA layer (default alpha included)"


# ====================================================================== LoRALinear: merge and unmerge
def call_lora_merge(ns: dict, inputs: dict) -> dict:
    """Kernel side, per case: forward, merge, forward, unmerge, forward, then one SGD step and a forward."""
    cls = need(ns, "LoRALinear")
    out = []
    for c in inputs["cases"]:
        base = linear(c["W"], c["bias"])
        made = attempt(cls, base, r=c["r"], alpha=c["alpha"])
        if "error" in made:
            out.append({"build": made})
            continue
        layer = made["value"]
        rec = {"build": {"value": None}, "load": attempt(load_lora, layer, c["A"], c["B"])}
        rec["y0"] = attempt(lambda: snapshot(layer(c["x"].clone())))
        rec["merge"] = attempt(layer.merge)
        rec["W_merged"] = snapshot(base.weight)
        rec["y_merged"] = attempt(lambda: snapshot(layer(c["x"].clone())))
        rec["unmerge"] = attempt(layer.unmerge)
        rec["W_unmerged"] = snapshot(base.weight)
        rec["y_unmerged"] = attempt(lambda: snapshot(layer(c["x"].clone())))
        rec["step"] = attempt(sgd_step, [layer, base], lambda: (layer(c["x"].clone()) * c["G"]).sum(), c["lr"])
        rec["y1"] = attempt(lambda: snapshot(layer(c["x2"].clone())))
        out.append(rec)
    return {"cases": out}


def make_merge(s: Secret) -> dict:
    return {"cases": [layer_case(s, "merge a"), layer_case(s, "merge b")]}


def judge_merge(inputs: dict, outputs: dict) -> str:
    for c, rec in zip(inputs["cases"], entries(outputs, "cases", len(inputs["cases"]))):
        what = _loaded(c, rec)
        ref = peft_layer(c["W"], c["bias"], c["A"], c["B"], c["r"], alpha_of(c))
        y0 = ref(c["x"]).detach()
        delta = ref.get_delta_weight("default").detach()
        close(result(field(rec, "y0"), f"{what}(x)"), y0, f"the output of {what} {BRANCH}")
        result(field(rec, "merge"), f"{what}.merge()")
        close(field(rec, "W_merged"), c["W"] + delta, f"{what}: base.weight after merge() (it should be W + "
              "alpha / r · B A, added in place)")
        close(result(field(rec, "y_merged"), f"{what}(x) after merge()"), y0,
              f"{what}: the output after merge() (a merged layer computes base(x) alone, which equals the output "
              "before merging)")
        result(field(rec, "unmerge"), f"{what}.unmerge()")
        close(field(rec, "W_unmerged"), c["W"], f"{what}: base.weight after merge() then unmerge() (it should "
              "be W again)")
        close(result(field(rec, "y_unmerged"), f"{what}(x) after unmerge()"), y0,
              f"{what}: the output after unmerge() (the LoRA branch is active again)")
        result(field(rec, "step"), f"a training step of {what} after unmerge()")
        _step(ref, c)
        close(result(field(rec, "y1"), f"{what}(x) after a step"), ref(c["x2"]).detach(),
              f"{what}: the output after unmerge() and one SGD step {BRANCH}")
    return "merge/unmerge round trip, then training as before"


# ====================================================================== LoRALinear: dropout
def call_lora_dropout(ns: dict, inputs: dict) -> dict:
    """Kernel side: dropout=1.0; forward and a step in train mode, then in eval mode."""
    cls = need(ns, "LoRALinear")
    base = linear(inputs["W"], inputs["bias"])
    made = attempt(cls, base, r=inputs["r"], alpha=inputs["alpha"], dropout=1.0)
    if "error" in made:
        return {"build": made}
    layer = made["value"]
    out = {"build": {"value": None}, "load": attempt(load_lora, layer, inputs["A"], inputs["B"])}

    def loss():
        return (layer(inputs["x"].clone()) * inputs["G"]).sum()

    out["y_train"] = attempt(lambda: (layer.train(), snapshot(layer(inputs["x"].clone())))[1])
    out["step_train"] = attempt(sgd_step, [layer, base], loss, inputs["lr"])
    out["A_train"] = attempt(lambda: snapshot(layer.lora_A.weight))
    out["B_train"] = attempt(lambda: snapshot(layer.lora_B.weight))
    out["y_eval"] = attempt(lambda: (layer.eval(), snapshot(layer(inputs["x"].clone())))[1])
    out["step_eval"] = attempt(sgd_step, [layer, base], loss, inputs["lr"])
    out["y1"] = attempt(lambda: snapshot(layer(inputs["x2"].clone())))
    return out


def make_dropout(s: Secret) -> dict:
    return layer_case(s, "dropout")


def judge_dropout(c: dict, outputs: dict) -> str:
    what = f"LoRALinear(r={c['r']}, alpha={c['alpha']}, dropout=1.0)"
    _loaded(c, outputs)
    base_y = F.linear(c["x"], c["W"], c["bias"])
    close(result(field(outputs, "y_train"), f"{what} in train mode"), base_y,
          f"{what} in train mode: the output (dropout applies to the input of the LoRA branch only, so with "
          "dropout=1.0 the layer computes base(x))")
    result(field(outputs, "step_train"), f"a training step of {what} in train mode")
    for key, want, name in (("A_train", c["A"], "lora_A"), ("B_train", c["B"], "lora_B")):
        close(result(field(outputs, key), f"{name}.weight"), want,
              f"{what}: {name}.weight after a step in train mode (with the whole LoRA input dropped it gets no "
              "gradient)")
    ref = peft_layer(c["W"], c["bias"], c["A"], c["B"], c["r"], alpha_of(c))
    close(result(field(outputs, "y_eval"), f"{what} in eval mode"), ref(c["x"]).detach(),
          f"{what} in eval mode: the output (no dropout in eval mode) {BRANCH}")
    result(field(outputs, "step_eval"), f"a training step of {what} in eval mode")
    _step(ref, c)
    close(result(field(outputs, "y1"), f"{what} after a step"), ref(c["x2"]).detach(),
          f"{what}: the output after one SGD step in eval mode {BRANCH}")
    return "dropout on the LoRA branch only, in train mode only"


# ====================================================================== inject_lora
def toy_spec(s: Secret, label: str, *, tied: bool = False) -> tuple[dict, list[str]]:
    """A ToyNet spec (see lfd13_probe) and the two target names; the head's name contains a target
    but does not end with it."""
    targets = s.choose(POOL, 2, label + " targets")
    others = [p for p in POOL if p not in targets]
    blocks = []
    for i in range(s.integer(1, 3, label + " blocks")):
        extra = s.choose(others, s.integer(1, 2, f"{label} extra {i}"), f"{label} others {i}")
        blocks.append(s.choose(targets + extra, len(targets) + len(extra), f"{label} order {i}"))
    spec = {"vocab": s.integer(12, 30, label + " vocab"), "d": s.integer(4, 8, label + " d"), "length": 16,
            "blocks": blocks, "head": f"{targets[0]}_{s.choose(['head', 'classifier', 'logits'], 1, label)[0]}",
            "n_out": s.integer(2, 5, label + " n_out"), "tied": tied}
    # a qualified name ends with a target exactly where peft's ".target" matching finds it
    assert not any(spec["head"].endswith(t) for t in POOL), spec["head"]
    return spec, targets


def toy_state(s: Secret, label: str, spec: dict) -> dict:
    """Every parameter and buffer of ToyNet(spec) drawn from the secret."""
    g = s.gen(label)
    net = ToyNet(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=g))
        for b in net.buffers():
            b.copy_(1 + 0.3 * torch.randn(b.shape, generator=g) if b.dim() == 0 else 0.5 * torch.randn(b.shape, generator=g))
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def call_inject_lora(ns: dict, inputs: dict) -> dict:
    """Kernel side: inject into the grader's model, load the grader's A and B, forward, one SGD step, forward."""
    inject = need(ns, "inject_lora")
    model = ToyNet(inputs["spec"])
    model.load_state_dict(inputs["state"])
    made = attempt(inject, model, list(inputs["targets"]), r=inputs["r"], alpha=inputs["alpha"])
    if "error" in made:
        return {"build": made}
    model = made["value"]
    out = {"build": {"value": None}, "load": attempt(load_adapters, model, inputs["adapters"])}
    out["y0"] = attempt(lambda: snapshot(model(inputs["ids"])))
    out["step"] = attempt(sgd_step, [model], lambda: (model(inputs["ids"]) * inputs["G"]).sum(), inputs["lr"])
    out["y1"] = attempt(lambda: snapshot(model(inputs["ids2"])))
    return out


def make_inject(s: Secret) -> dict:
    spec, targets = toy_spec(s, "net")
    r, alpha = _rank_alpha(s, "inject", 3)
    g = s.gen("adapters")
    d = spec["d"]
    adapters = {f"blocks.{i}.layers.{t}": [torch.randn(r, d, generator=g) / d ** 0.5, 0.5 * torch.randn(d, r, generator=g)]
                for i, names in enumerate(spec["blocks"]) for t in names if t in targets}
    n, length = s.integer(2, 4, "n"), s.integer(5, 12, "length")
    return {"spec": spec, "state": toy_state(s, "state", spec), "targets": targets, "r": r, "alpha": alpha,
            "adapters": adapters, "ids": torch.randint(0, spec["vocab"], (n, length), generator=g),
            "ids2": torch.randint(0, spec["vocab"], (n, length), generator=g),
            "G": torch.randn(n, spec["n_out"], generator=g), "lr": round(s.uniform(0.1, 0.4, "lr"), 3)}


def peft_model(c: dict):
    """The grader's model with peft's LoRA injected at the same targets, A and B loaded, only they trainable."""
    LoraConfig, _, inject_adapter_in_model = _peft()
    net = ToyNet(c["spec"])
    net.load_state_dict(c["state"])
    config = LoraConfig(r=c["r"], lora_alpha=c["alpha"], lora_dropout=0.0, target_modules=list(c["targets"]))
    net = inject_adapter_in_model(config, net)
    for name, p in net.named_parameters():
        p.requires_grad_("lora_" in name)
    with torch.no_grad():
        for name, (a, b) in c["adapters"].items():
            module = net.get_submodule(name)
            module.lora_A["default"].weight.copy_(a)
            module.lora_B["default"].weight.copy_(b)
    return net


def judge_inject(c: dict, outputs: dict) -> str:
    what = f"inject_lora(model, {list(c['targets'])}, r={c['r']}, alpha={c['alpha']})"
    _built(outputs, what)
    load = field(outputs, "load")
    if isinstance(load, dict) and "error" in load:
        raise Fail(f"after {what}, a layer whose qualified name ends with a target is not a LoRALinear "
                   f"(loading its lora_A and lora_B failed: {str(load['error'])[:150]})")
    result(load, f"{what}: loading lora_A and lora_B")
    ref = peft_model(c)
    y0 = result(field(outputs, "y0"), f"the model returned by {what}")
    close(y0, ref(c["ids"]).detach(), f"the output of the model returned by {what} (replace exactly the nn.Linear "
          "layers whose names end with a target, keep every other module, buffer and weight)")
    result(field(outputs, "step"), f"a training step of the model returned by {what}")
    sgd_step([ref], lambda: (ref(c["ids"]) * c["G"]).sum(), c["lr"])
    close(result(field(outputs, "y1"), "the model after a step"), ref(c["ids2"]).detach(),
          "the output of the model after one SGD step (only the LoRA weights of the replaced layers may be "
          "trainable; every other parameter must be frozen, and no other layer replaced)")
    return "targets replaced, everything else frozen: one training step equals peft's"


# ====================================================================== count_parameters
def call_count_parameters(ns: dict, inputs: dict) -> dict:
    """Kernel side: build each model the grader describes, freeze what it names, count."""
    count = need(ns, "count_parameters")
    return {"models": [attempt(count, freeze(ToyNet(m["spec"]), m["frozen"])) for m in inputs["models"]]}


def make_count(s: Secret) -> dict:
    spec, _ = toy_spec(s, "plain")
    net = ToyNet(spec)
    names = [n for n, _ in net.named_parameters()]
    block = s.integer(0, len(spec["blocks"]) - 1, "frozen block")
    frozen = [n for n in names if n.startswith(f"blocks.{block}.")] + s.choose(names, 2, "frozen extra")
    tied, _ = toy_spec(s, "tied", tied=True)
    tied_names = [n for n, _ in ToyNet(tied).named_parameters()]
    return {"models": [{"spec": spec, "frozen": sorted(set(frozen)), "what": "frozen layers and buffers"},
                       {"spec": tied, "frozen": [n for n in tied_names if ".norm." in n],
                        "what": "an output layer that shares the embedding matrix, a frozen norm and buffers"}]}


def judge_count(inputs: dict, outputs: dict) -> str:
    for m, rec in zip(inputs["models"], entries(outputs, "models", len(inputs["models"]))):
        net = freeze(ToyNet(m["spec"]), m["frozen"])
        params = list(net.parameters())  # each parameter once, shared ones included
        want = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
        what = f"count_parameters on a model with {m['what']}"
        got = items(result(rec, what), f"{what} (a tuple (trainable, total))", 2)
        got = tuple(number(v, what) for v in got)
        for value, truth, name in zip(got, want, ("trainable", "total")):
            if value != truth:
                raise Fail(f"{what}: the {name} count is wrong (count each parameter once, a shared one included "
                           "once; buffers are not parameters; trainable = requires_grad)")
    return "trainable and total parameters are right"


CHECKS = [
    Check("lora_init", make_init, call_lora_init, judge_init,
          "B = 0 and A of full rank; frozen base and scaling shown by one SGD step equal to peft's"),
    Check("lora_forward", make_forward, call_lora_forward, judge_forward,
          "forward and an SGD step with the grader's A and B equal peft's (given and default alpha)"),
    Check("lora_merge", make_merge, call_lora_merge, judge_merge,
          "merge adds scaling·BA in place with unchanged outputs; unmerge restores W; training goes on as peft's"),
    Check("lora_dropout", make_dropout, call_lora_dropout, judge_dropout,
          "dropout=1.0 drops the LoRA branch in train mode only"),
    Check("inject_lora", make_inject, call_inject_lora, judge_inject,
          "on a model from the secret: outputs and one SGD step equal peft's inject_adapter_in_model"),
    Check("count_parameters", make_count, call_count_parameters, judge_count,
          "counts on models from the secret, with tied weights, frozen parts and buffers"),
]
