"""The hidden tests' cases, defined once: what each check feeds the student's functions.

Instructor-only. ``inputs(grade_id, seed)`` is called on the grader's side only, with a seed the
kernel never sees: the grader writes the result into the kernel's box (``wire.py``), the kernel
calls the student's functions on it (``lfd13_probe.py``) and the judge recomputes the same
inputs here to compute the reference values (``judge.py``). The toy models are defined here too,
because the kernel must build the same architecture before loading the grader's weights.
"""
from __future__ import annotations

import torch
from torch import nn

# ---------------------------------------------------------------- case tables (one definition)
# mask_tokens: call -> (batch offset, B, L, mlm_probability, generator offset)
MASK_TOKENS = {
    "rate": (0, 128, 128, 0.15, 1), "rate40": (2, 64, 128, 0.4, 3), "split": (4, 128, 128, 0.5, 5),
    "same_a": (6, 8, 32, 0.15, 7), "same_b": (6, 8, 32, 0.15, 7), "other": (6, 8, 32, 0.15, 8),
    "one": (9, 1, 9, 0.15, 10),
}
VOCAB, MASK_ID = 5000, 4
# random_masking with given noise: case -> (B, L, D, mask_ratio)
RANDOM_MASKING = {"exact75": (4, 16, 8, 0.75), "exact50": (3, 10, 5, 0.5), "odd": (2, 7, 3, 0.75),
                  "one": (1, 5, 4, 0.6), "none": (2, 6, 3, 0.0)}
RANDOM_MASKING_FREE = (512, 16, 2, 0.75)  # without noise: B, L, D, mask_ratio
# clip_loss: case -> (B, D, logit_scale, scale given as a tensor?)
CLIP = {"b8": (8, 16, 14.3, True), "b5": (5, 3, 1 / 0.07, False), "b1": (1, 4, 10.0, True)}
ZERO_SHOT = {"n50": (50, 7), "n1": (1, 4)}  # case -> (N images, C classes); D = 12
RECALL_KS = (1, 3, 5, 40)
LORA_IN, LORA_OUT, LORA_X = 6, 10, (2, 5, 6)
LORA_CASES = ((3, 6.0), (2, None))  # (r, alpha); None = the default alpha


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


INJECT_TARGETS = ["query", "value"]
INJECTED = sorted(f"blocks.{i}.{n}" for i in range(2) for n in INJECT_TARGETS)


# ---------------------------------------------------------------- input generation (grader side)
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def masking_batch(seed: int, batch: int, length: int) -> dict:
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
    return {"input_ids": ids, "special_tokens_mask": special}


def features(seed: int, *shape: int) -> torch.Tensor:
    """Unnormalised features whose norms vary a lot (so forgetting to normalise changes answers)."""
    g = _gen(seed)
    x = torch.randn(*shape, generator=g)
    return x * torch.exp(torch.randn(*shape[:-1], 1, generator=g))


def _linear(seed: int) -> dict:
    g = _gen(seed)
    return {"W": torch.randn(LORA_OUT, LORA_IN, generator=g) / LORA_IN ** 0.5, "bias": torch.randn(LORA_OUT, generator=g)}


def _masking(seed: int) -> dict:
    calls = {}
    for name, (b_off, b, length, p, g_off) in MASK_TOKENS.items():
        calls[name] = {**masking_batch(seed + b_off, b, length), "p": p, "gseed": seed + g_off}
    return {"calls": calls, "vocab_size": VOCAB, "mask_token_id": MASK_ID}


def _random_masking(seed: int) -> dict:
    given = {}
    for i, (name, (b, length, d, r)) in enumerate(RANDOM_MASKING.items()):
        g = _gen(seed + 20 + i)
        given[name] = {"x": torch.randn(b, length, d, generator=g), "noise": torch.rand(b, length, generator=g),
                       "ratio": r}
    b, length, d, r = RANDOM_MASKING_FREE
    free = {"x": torch.randn(b, length, d, generator=_gen(seed + 30)), "ratio": r, "gseed": seed + 31}
    return {"given": given, "free": free}


def _clip(seed: int) -> dict:
    return {"cases": {name: {"img": features(seed + 40 + i, b, d), "txt": features(seed + 50 + i, b, d),
                             "scale": scale, "tensor_scale": as_tensor}
                      for i, (name, (b, d, scale, as_tensor)) in enumerate(CLIP.items())}}


def _zero_shot(seed: int) -> dict:
    return {"cases": {name: {"img": features(seed + 60 + 2 * i, n, 12), "cls": features(seed + 61 + 2 * i, c, 12)}
                      for i, (name, (n, c)) in enumerate(ZERO_SHOT.items())}}


def _recall(seed: int) -> dict:
    """40 image/text pairs: each text is its image plus noise, texts with very different norms."""
    img = features(seed + 70, 40, 8)
    g = _gen(seed + 71)
    txt = img / img.norm(dim=1, keepdim=True) + 0.5 * torch.randn(40, 8, generator=g)
    txt = txt * torch.exp(torch.randn(40, 1, generator=g))
    return {"img": img, "txt": txt, "ks": list(RECALL_KS)}


def _lora(seed: int) -> dict:
    g = _gen(seed + 80)
    x = torch.randn(*LORA_X, generator=g)
    cases = []
    for i, (r, alpha) in enumerate(LORA_CASES):
        cases.append({**_linear(seed + 82 + i), "r": r, "alpha": alpha,
                      "A": torch.randn(r, LORA_IN, generator=g), "B": torch.randn(LORA_OUT, r, generator=g)})
    dropout = {**_linear(seed + 85), "A": torch.randn(2, LORA_IN, generator=g), "B": torch.randn(LORA_OUT, 2, generator=g)}
    return {"x": x, "init": _linear(seed + 81), "cases": cases, "dropout": dropout}


def tiny_encoder(seed: int) -> TinyEncoder:
    torch.manual_seed(seed)
    return TinyEncoder()


def _inject(seed: int) -> dict:
    model = tiny_encoder(seed + 90)
    return {"state": model.state_dict(), "ids": torch.randint(0, 20, (3, 10), generator=_gen(seed + 92))}


def _count(seed: int) -> dict:
    return {"state": tiny_encoder(seed + 91).state_dict(), "frozen_block": 0}


FAMILIES = {"mask_tokens": _masking, "random_masking": _random_masking, "clip_loss": _clip, "zero_shot": _zero_shot,
            "recall_at_k": _recall, "lora": _lora, "inject_lora": _inject, "count_parameters": _count}
ASSIGNMENT = {"mask_tokens": "masking", "random_masking": "masking", "clip_loss": "contrastive",
              "zero_shot": "contrastive", "recall_at_k": "contrastive", "lora": "lora", "inject_lora": "lora",
              "count_parameters": "lora"}


def family(grade_id: str) -> str:
    for prefix in FAMILIES:
        if grade_id == prefix or grade_id.startswith(prefix + "_"):
            return prefix
    raise KeyError(f"unknown hidden test {grade_id!r}")


def inputs(grade_id: str, seed: int) -> dict:
    """Everything the kernel needs to run ``grade_id``'s calls; plain tensors, numbers and strings."""
    return {"grade_id": grade_id, **FAMILIES[family(grade_id)](seed)}
