"""Student answers used to prove the hidden tests: plausible wrong implementations and correct alternatives.

A wrong variant is code appended to the (correct) solution cell that redefines one graded
function with a bug; it must lose marks in the cells that test that function. A correct
alternative replaces the solution with a different but valid implementation; it must keep full
marks. Several variants for *different* functions share a notebook (their cells are independent),
so that the whole suite grades in a few nbgrader runs.
"""
from __future__ import annotations

# graded function -> (answer cell, hidden-test cells)
FUNCTIONS = {
    "mask_tokens": ("answer_mask_tokens", ["mask_tokens_selection", "mask_tokens_split", "mask_tokens_contract"]),
    "random_masking": ("answer_random_masking",
                       ["random_masking_exact", "random_masking_edges", "random_masking_random"]),
    "clip_loss": ("answer_clip_loss", ["clip_loss_value", "clip_loss_grad", "clip_loss_edges"]),
    "zero_shot_classify": ("answer_retrieval", ["zero_shot"]),
    "recall_at_k": ("answer_retrieval", ["recall_at_k"]),
    "LoRALinear": ("answer_lora_linear", ["lora_init", "lora_forward", "lora_merge", "lora_dropout"]),
    "inject_lora": ("answer_inject_lora", ["inject_lora"]),
    "count_parameters": ("answer_inject_lora", ["count_parameters"]),
}
ASSIGNMENT_OF = {"mask_tokens": "masking", "random_masking": "masking", "clip_loss": "contrastive",
                 "zero_shot_classify": "contrastive", "recall_at_k": "contrastive", "LoRALinear": "lora",
                 "inject_lora": "lora", "count_parameters": "lora"}

_MT = "def mask_tokens(input_ids, *, vocab_size, mask_token_id, special_tokens_mask, mlm_probability=0.15, generator=None):"
_RM = "def random_masking(x, mask_ratio, *, noise=None, generator=None):"

