"""Hidden tests of the masking assignment: BERT's ``mask_tokens`` and MAE's ``random_masking``.

Instructor-only, grader side. References: transformers' ``DataCollatorForLanguageModeling`` defines
what ``mask_tokens`` must do and ViTMAE's ``random_masking`` what ``random_masking`` must do; the
former is random, so it is tested by statistics of the specification (which the collator itself
passes, see ``tests/assignments``), the latter exactly, given the same noise.

What the statistics establish (each at the false-failure bound of ``base.DELTA``):

* selection: the share selected among eligible positions is ``mlm_probability`` overall and at
  every position; two neighbouring positions of a row, and the same position in two rows, are
  selected together at the rate of independent selections (p²), so a span, a stride or one
  pattern repeated in every row fails;
* 80/10/10: the shares of [MASK], random and unchanged among selected positions, random ids
  uniform over the vocabulary, and the kinds of two neighbouring selected positions independent,
  so a fixed cycle fails;
* generator: the same seed gives the same result, two seeds give selections as independent as two
  rows (p²), not merely different ones;
* ``random_masking`` without noise: a permutation per sample, every patch kept at rate
  L_keep / L, neighbouring patches, two samples and two seeds as independent as uniform random
  subsets of L_keep patches.
"""
from __future__ import annotations

import functools
import math
import types

import torch

from lfd13_probe import attempt, generator, need

from .base import DELTA, Check, Fail, Secret, entries, field, items, result, tensor, within

PAD, CLS, SEP = 0, 1, 2


# ====================================================================== mask_tokens
def call_mask_tokens(ns: dict, inputs: dict) -> dict:
    """Kernel side: call ``mask_tokens`` once per entry of ``inputs["calls"]``, each with a fresh generator."""
    fn = need(ns, "mask_tokens")
    out = []
    for c in inputs["calls"]:
        ids = c["input_ids"].clone()
        rec = attempt(fn, ids, vocab_size=inputs["vocab_size"], mask_token_id=inputs["mask_token_id"],
                      special_tokens_mask=c["special_tokens_mask"].clone(), mlm_probability=c["mlm_probability"],
                      generator=generator(c["seed"]))
        rec["input_after"] = ids
        out.append(rec)
    return {"calls": out}