WRONG: dict[str, list[tuple[str, str]]] = {
    "mask_tokens": [
        ("no_unchanged_share", _MT + """
    sel = torch.bernoulli(torch.full(input_ids.shape, mlm_probability).masked_fill(special_tokens_mask, 0.0), generator=generator).bool()
    labels = torch.where(sel, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    m = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & sel
    inputs[m] = mask_token_id
    r = sel & ~m
    inputs[r] = torch.randint(vocab_size, input_ids.shape, generator=generator)[r]
    return inputs, labels"""),
        ("special_tokens_selected", _MT + """
    sel = torch.bernoulli(torch.full(input_ids.shape, mlm_probability), generator=generator).bool()
    labels = torch.where(sel, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    m = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & sel
    inputs[m] = mask_token_id
    r = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & sel & ~m
    inputs[r] = torch.randint(vocab_size, input_ids.shape, generator=generator)[r]
    return inputs, labels"""),
        ("labels_everywhere", """
_mask_tokens_ok = mask_tokens
""" + _MT + """
    inputs, labels = _mask_tokens_ok(input_ids, vocab_size=vocab_size, mask_token_id=mask_token_id,
                                     special_tokens_mask=special_tokens_mask, mlm_probability=mlm_probability, generator=generator)
    return inputs, input_ids.clone()"""),
        ("edits_input_in_place", """
_mask_tokens_ok = mask_tokens
""" + _MT + """
    inputs, labels = _mask_tokens_ok(input_ids, vocab_size=vocab_size, mask_token_id=mask_token_id,
                                     special_tokens_mask=special_tokens_mask, mlm_probability=mlm_probability, generator=generator)
    input_ids.copy_(inputs)
    return input_ids, labels"""),
        ("ignores_generator", """
_mask_tokens_ok = mask_tokens
""" + _MT + """
    return _mask_tokens_ok(input_ids, vocab_size=vocab_size, mask_token_id=mask_token_id,
                           special_tokens_mask=special_tokens_mask, mlm_probability=mlm_probability, generator=None)"""),
        ("fixed_rate", """
_mask_tokens_ok = mask_tokens
""" + _MT + """
    return _mask_tokens_ok(input_ids, vocab_size=vocab_size, mask_token_id=mask_token_id,
                           special_tokens_mask=special_tokens_mask, mlm_probability=0.15, generator=generator)"""),
        ("random_ids_from_batch", _MT + """
    sel = torch.bernoulli(torch.full(input_ids.shape, mlm_probability).masked_fill(special_tokens_mask, 0.0), generator=generator).bool()
    labels = torch.where(sel, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    m = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & sel
    inputs[m] = mask_token_id
    r = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & sel & ~m
    flat = input_ids.flatten()
    inputs[r] = flat[torch.randint(len(flat), input_ids.shape, generator=generator)][r]
    return inputs, labels"""),
        ("random_overwrites_masks", _MT + """
    sel = torch.bernoulli(torch.full(input_ids.shape, mlm_probability).masked_fill(special_tokens_mask, 0.0), generator=generator).bool()
    labels = torch.where(sel, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    inputs[torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & sel] = mask_token_id
    r = torch.bernoulli(torch.full(input_ids.shape, 0.1), generator=generator).bool() & sel
    inputs[r] = torch.randint(vocab_size, input_ids.shape, generator=generator)[r]
    return inputs, labels"""),
        ("cycled_split", _MT + """
    sel = torch.bernoulli(torch.full(input_ids.shape, mlm_probability).masked_fill(special_tokens_mask, 0.0), generator=generator).bool()
    labels = torch.where(sel, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    cycle = (torch.cumsum(sel.flatten().long(), 0).view(sel.shape) - 1) % 10
    inputs[sel & (cycle < 8)] = mask_token_id
    rnd = sel & (cycle == 8)
    inputs[rnd] = torch.randint(vocab_size, input_ids.shape, generator=generator)[rnd]
    return inputs, labels"""),
        ("one_pattern_for_the_batch", """
_mask_tokens_ok = mask_tokens
""" + _MT + """
    B, L = input_ids.shape
    row = torch.bernoulli(torch.full((1, L), mlm_probability), generator=generator).bool().expand(B, L)
    inputs, labels = _mask_tokens_ok(input_ids, vocab_size=vocab_size, mask_token_id=mask_token_id,
                                     special_tokens_mask=special_tokens_mask | ~row, mlm_probability=1.0, generator=generator)
    return inputs, labels"""),
        ("selection_ignores_generator", _MT + """
    fixed = torch.Generator().manual_seed(0)
    sel = torch.bernoulli(torch.full(input_ids.shape, mlm_probability).masked_fill(special_tokens_mask, 0.0), generator=fixed).bool()
    labels = torch.where(sel, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    m = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & sel
    inputs[m] = mask_token_id
    r = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & sel & ~m
    inputs[r] = torch.randint(vocab_size, input_ids.shape, generator=generator)[r]
    return inputs, labels"""),
        ("delegates_to_transformers", _MT + """
    from transformers import DataCollatorForLanguageModeling
    class Tok:
        mask_token, pad_token = "[MASK]", "[PAD]"
        def __len__(self): return vocab_size
        def convert_tokens_to_ids(self, t): return mask_token_id
    coll = DataCollatorForLanguageModeling(Tok(), mlm_probability=mlm_probability, return_tensors="pt")
    coll.generator = generator
    return coll.torch_mask_tokens(input_ids.clone(), special_tokens_mask=special_tokens_mask)"""),
    ],
    "random_masking": [
        ("same_permutation_for_batch", _RM + """
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, generator=generator)
    noise = noise[:1].expand(B, L)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_visible = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = torch.ones(B, L); mask[:, :keep] = 0
    return x_visible, torch.gather(mask, 1, ids_restore), ids_restore"""),
        ("inverted_mask", """
_rm_ok = random_masking
""" + _RM + """
    v, m, r = _rm_ok(x, mask_ratio, noise=noise, generator=generator)
    return v, 1 - m, r"""),
        ("restore_is_shuffle", _RM + """
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    x_visible = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = torch.ones(B, L); mask[:, :keep] = 0
    mask = torch.gather(mask, 1, torch.argsort(ids_shuffle, dim=1))
    return x_visible, mask, ids_shuffle"""),
        ("keeps_largest_noise", """
_rm_ok = random_masking
""" + _RM + """
    if noise is None:
        noise = torch.rand(x.shape[0], x.shape[1], generator=generator)
    return _rm_ok(x, mask_ratio, noise=-noise)"""),
        ("round_not_int", _RM + """
    B, L, D = x.shape
    keep = round(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_visible = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = torch.ones(B, L); mask[:, :keep] = 0
    return x_visible, torch.gather(mask, 1, ids_restore), ids_restore"""),
        ("mask_in_shuffled_order", _RM + """
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_visible = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = torch.ones(B, L); mask[:, :keep] = 0
    return x_visible, mask, ids_restore"""),
        ("ignores_generator", """
_rm_ok = random_masking
""" + _RM + """
    return _rm_ok(x, mask_ratio, noise=noise, generator=None)"""),
        ("complement_count", _RM + """
    B, L, D = x.shape
    keep = L - int(L * mask_ratio)
    if noise is None:
        noise = torch.rand(B, L, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_visible = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = torch.ones(B, L); mask[:, :keep] = 0
    return x_visible, torch.gather(mask, 1, ids_restore), ids_restore"""),
        ("window_at_random_offset", """
_rm_ok = random_masking
""" + _RM + """
    if noise is None:
        B, L, _ = x.shape
        offset = torch.randint(L, (B, 1), generator=generator)
        noise = ((torch.arange(L) - offset) % L).float()
    return _rm_ok(x, mask_ratio, noise=noise)"""),
        ("delegates_to_vitmae", _RM + """
    import types
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings
    if noise is None:
        noise = torch.rand(x.shape[0], x.shape[1], generator=generator)
    fake = types.SimpleNamespace(config=types.SimpleNamespace(mask_ratio=mask_ratio))
    return ViTMAEEmbeddings.random_masking(fake, x, noise=noise)"""),
    ],
    "clip_loss": [
        ("no_normalisation", """
def clip_loss(image_features, text_features, logit_scale):
    logits = logit_scale * image_features @ text_features.T
    t = torch.arange(len(logits))
    return (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2"""),
        ("one_direction", """
def clip_loss(image_features, text_features, logit_scale):
    logits = logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    return F.cross_entropy(logits, torch.arange(len(logits)))"""),
        ("no_temperature", """
def clip_loss(image_features, text_features, logit_scale):
    logits = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    t = torch.arange(len(logits))
    return (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2"""),
        ("detached", """
_clip_ok = clip_loss
def clip_loss(image_features, text_features, logit_scale):
    return _clip_ok(image_features, text_features, logit_scale).detach()"""),
        ("divides_by_scale", """
def clip_loss(image_features, text_features, logit_scale):
    logits = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T / logit_scale
    t = torch.arange(len(logits))
    return (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2"""),
        ("summed_not_averaged", """
def clip_loss(image_features, text_features, logit_scale):
    logits = logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    t = torch.arange(len(logits))
    return F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)"""),
        ("scale_as_python_number", """
_clip_ok = clip_loss
def clip_loss(image_features, text_features, logit_scale):
    return _clip_ok(image_features, text_features, float(logit_scale))"""),
        ("delegates_to_open_clip", """
def clip_loss(image_features, text_features, logit_scale):
    from open_clip.loss import ClipLoss
    return ClipLoss()(F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1), logit_scale)"""),
    ],
    "zero_shot_classify": [
        ("dot_product", """
def zero_shot_classify(image_features, class_text_features):
    return (image_features @ class_text_features.T).argmax(dim=1)"""),
        ("normalises_images_only", """
def zero_shot_classify(image_features, class_text_features):
    return (F.normalize(image_features, dim=-1) @ class_text_features.T).argmax(dim=1)"""),
        ("argmax_over_images", """
def zero_shot_classify(image_features, class_text_features):
    return (F.normalize(image_features, dim=-1) @ F.normalize(class_text_features, dim=-1).T).argmax(dim=0)"""),
        ("returns_probabilities", """
def zero_shot_classify(image_features, class_text_features):
    return (F.normalize(image_features, dim=-1) @ F.normalize(class_text_features, dim=-1).T).softmax(dim=1)"""),
    ],
    "recall_at_k": [
        ("text_to_image", """
def recall_at_k(image_features, text_features, k):
    sims = F.normalize(text_features, dim=-1) @ F.normalize(image_features, dim=-1).T
    top = sims.topk(k, dim=1).indices
    return (top == torch.arange(len(sims))[:, None]).any(dim=1).float().mean().item()"""),
        ("dot_product", """
def recall_at_k(image_features, text_features, k):
    sims = image_features @ text_features.T
    top = sims.topk(k, dim=1).indices
    return (top == torch.arange(len(sims))[:, None]).any(dim=1).float().mean().item()"""),
        ("k_off_by_one", """
def recall_at_k(image_features, text_features, k):
    sims = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    top = sims.topk(min(k + 1, len(sims)), dim=1).indices
    return (top == torch.arange(len(sims))[:, None]).any(dim=1).float().mean().item()"""),
        ("count_not_fraction", """
def recall_at_k(image_features, text_features, k):
    sims = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    top = sims.topk(k, dim=1).indices
    return float((top == torch.arange(len(sims))[:, None]).any(dim=1).sum())"""),
        ("least_similar", """
def recall_at_k(image_features, text_features, k):
    sims = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    top = sims.topk(k, dim=1, largest=False).indices
    return (top == torch.arange(len(sims))[:, None]).any(dim=1).float().mean().item()"""),
    ],
    "LoRALinear": [
        ("B_not_zero", """
class LoRALinear(LoRALinear):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout)
        nn.init.normal_(self.lora_B.weight, std=0.02)"""),
        ("inverted_scaling", """
class LoRALinear(LoRALinear):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout)
        self.scaling = r / alpha"""),
        ("base_trainable", """
class LoRALinear(LoRALinear):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout)
        self.base.requires_grad_(True)"""),
        ("merge_forgets_flag", """
class LoRALinear(LoRALinear):
    @torch.no_grad()
    def merge(self):
        self.base.weight += self.delta_weight()"""),
        ("unmerge_adds_again", """
class LoRALinear(LoRALinear):
    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.base.weight += self.delta_weight()
            self.merged = False"""),
        ("merge_without_scaling", """
class LoRALinear(LoRALinear):
    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.base.weight += self.lora_B.weight @ self.lora_A.weight
            self.merged = True"""),
        ("dropout_on_whole_output", """
class LoRALinear(LoRALinear):
    def forward(self, x):
        if self.merged:
            return self.base(x)
        return self.dropout(self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling)"""),
        ("A_zero_too", """
class LoRALinear(LoRALinear):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout)
        nn.init.zeros_(self.lora_A.weight)"""),
        ("scaling_is_alpha", """
class LoRALinear(LoRALinear):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout)
        self.scaling = alpha"""),
        ("A_constant", """
class LoRALinear(LoRALinear):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout)
        nn.init.constant_(self.lora_A.weight, 0.1)"""),
        ("delegates_to_peft", """
class LoRALinear(nn.Module):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__()
        from peft import LoraConfig
        from peft.tuners.lora.layer import Linear
        self.base = base
        self.inner = Linear(base, "default", config=LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout), r=r, lora_alpha=alpha)
        self.lora_A, self.lora_B = self.inner.lora_A["default"], self.inner.lora_B["default"]
        self.scaling, self.merged = alpha / r, False
    def forward(self, x):
        return self.inner(x)
    def merge(self):
        self.inner.merge(); self.merged = True
    def unmerge(self):
        self.inner.unmerge(); self.merged = False"""),
    ],
    "inject_lora": [
        ("substring_match", """
def inject_lora(model, target_modules, *, r, alpha=1.0, dropout=0.0):
    model.requires_grad_(False)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and any(t in name for t in target_modules):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    return model"""),
        ("nothing_frozen", """
def inject_lora(model, target_modules, *, r, alpha=1.0, dropout=0.0):
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and any(name.endswith(t) for t in target_modules):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    for p in model.parameters():
        p.requires_grad_(True)
    return model"""),
        ("every_linear", """
def inject_lora(model, target_modules, *, r, alpha=1.0, dropout=0.0):
    model.requires_grad_(False)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    return model"""),
        ("freezes_lora_too", """
def inject_lora(model, target_modules, *, r, alpha=1.0, dropout=0.0):
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and any(name.endswith(t) for t in target_modules):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    model.requires_grad_(False)
    return model"""),
    ],
    "count_parameters": [
        ("constant_counts", """
def count_parameters(model):
    return 66, 78"""),
        ("counts_buffers", """
def count_parameters(model):
    total = sum(t.numel() for t in model.state_dict().values())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total"""),
        ("counts_shared_twice", """
def count_parameters(model):
    ps = [p for _, p in model.named_parameters(remove_duplicate=False)]
    return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)"""),
        ("swapped", """
def count_parameters(model):
    ps = list(model.parameters())
    return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)"""),
    ],
}

# Cheap non-implementations (issue 24): each is graded alone, and must score nothing in ``cells``,
# the points it did not earn, while keeping the cells it does not touch.
_LORA_CELLS = ["lora_init", "lora_forward", "lora_merge", "lora_dropout", "inject_lora", "count_parameters"]

# The probe replaced by one that reports what a real layer would show without computing it: the
# base layer's outputs (B = 0 at the start), unchanged weights, a frozen base, constant counts. With
# ``FORMULA = True`` it also writes the one-line LoRA formula wherever a plain forward pass is asked.
_SELF_REPORT = """
class LoRALinear(nn.Module):
    def __init__(self, *a, **k):
        raise NotImplementedError()
def inject_lora(*a, **k):
    raise NotImplementedError()
def count_parameters(*a, **k):
    raise NotImplementedError()

import lfd13_probe
_real_run = lfd13_probe.run
def _forged_run(task, ns, formula=FORMULA):
    i, e, ok = task["inputs"], task["entry"], {"value": None}
    def lin(c, x, with_lora=False):
        y = F.linear(x, c["W"], c["bias"])
        if formula and with_lora:
            y = y + ((c.get("alpha") or 1.0) / c["r"]) * (x @ c["A"].T @ c["B"].T)
        return {"value": y}
    if e == "call_lora_init":
        a0 = torch.randn(i["r"], i["W"].shape[1])
        b0 = torch.zeros(i["W"].shape[0], i["r"])
        return {"build": ok, "y0": lin(i, i["x"]), "A0": {"value": a0}, "B0": {"value": b0}, "step": ok,
                "A1": {"value": a0}, "B1": {"value": b0}, "W1": i["W"], "b1": i["bias"], "y1": lin(i, i["x2"])}
    if e in ("call_lora_forward", "call_lora_merge"):
        recs = []
        for c in i["cases"]:
            s = (c.get("alpha") or 1.0) / c["r"]
            merged = c["W"] + s * c["B"] @ c["A"] if formula else c["W"]
            y0 = lin(c, c["x"], True)
            recs.append({"build": ok, "load": ok, "y0": y0, "step": ok, "A1": {"value": c["A"]},
                         "B1": {"value": c["B"]}, "W1": c["W"], "b1": c["bias"], "y1": lin(c, c["x2"], True),
                         "merge": ok, "W_merged": merged, "y_merged": y0, "unmerge": ok, "W_unmerged": c["W"],
                         "y_unmerged": y0})
        return {"cases": recs}
    if e == "call_lora_dropout":
        return {"build": ok, "load": ok, "y_train": lin(i, i["x"]), "step_train": ok, "A_train": {"value": i["A"]},
                "B_train": {"value": i["B"]}, "y_eval": lin(i, i["x"], True), "step_eval": ok,
                "y1": lin(i, i["x2"], True)}
    if e == "call_inject_lora":
        net = lfd13_probe.ToyNet(i["spec"])
        net.load_state_dict(i["state"])
        with torch.no_grad():
            return {"build": ok, "load": ok, "y0": {"value": net(i["ids"])}, "step": ok,
                    "y1": {"value": net(i["ids2"])}}
    if e == "call_count_parameters":
        return {"models": [{"value": [66, 78]} for _ in i["models"]]}
    return _real_run(task, ns)
lfd13_probe.run = _forged_run
"""