def token_batch(s: Secret, label: str, rows: int, length: int, vocab: int) -> dict:
    """Ids [rows, length] from a narrow band of a large vocabulary; [CLS] first, [SEP] last, [PAD] after.

    Rows have different lengths (from ``length // 2`` to ``length``); special_tokens_mask marks the three."""
    g = s.gen(label)
    low = s.integer(200, vocab - 600, label + "/band")
    ids = torch.randint(low, low + 500, (rows, length), generator=g)
    ends = torch.randint(length // 2, length + 1, (rows, 1), generator=g)
    pos = torch.arange(length)
    pad, sep, cls = pos >= ends, pos == ends - 1, (pos == 0).expand(rows, length)
    ids[pad], ids[sep], ids[cls] = PAD, SEP, CLS
    return {"input_ids": ids, "special_tokens_mask": pad | sep | cls}


def _vocab(s: Secret) -> dict:
    return {"vocab_size": s.integer(3000, 9000, "vocab"), "mask_token_id": s.integer(3, 120, "mask id")}


def make_selection(s: Secret) -> dict:
    common = _vocab(s)
    calls = []
    for i, (rows, low, high) in enumerate(((256, 0.12, 0.2), (64, 0.35, 0.5))):
        calls.append({**token_batch(s, f"batch{i}", rows, 128, common["vocab_size"]),
                      "mlm_probability": round(s.uniform(low, high, f"p{i}"), 3), "seed": s.seed(f"gen{i}")})
    return {**common, "calls": calls}


def make_split(s: Secret) -> dict:
    common = _vocab(s)
    return {**common, "calls": [{**token_batch(s, "batch", 160, 128, common["vocab_size"]),
                                 "mlm_probability": round(s.uniform(0.6, 0.9, "p"), 3), "seed": s.seed("gen")}]}


def make_contract(s: Secret) -> dict:
    common = _vocab(s)
    batch = token_batch(s, "batch", 64, 128, common["vocab_size"])
    p = round(s.uniform(0.2, 0.35, "p"), 3)
    same, other = s.seed("gen same"), s.seed("gen other")
    one = token_batch(s, "one", 1, s.integer(6, 14, "one length"), common["vocab_size"])
    return {**common, "calls": [{**batch, "mlm_probability": p, "seed": same},
                                {**batch, "mlm_probability": p, "seed": same},
                                {**batch, "mlm_probability": p, "seed": other},
                                {**one, "mlm_probability": round(s.uniform(0.3, 0.6, "p one"), 3),
                                 "seed": s.seed("gen one")}]}


def _masked(inputs: dict, outputs: dict, i: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The i-th call's (inputs, labels), validated, and consistent with the specification."""
    c = inputs["calls"][i]
    ids, special = c["input_ids"], c["special_tokens_mask"]
    b, length = ids.shape
    rec = entries(outputs, "calls", len(inputs["calls"]))[i]
    what = f"mask_tokens(input_ids of shape {[b, length]}, mlm_probability={c['mlm_probability']})"
    out = items(result(rec, what), what, 2)
    masked = tensor(out[0], f"{what}: inputs (first result)", (b, length), torch.long)
    labels = tensor(out[1], f"{what}: labels (second result)", (b, length), torch.long)
    selected = labels != -100
    if not torch.equal(labels[selected], ids[selected]):
        raise Fail(f"{what}: labels must hold the original token id at every selected position and -100 elsewhere")
    if bool((selected & special).any()):
        raise Fail(f"{what}: a special token ([CLS], [SEP] or [PAD], special_tokens_mask=True) was selected; "
                   "special tokens must never be selected")
    if not torch.equal(masked[~selected], ids[~selected]):
        raise Fail(f"{what}: positions that were not selected (label -100) must keep their original id in inputs")
    if bool(((masked < 0) | (masked >= inputs["vocab_size"])).any()):
        raise Fail(f"{what}: inputs contain ids outside [0, vocab_size)")
    return c, masked, labels


def _rounding(eligible: torch.Tensor, p: float) -> tuple[float, float]:
    """How far an exact count per row, round(p * N) of N eligible positions, may move the rate of one
    position (p) and of two positions together (p²): allowed by the specification, added as slack."""
    rate, pair = 0.0, 0.0
    for n in sorted(set(eligible.sum(dim=1).tolist())):
        if n < 2:
            continue
        for k in (math.floor(p * n), math.ceil(p * n)):
            rate = max(rate, abs(k / n - p))
            pair = max(pair, abs(k * (k - 1) / (n * (n - 1)) - p * p))
    return rate, pair


def _pairs(a: torch.Tensor, b: torch.Tensor, ok: torch.Tensor) -> tuple[float, int]:
    """Share of the places where ``ok`` holds at which ``a`` and ``b`` are both True, and their number."""
    n = int(ok.sum())
    return (int((a & b & ok).sum()) / n if n else 0.0), n


def selection_statistics(selected: torch.Tensor, special: torch.Tensor, p: float, what: str) -> None:
    """Fail unless ``selected`` [B, L] looks like independent selections at rate ``p`` of the eligible positions."""
    eligible = ~special
    rate_slack, pair_slack = _rounding(eligible, p)
    cross_slack = 2 * p * rate_slack + rate_slack ** 2
    n = int(eligible.sum())
    within(int(selected.sum()) / n, p, n, f"{what}: the selected share of eligible positions", slack=rate_slack)
    per_column = eligible.sum(dim=0)
    for j in torch.nonzero(per_column >= 8).flatten().tolist():
        m = int(per_column[j])
        within(int(selected[:, j].sum()) / m, p, m, f"{what}: the selected share at position {j} (over the rows)",
               slack=rate_slack, delta=DELTA / selected.shape[1])
    even = (selected.shape[1] // 2) * 2  # neighbours (0, 1), (2, 3), ... : disjoint pairs
    left, right = selected[:, 0:even:2], selected[:, 1:even:2]
    share, m = _pairs(left, right, eligible[:, 0:even:2] & eligible[:, 1:even:2])
    within(share, p * p, m, f"{what}: the share of neighbouring eligible positions selected together "
           "(select each position independently: not a span, a stride or a pattern)", slack=pair_slack)
    rows = (selected.shape[0] // 2) * 2  # rows (0, 1), (2, 3), ...: the same position in two rows
    top, bottom = selected[0:rows:2], selected[1:rows:2]
    share, m = _pairs(top, bottom, eligible[0:rows:2] & eligible[1:rows:2])
    within(share, p * p, m, f"{what}: the share of positions selected in both of two rows "
           "(each row must be masked independently, not with one pattern for the batch)", slack=cross_slack)


def judge_selection(inputs: dict, outputs: dict) -> str:
    for i in range(len(inputs["calls"])):
        c, _, labels = _masked(inputs, outputs, i)
        selection_statistics(labels != -100, c["special_tokens_mask"], c["mlm_probability"],
                             f"mask_tokens(mlm_probability={c['mlm_probability']})")
    return "labels, special tokens, and independent selections at rate mlm_probability are right"


KINDS = (("[MASK]", 0.8), ("random", 0.1), ("unchanged", 0.1))


def split_statistics(ids: torch.Tensor, masked: torch.Tensor, selected: torch.Tensor, mask_id: int, vocab: int,
                     what: str) -> None:
    """Fail unless the selected positions follow the 80/10/10 rule, independently per position."""
    kind = torch.full(ids.shape, -1)
    kind[selected & (masked == mask_id)] = 0
    kind[selected & (masked != mask_id) & (masked != ids)] = 1
    kind[selected & (masked == ids)] = 2
    n = int(selected.sum())
    if n < 100:
        raise Fail(f"{what}: too few positions were selected to check the 80/10/10 rule")
    slack = 2 / vocab  # a random id may equal the original id or the [MASK] id
    for k, (name, q) in enumerate(KINDS):
        within(int((kind == k).sum()) / n, q, n, f"{what}: the share of selected positions that became {name}"
               if name != "unchanged" else f"{what}: the share of selected positions left unchanged",
               slack=slack)
    random_ids = masked[kind == 1]
    bands = torch.bincount(random_ids * 10 // vocab, minlength=10)[:10]
    for band, count in enumerate(bands.tolist()):
        within(count / len(random_ids), 0.1, len(random_ids),
               f"{what}: the share of random replacement ids in the band {band}/10 of [0, vocab_size) "
               "(draw them uniformly from the whole vocabulary)", slack=slack, delta=DELTA / 10)
    even = (ids.shape[1] // 2) * 2  # neighbours (0, 1), (2, 3), ...: disjoint pairs of selected positions
    left, right = kind[:, 0:even:2], kind[:, 1:even:2]
    both = (left >= 0) & (right >= 0)
    m = int(both.sum())
    for a, (name_a, qa) in enumerate(KINDS):
        for b, (name_b, qb) in enumerate(KINDS):
            share = int(((left == a) & (right == b) & both).sum()) / max(m, 1)
            within(share, qa * qb, m, f"{what}: among neighbouring selected positions, the share that became "
                   f"{name_a} then {name_b} (draw the kind of each selected position independently, "
                   "not in a fixed order)", slack=slack, delta=DELTA / 9)


def judge_split(inputs: dict, outputs: dict) -> str:
    c, masked, labels = _masked(inputs, outputs, 0)
    split_statistics(c["input_ids"], masked, labels != -100, inputs["mask_token_id"], inputs["vocab_size"],
                     "mask_tokens (80/10/10 rule)")
    return "the 80/10/10 rule, per position, with uniform random ids"


def judge_contract(inputs: dict, outputs: dict) -> str:
    calls = entries(outputs, "calls", len(inputs["calls"]))
    for c, rec in zip(inputs["calls"], calls):
        after = field(rec, "input_after")
        want = c["input_ids"]
        if not (isinstance(after, torch.Tensor) and after.shape == want.shape and after.dtype == want.dtype
                and torch.equal(after, want)):
            raise Fail("mask_tokens modified its input tensor in place; clone it first")
    c, in_a, lab_a = _masked(inputs, outputs, 0)
    _, in_b, lab_b = _masked(inputs, outputs, 1)
    _, _, lab_c = _masked(inputs, outputs, 2)
    if not (torch.equal(in_a, in_b) and torch.equal(lab_a, lab_b)):
        raise Fail("two calls with generators seeded alike gave different results: draw every random "
                   "number from `generator`")
    eligible = ~c["special_tokens_mask"]
    p = c["mlm_probability"]
    rate_slack, _ = _rounding(eligible, p)
    share, m = _pairs(lab_a != -100, lab_c != -100, eligible)
    within(share, p * p, m, "mask_tokens with generators seeded differently: the share of eligible positions "
           "selected by both (the selection must come from `generator`)", slack=2 * p * rate_slack + rate_slack ** 2)
    _masked(inputs, outputs, 3)
    return "generator, untouched input and a batch of one are right"


MASK_TOKENS = [
    Check("mask_tokens_selection", make_selection, call_mask_tokens, judge_selection,
          "labels; special tokens never selected; independent selection at rate p (overall, per position, "
          "neighbours, rows)"),
    Check("mask_tokens_split", make_split, call_mask_tokens, judge_split,
          "80/10/10 shares, uniform random ids, kinds independent between neighbours"),
    Check("mask_tokens_contract", make_contract, call_mask_tokens, judge_contract,
          "input not modified; same seed same result; two seeds independent selections; a batch of one"),
]


# ====================================================================== random_masking
def call_random_masking(ns: dict, inputs: dict) -> dict:
    """Kernel side: call ``random_masking`` on each case, with the grader's noise or a seeded generator."""
    fn = need(ns, "random_masking")
    out = []
    for c in inputs["cases"]:
        extra = {"noise": c["noise"].clone()} if "noise" in c else {"generator": generator(c["seed"])}
        out.append(attempt(fn, c["x"].clone(), c["mask_ratio"], **extra))
    return {"cases": out}


def _given_noise(s: Secret, label: str, b: int, length: int, d: int, ratio: float) -> dict:
    g = s.gen(label)
    return {"x": torch.randn(b, length, d, generator=g), "noise": torch.rand(b, length, generator=g),
            "mask_ratio": ratio}


def make_exact(s: Secret) -> dict:
    cases = []
    for i in range(2):
        length = s.integer(8, 24, f"L{i}")
        keep = s.integer(2, length - 2, f"keep{i}")  # a ratio with L_keep = keep, not an integer L * (1 - ratio)
        ratio = round(1 - (keep + s.uniform(0.1, 0.4, f"frac{i}")) / length, 4)
        cases.append(_given_noise(s, f"case{i}", s.integer(2, 6, f"B{i}"), length, s.integer(2, 8, f"D{i}"), ratio))
    return {"cases": cases}


def make_edges(s: Secret) -> dict:
    length = 2 * s.integer(2, 7, "odd L") + 1
    keep = s.integer(1, length - 2, "odd keep")  # L * (1 - ratio) = keep + 0.55..0.9: int() and round() differ
    odd = round(1 - (keep + s.uniform(0.55, 0.9, "odd frac")) / length, 4)
    return {"cases": [_given_noise(s, "odd", s.integer(2, 4, "odd B"), length, s.integer(2, 5, "odd D"), odd),
                      _given_noise(s, "one", 1, s.integer(4, 10, "one L"), s.integer(2, 5, "one D"),
                                   round(s.uniform(0.3, 0.7, "one ratio"), 3)),
                      _given_noise(s, "none", s.integer(2, 4, "none B"), s.integer(4, 9, "none L"), 3, 0.0)]}


def make_random(s: Secret) -> dict:
    length = s.integer(12, 20, "L")
    keep = s.integer(3, length // 2, "keep")
    ratio = round(1 - (keep + 0.3) / length, 4)
    x = torch.randn(512, length, 2, generator=s.gen("x"))
    same, other = s.seed("gen same"), s.seed("gen other")
    return {"cases": [{"x": x, "mask_ratio": ratio, "seed": same}, {"x": x, "mask_ratio": ratio, "seed": same},
                      {"x": x, "mask_ratio": ratio, "seed": other}]}


@functools.lru_cache(maxsize=1)
def _mae_masking():
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

    return ViTMAEEmbeddings.random_masking


def mae_reference(x: torch.Tensor, ratio: float, noise: torch.Tensor):
    """ViTMAE's own ``random_masking`` (it reads only ``config.mask_ratio`` from ``self``)."""
    fake_self = types.SimpleNamespace(config=types.SimpleNamespace(mask_ratio=ratio))
    return _mae_masking()(fake_self, x, noise=noise)


def _triple(inputs: dict, outputs: dict, i: int, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = inputs["cases"][i]
    b, length, d = c["x"].shape
    keep = int(length * (1 - c["mask_ratio"]))
    rec = entries(outputs, "cases", len(inputs["cases"]))[i]
    got = items(result(rec, what), what, 3)
    xv = tensor(got[0], f"{what}: x_visible", (b, keep, d), floating=True)
    mask = tensor(got[1], f"{what}: mask", (b, length), floating=True)
    ids = tensor(got[2], f"{what}: ids_restore", (b, length))
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise Fail(f"{what}: ids_restore should hold integer indices")
    return xv, mask, ids.long()


def _compare_with_mae(inputs: dict, outputs: dict, i: int) -> None:
    c = inputs["cases"][i]
    x, noise, ratio = c["x"], c["noise"], c["mask_ratio"]
    b, length, d = x.shape
    what = f"random_masking(x of shape {[b, length, d]}, mask_ratio={ratio}, noise=...)"
    xv, mask, ids = _triple(inputs, outputs, i, what)
    want = mae_reference(x, ratio, noise)
    if not torch.equal(mask, want[1].to(mask.dtype)):
        raise Fail(f"{what}: mask is wrong (0 = kept, 1 = removed, in the original patch order; keep the "
                   "int(L * (1 - mask_ratio)) patches with the smallest noise)")
    if not torch.equal(ids, want[2]):
        raise Fail(f"{what}: ids_restore is wrong (it is the argsort of the shuffle, which sorts noise ascending)")
    if xv.dtype != want[0].dtype or not torch.equal(xv, want[0]):
        raise Fail(f"{what}: x_visible is wrong (the kept patches, in ascending-noise order)")


def judge_exact(inputs: dict, outputs: dict) -> str:
    for i in range(len(inputs["cases"])):
        _compare_with_mae(inputs, outputs, i)
    return "identical to ViTMAE's random_masking given the same noise"


def judge_edges(inputs: dict, outputs: dict) -> str:
    for i in range(len(inputs["cases"])):
        _compare_with_mae(inputs, outputs, i)
    return "odd lengths (int, not round), a batch of one and mask_ratio=0 are right"


def judge_random(inputs: dict, outputs: dict) -> str:
    c = inputs["cases"][0]
    x, ratio = c["x"], c["mask_ratio"]
    b, length, d = x.shape
    keep = int(length * (1 - ratio))
    what = f"random_masking(x, {ratio}, generator=g) without noise"
    results = [_triple(inputs, outputs, i, what) for i in range(3)]
    for xv, mask, ids in results:
        if not torch.equal(torch.sort(ids, dim=1).values, torch.arange(length).expand(b, length)):
            raise Fail(f"{what}: each row of ids_restore must be a permutation of 0..L-1")
        kept = torch.argsort(ids, dim=1)[:, :keep]
        if xv.dtype != x.dtype or not torch.equal(torch.gather(x, 1, kept[..., None].expand(-1, -1, d)), xv):
            raise Fail(f"{what}: x_visible is not x gathered at the first L_keep indices of the shuffle")
        if not torch.equal(mask, (ids >= keep).to(mask.dtype)):
            raise Fail(f"{what}: mask is not 0 exactly at the kept patches")
    if not all(torch.equal(a, b_) for a, b_ in zip(results[0], results[1])):
        raise Fail(f"{what}: two calls with generators seeded alike differ; draw the noise from `generator`")
    kept_a, kept_c = results[0][1] == 0, results[2][1] == 0
    q = keep / length
    for j in range(length):
        within(float(kept_a[:, j].double().mean()), q, b, f"{what}: the share of samples that keep patch {j}",
               delta=DELTA / length)
    even = (length // 2) * 2
    pair = keep * (keep - 1) / (length * (length - 1))
    share, m = _pairs(kept_a[:, 0:even:2], kept_a[:, 1:even:2], torch.ones(b, even // 2, dtype=torch.bool))
    within(share, pair, m, f"{what}: the share of neighbouring patches kept together (choose a uniformly random "
           "subset: not a window or a pattern)")
    rows = (b // 2) * 2
    share, m = _pairs(kept_a[0:rows:2], kept_a[1:rows:2], torch.ones(rows // 2, length, dtype=torch.bool))
    within(share, q * q, m, f"{what}: the share of patches kept in both of two samples (shuffle each sample "
           "independently)")
    share, m = _pairs(kept_a, kept_c, torch.ones(b, length, dtype=torch.bool))
    within(share, q * q, m, f"{what}: with generators seeded differently, the share of patches kept by both "
           "(draw the noise from `generator`)")
    return "independent, reproducible, uniform masks that depend on the generator"


RANDOM_MASKING = [
    Check("random_masking_exact", make_exact, call_random_masking, judge_exact,
          "equal to ViTMAE's random_masking given the same noise (sizes and ratios from the secret)"),
    Check("random_masking_edges", make_edges, call_random_masking, judge_edges,
          "int not round for odd lengths, a batch of one, mask_ratio=0"),
    Check("random_masking_random", make_random, call_random_masking, judge_random,
          "without noise: permutations, same seed same masks, uniform and independent across patches, samples "
          "and seeds"),
]

CHECKS = [*MASK_TOKENS, *RANDOM_MASKING]