# the same contiguous span in every row, right after [CLS], and a fixed 80/10/10 cycle; only the
# random ids come from the generator (so two seeds give different results)
_SPAN_AND_CYCLE = _MT + """
    B, L = input_ids.shape
    eligible = (~special_tokens_mask).sum(dim=1)
    sel = torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):
        sel[b, 1:1 + round(mlm_probability * int(eligible[b]))] = True
    sel &= ~special_tokens_mask
    labels = torch.where(sel, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    cycle = (torch.cumsum(sel.flatten().long(), 0).view(B, L) - 1) % 10
    inputs[sel & (cycle < 8)] = mask_token_id
    rnd = sel & (cycle == 8)
    inputs[rnd] = torch.randint(vocab_size, (B, L), generator=generator)[rnd]
    return inputs, labels"""

# MAE's algorithm, but without noise the "random" noise comes from a fixed seed, not from `generator`
_RM_FIXED_NOISE = """
_rm_ok = random_masking
""" + _RM + """
    if noise is None:
        noise = torch.rand(x.shape[0], x.shape[1], generator=torch.Generator().manual_seed(0))
    return _rm_ok(x, mask_ratio, noise=noise)"""

CHEATS: dict[str, tuple[dict[str, tuple[str, str]], list[str]]] = {
    # student -> ({function: (variant name, code appended to its answer cell)}, cells that must score 0)
    "cheat-masking-span": ({"mask_tokens": ("contiguous_span_fixed_cycle", _SPAN_AND_CYCLE),
                            "random_masking": ("ignores_generator_fixed_noise", _RM_FIXED_NOISE)},
                           ["mask_tokens_selection", "mask_tokens_split", "mask_tokens_contract",
                            "random_masking_random"]),
    "cheat-lora-self-report": ({"LoRALinear": ("self_report", _SELF_REPORT.replace("FORMULA", "False"))},
                               _LORA_CELLS),
    "cheat-lora-self-report-formula": ({"LoRALinear": ("self_report_formula",
                                                       _SELF_REPORT.replace("FORMULA", "True"))}, _LORA_CELLS),
}


def cheats() -> list[tuple[str, str, str, str, list[str]]]:
    """(student, function, variant name, code, cells that must score 0) for every cheap non-implementation."""
    return [(student, f, name, code, cells) for student, (fs, cells) in CHEATS.items()
            for f, (name, code) in fs.items()]


# Correct alternatives: complete answer cells (replacing the solution).
CORRECT: dict[str, list[tuple[str, dict[str, str]]]] = {
    "masking": [
        ("looped", {
            "answer_mask_tokens": _MT + """
    inputs, labels = input_ids.clone(), torch.full_like(input_ids, -100)
    B, L = input_ids.shape
    for b in range(B):
        for i in range(L):
            if special_tokens_mask[b, i] or torch.rand(1, generator=generator).item() >= mlm_probability:
                continue
            labels[b, i] = input_ids[b, i]
            u = torch.rand(1, generator=generator).item()
            if u < 0.8:
                inputs[b, i] = mask_token_id
            elif u < 0.9:
                inputs[b, i] = int(torch.randint(vocab_size, (1,), generator=generator))
    return inputs, labels""",
            "answer_random_masking": _RM + """
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, generator=generator)
    visible, masks, restores = [], [], []
    for b in range(B):
        order = sorted(range(L), key=lambda i: noise[b, i].item())
        visible.append(x[b, order[:keep]])
        m = torch.ones(L)
        m[order[:keep]] = 0
        masks.append(m)
        restore = torch.empty(L, dtype=torch.long)
        restore[torch.tensor(order)] = torch.arange(L)
        restores.append(restore)
    return torch.stack(visible), torch.stack(masks), torch.stack(restores)"""}),
        ("exact_count_and_scatter", {
            "answer_mask_tokens": _MT + """
    inputs, labels = input_ids.clone(), torch.full_like(input_ids, -100)
    for b in range(input_ids.shape[0]):
        eligible = (~special_tokens_mask[b]).nonzero().flatten()
        n = round(mlm_probability * len(eligible))
        if n == 0:
            continue
        chosen = eligible[torch.randperm(len(eligible), generator=generator)[:n]]
        labels[b, chosen] = input_ids[b, chosen]
        kind = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), n, replacement=True, generator=generator)
        inputs[b, chosen[kind == 0]] = mask_token_id
        rand = chosen[kind == 1]
        inputs[b, rand] = torch.randint(0, vocab_size, (len(rand),), generator=generator)
    return inputs, labels""",
            "answer_random_masking": _RM + """
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    noise = torch.rand(B, L, generator=generator) if noise is None else noise
    ids_shuffle = noise.sort(dim=1).indices
    ids_restore = torch.empty_like(ids_shuffle).scatter_(1, ids_shuffle, torch.arange(L).expand(B, L))
    mask = torch.ones(B, L).scatter_(1, ids_shuffle[:, :keep], 0.0)
    x_visible = x[torch.arange(B)[:, None], ids_shuffle[:, :keep]]
    return x_visible, mask, ids_restore"""}),
        ("thresholds_and_randperm", {
            "answer_mask_tokens": _MT + """
    u = torch.rand(input_ids.shape, generator=generator)
    v = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(0, vocab_size, input_ids.shape, generator=generator)
    selected = (u < mlm_probability) & ~special_tokens_mask
    labels = input_ids.masked_fill(~selected, -100)
    inputs = torch.where(selected & (v < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)
    inputs = torch.where(selected & (v >= 0.8) & (v < 0.9), random_ids, inputs)
    return inputs, labels""",
            "answer_random_masking": _RM + """
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    if noise is None:  # a uniformly random order per sample, as sorting uniform noise gives
        ids_shuffle = torch.stack([torch.randperm(L, generator=generator) for _ in range(B)])
    else:
        ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_visible = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = (ids_restore >= keep).float()
    return x_visible, mask, ids_restore"""}),
    ],
    "contrastive": [
        ("log_softmax_and_ranks", {
            "answer_clip_loss": """
def clip_loss(image_features, text_features, logit_scale):
    img = F.normalize(image_features, dim=1)
    txt = F.normalize(text_features, dim=1)
    logits = img @ txt.T * logit_scale
    i2t = -torch.diagonal(logits.log_softmax(dim=1)).mean()
    t2i = -torch.diagonal(logits.log_softmax(dim=0)).mean()
    return 0.5 * (i2t + t2i)""",
            "answer_retrieval": """
def zero_shot_classify(image_features, class_text_features):
    sims = F.cosine_similarity(image_features[:, None, :], class_text_features[None, :, :], dim=-1)
    return sims.argmax(dim=-1)


def recall_at_k(image_features, text_features, k):
    sims = F.normalize(image_features, dim=1) @ F.normalize(text_features, dim=1).T
    own = sims.diagonal()[:, None]
    rank = (sims > own).sum(dim=1)          # how many texts beat the paired one
    return float((rank < k).double().mean())"""}),
    ],
    "lora": [
        ("functional_and_recursive", {
            "answer_lora_linear": """
class LoRALinear(nn.Module):
    def __init__(self, base, *, r, alpha=1.0, dropout=0.0):
        super().__init__()
        for p in base.parameters():
            p.requires_grad = False
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        nn.init.normal_(self.lora_A.weight, std=1 / r)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.lora_B.weight.data.zero_()
        self.p, self.scaling, self.merged = dropout, alpha / r, False

    def forward(self, x):
        y = F.linear(x, self.base.weight, self.base.bias)
        if not self.merged:
            h = F.dropout(x, self.p, self.training)
            y = y + self.scaling * F.linear(F.linear(h, self.lora_A.weight), self.lora_B.weight)
        return y

    def merge(self):
        if not self.merged:
            self.base.weight.data.addmm_(self.lora_B.weight.data, self.lora_A.weight.data, alpha=self.scaling)
            self.merged = True

    def unmerge(self):
        if self.merged:
            self.base.weight.data.addmm_(self.lora_B.weight.data, self.lora_A.weight.data, alpha=-self.scaling)
            self.merged = False""",
            "answer_inject_lora": """
def inject_lora(model, target_modules, *, r, alpha=1.0, dropout=0.0):
    def visit(module, prefix):
        for name, child in list(module.named_children()):
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Linear) and any(full.endswith(t) for t in target_modules):
                module.add_module(name, LoRALinear(child, r=r, alpha=alpha, dropout=dropout))
            else:
                for p in child.parameters(recurse=False):
                    p.requires_grad = False
                visit(child, full)
    for p in model.parameters(recurse=False):
        p.requires_grad = False
    visit(model, "")
    return model


def count_parameters(model):
    seen = {}
    for p in model.parameters():
        seen[id(p)] = p
    return (sum(p.numel() for p in seen.values() if p.requires_grad), sum(p.numel() for p in seen.values()))"""}),
    ],
}


def wrong_notebooks() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """student id -> {function: [(variant name, code)]}, pairing variants of independent functions."""
    plan = {"masking": [["mask_tokens", "random_masking"]],
            "contrastive": [["clip_loss", "zero_shot_classify", "recall_at_k"]],
            # LoRALinear variants that break init/forward would also break inject_lora's checks, so
            # inject_lora variants go with LoRALinear variants that only affect merge/dropout.
            "lora": [["LoRALinear", "count_parameters"]]}
    out: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for assignment, groups in plan.items():
        for group in groups:
            n = max(len(WRONG[f]) for f in group)
            for i in range(n):
                student = f"wrong-{assignment}-{i}"
                out[student] = {f: [WRONG[f][i]] for f in group if i < len(WRONG[f])}
    for student, (fs, _) in CHEATS.items():
        out[student] = {f: [variant] for f, variant in fs.items()}
    injectable = ["merge_forgets_flag", "unmerge_adds_again", "merge_without_scaling", "dropout_on_whole_output"]
    lora_students = [s for s in out if s.startswith("wrong-lora-")]
    for j, variant in enumerate(WRONG["inject_lora"]):
        student = next(s for s in lora_students if out[s]["LoRALinear"][0][0] == injectable[j])
        out[student]["inject_lora"] = [variant]
    return out


def expected_losses(functions: dict[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    """function -> the hidden-test cells in which that function's bug must lose marks."""
    return {f: FUNCTIONS[f][1] for f in functions}

