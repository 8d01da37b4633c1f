"""Write the three nbgrader source notebooks from the cell lists below.

The notebooks in ``source/`` are the artefact nbgrader reads; this script is how they are kept
tidy (no outputs, stable cell ids, uniform nbgrader metadata). Edit here, then run
``python assignments/build_sources.py``. Solutions sit between ``### BEGIN SOLUTION`` and
``### END SOLUTION``; hidden tests only call ``lfd13_probe.observe`` (the checks live in ``grading/checks/``).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

SOURCE = Path(__file__).resolve().parent / "source"
SETUP = """\
import math

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
torch.set_num_threads(1)  # tensors here are tiny: one thread is fastest"""


def hidden(grade_id: str) -> str:
    return ("### BEGIN HIDDEN TESTS\n"
            f'import lfd13_probe; lfd13_probe.observe("{grade_id}", globals())\n'
            "### END HIDDEN TESTS")


class Builder:
    def __init__(self, name: str):
        self.name, self.cells, self.points = name, [], 0

    def md(self, text: str) -> None:
        cell = nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())
        self.cells.append(cell)

    def _code(self, src: str, **meta) -> None:
        cell = nbformat.v4.new_code_cell(textwrap.dedent(src).strip())
        if meta:
            cell.metadata["nbgrader"] = {"schema_version": 3, "grade": False, "locked": False, "solution": False,
                                         **meta}
        self.cells.append(cell)

    def setup(self, src: str = SETUP) -> None:
        self._code(src, grade_id="setup", locked=True)

    def answer(self, grade_id: str, src: str) -> None:
        self._code(src, grade_id=grade_id, solution=True)

    def demo(self, grade_id: str, src: str) -> None:
        self._code(src, grade_id=grade_id, locked=True)

    def test(self, grade_id: str, points: int, visible: str) -> None:
        self.points += points
        src = (f"# Tests for this part ({points} point{'s' * (points != 1)}). The visible asserts below run now;\n"
               "# hidden tests run here when your notebook is graded.\n"
               + textwrap.dedent(visible).strip() + "\n\n" + hidden(grade_id))
        self._code(src, grade_id=grade_id, grade=True, locked=True, points=points)

    def notebook(self) -> nbformat.NotebookNode:
        """The source notebook: these cells, stable ids, no outputs."""
        nb = nbformat.v4.new_notebook()
        nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                      "name": "python3"},
                       "language_info": {"name": "python"}}
        for i, cell in enumerate(self.cells):
            cell.id = f"{self.name}-{i:02d}"
        nb.cells = self.cells
        return nb

    def path(self, folder: Path = SOURCE) -> Path:
        """Where nbgrader reads it: ``source/<name>/<name>.ipynb``."""
        return folder / self.name / f"{self.name}.ipynb"

    def write(self, folder: Path = SOURCE) -> Path:
        path = self.path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(self.notebook(), path)
        return path


BUILDERS = ("masking", "contrastive", "lora")  # the functions below, one per assignment


# ====================================================================== masking
def masking() -> Builder:
    b = Builder("masking")
    b.md("""
    # Assignment 1 — masking for self-supervised pre-training (10 points)

    Masked prediction is one of the four pretext families of the lecture: hide part of the input and
    train the network to predict it. You will write the masking step of the two models of the
    course book that use it, in plain PyTorch:

    * **BERT** (*BERT* chapter): select 15 % of the tokens; of those, 80 % become `[MASK]`,
      10 % a random token and 10 % stay unchanged; the loss is computed on the selected tokens only.
    * **MAE** (*MAE* chapter): keep a random 25 % of the image patches; the encoder sees only those.

    Implement the functions where it says `YOUR CODE HERE`, run the tests under each, then submit.
    Use `torch` only (not transformers' `DataCollatorForLanguageModeling` or ViTMAE's masking).
    The grader runs your notebook with **torch, numpy and matplotlib only**: transformers, open_clip,
    peft and `lfd13` are not installed there, so an answer that imports them earns no points.
    Conventions: `B` batch, `L` sequence length (tokens or patches), `D` width, `V` vocabulary size.
    """)
    b.setup()
    b.md("""
    ## Part 1 — BERT's masked-language-model inputs (5 points)

    Each position that is not special is **selected** with probability `mlm_probability`
    (special tokens — `[CLS]`, `[SEP]`, `[PAD]`, marked by `special_tokens_mask` — never are).
    `labels` hold the original id at selected positions and `-100` (ignored by
    `F.cross_entropy`) everywhere else. Of the selected positions, 80 % become `mask_token_id`,
    10 % a uniformly random id in `[0, vocab_size)`, 10 % keep their id: the model must predict
    every selected token, but cannot rely on `[MASK]` being present, which never happens at
    fine-tuning time. Draw every random number from `generator` (so a seeded generator gives
    reproducible results) and do not modify `input_ids`. A Bernoulli draw per position and an
    exact count per sequence are both accepted.
    """)
    b.answer("answer_mask_tokens", '''
    def mask_tokens(input_ids, *, vocab_size, mask_token_id, special_tokens_mask, mlm_probability=0.15,
                    generator=None):
        """BERT's masking: select tokens, then apply the 80/10/10 rule.

        Args:
            input_ids: LongTensor [B, L] of token ids (not modified).
            vocab_size: V; random replacements are drawn uniformly from [0, V).
            mask_token_id: id of [MASK].
            special_tokens_mask: BoolTensor [B, L]; True = never select ([CLS], [SEP], [PAD]).
            mlm_probability: probability that a non-special position is selected.
            generator: torch.Generator for every random draw (None = the global one).

        Returns:
            inputs: LongTensor [B, L], the corrupted ids fed to the model.
            labels: LongTensor [B, L], the original id where selected, -100 elsewhere.
        """
        ### BEGIN SOLUTION
        probs = torch.full(input_ids.shape, float(mlm_probability))
        probs.masked_fill_(special_tokens_mask, 0.0)
        selected = torch.bernoulli(probs, generator=generator).bool()
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))

        inputs = input_ids.clone()
        to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & selected
        inputs[to_mask] = mask_token_id
        # half of the remaining 20 % get a random id, the other half stay unchanged
        to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool()
        to_random &= selected & ~to_mask
        random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
        inputs[to_random] = random_ids[to_random]
        return inputs, labels
        ### END SOLUTION
    ''')
    b.test("mask_tokens_selection", 2, """
    ids = torch.tensor([[1, 10, 11, 12, 13, 2, 0, 0]])
    special = torch.tensor([[True, False, False, False, False, True, True, True]])
    inputs, labels = mask_tokens(ids, vocab_size=50, mask_token_id=4, special_tokens_mask=special,
                                 mlm_probability=1.0, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == ids.shape and labels.shape == ids.shape, "both results have the shape of input_ids"
    assert (labels[special] == -100).all(), "special tokens are never selected"
    assert (labels[~special] == ids[~special]).all(), "with mlm_probability=1 every other token is selected"
    """)
    b.test("mask_tokens_split", 2, """
    ids = torch.randint(100, 200, (64, 64))
    special = torch.zeros_like(ids, dtype=torch.bool)
    inputs, labels = mask_tokens(ids, vocab_size=1000, mask_token_id=4, special_tokens_mask=special,
                                 mlm_probability=1.0, generator=torch.Generator().manual_seed(0))
    share_mask = (inputs == 4).float().mean().item()
    assert 0.75 < share_mask < 0.85, f"about 80 % of selected tokens become [MASK], got {share_mask:.1%}"
    """)
    b.test("mask_tokens_contract", 1, """
    ids = torch.randint(100, 200, (4, 16))
    copy = ids.clone()
    special = torch.zeros_like(ids, dtype=torch.bool)
    a = mask_tokens(ids, vocab_size=1000, mask_token_id=4, special_tokens_mask=special,
                    generator=torch.Generator().manual_seed(1))
    b = mask_tokens(ids, vocab_size=1000, mask_token_id=4, special_tokens_mask=special,
                    generator=torch.Generator().manual_seed(1))
    assert torch.equal(ids, copy), "input_ids must not be modified"
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), "the same seed gives the same result"
    """)
    b.md("### See it work: the 80/10/10 rule measured on a batch")
    b.demo("demo_mask_tokens", """
    ids = torch.randint(1000, 2000, (256, 128))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    try:
        inputs, labels = mask_tokens(ids, vocab_size=30522, mask_token_id=103, special_tokens_mask=special,
                                     generator=torch.Generator().manual_seed(0))
        selected = labels != -100
        masked = selected & (inputs == 103)
        kept = selected & (inputs == ids)
        print(f"selected        {selected.sum() / (~special).sum():6.1%} of the non-special tokens (target 15 %)")
        for name, part in (("[MASK]", masked), ("random", selected & ~masked & ~kept), ("unchanged", kept)):
            print(f"  {name:<12}{part.sum() / selected.sum():6.1%} of the selected")
    except NotImplementedError:
        print("Implement mask_tokens above to see its statistics.")
    """)
    b.md("""
    ## Part 2 — MAE's random patch masking (5 points)

    MAE shuffles the `L` patches of each image independently by sorting random `noise`
    (ascending), keeps the first `L_keep = int(L * (1 - mask_ratio))` and encodes only those.
    `ids_restore` (the argsort of the shuffle) lets the decoder put the patches back in order;
    `mask` marks what the loss is computed on. If `noise` is given, use it (this is how the hidden
    tests compare you with MAE exactly); otherwise draw it uniformly with `generator`.
    Note `int`, not `round`: with `L = 7` and `mask_ratio = 0.75`, `L_keep = 1`.
    """)
    b.answer("answer_random_masking", '''
    def random_masking(x, mask_ratio, *, noise=None, generator=None):
        """MAE's per-sample random masking by sorting noise.

        Args:
            x: [B, L, D] patch embeddings.
            mask_ratio: fraction of patches to remove.
            noise: [B, L] or None; patches with the smallest noise are kept (uniform noise if None).
            generator: torch.Generator used to draw the noise when it is None.

        Returns:
            x_visible: [B, L_keep, D], the kept patches in ascending-noise order, L_keep = int(L * (1 - mask_ratio)).
            mask: [B, L] float, 0 = kept, 1 = removed, in the original patch order.
            ids_restore: [B, L] long; x_shuffled.gather(1, ids_restore) restores the original order.
        """
        ### BEGIN SOLUTION
        B, L, D = x.shape
        keep = int(L * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(B, L, generator=generator)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
        mask = torch.ones(B, L)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_visible, mask, ids_restore
        ### END SOLUTION
    ''')
    b.test("random_masking_exact", 3, """
    x = torch.arange(12.0).reshape(1, 4, 3)
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3]])
    x_visible, mask, ids_restore = random_masking(x, 0.5, noise=noise)
    assert torch.equal(x_visible, x[:, [1, 3]]), "keep the patches with the smallest noise, in that order"
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0]], "mask: 0 = kept, 1 = removed, original order"
    assert ids_restore.tolist() == [[3, 0, 2, 1]], "ids_restore is the argsort of the shuffle"
    """)
    b.test("random_masking_edges", 1, """
    x_visible, mask, _ = random_masking(torch.randn(1, 7, 2), 0.75, noise=torch.rand(1, 7))
    assert x_visible.shape == (1, 1, 2), "L_keep = int(7 * 0.25) = 1"
    assert mask.sum() == 6
    """)
    b.test("random_masking_random", 1, """
    _, m1, _ = random_masking(torch.randn(8, 16, 4), 0.75, generator=torch.Generator().manual_seed(0))
    _, m2, _ = random_masking(torch.randn(8, 16, 4), 0.75, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m1, m2), "the same seed gives the same masks"
    assert (m1.sum(dim=1) == 12).all(), "each sample loses 12 of its 16 patches"
    """)
    b.md("### See it work: a 75 % mask on an image cut into 16 × 16 = 256 patches")
    b.demo("demo_random_masking", """
    import matplotlib.pyplot as plt

    size, p = 64, 4
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    image = torch.stack([xx.abs(), yy.abs(), ((xx**2 + yy**2) < 0.5).float()], dim=-1)  # (H, W, 3)
    patches = image.reshape(size // p, p, size // p, p, 3).permute(0, 2, 1, 3, 4).reshape(1, -1, p * p * 3)
    try:
        visible, mask, ids_restore = random_masking(patches, 0.75, generator=torch.Generator().manual_seed(0))
        shown = patches * (1 - mask)[..., None]
        shown = shown.reshape(size // p, size // p, p, p, 3).permute(0, 2, 1, 3, 4).reshape(size, size, 3)
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        axes[0].imshow(image); axes[0].set_title("image")
        axes[1].imshow(shown); axes[1].set_title(f"encoder sees {visible.shape[1]} of {patches.shape[1]} patches")
        for ax in axes:
            ax.axis("off")
        plt.show()
    except NotImplementedError:
        print("Implement random_masking above to see a masked image.")
    """)
    return b


# ====================================================================== contrastive
def contrastive() -> Builder:
    b = Builder("contrastive")
    b.md("""
    # Assignment 2 — CLIP's contrastive loss, zero-shot classification and retrieval (10 points)

    CLIP (*CLIP* chapter of the course book) embeds images and texts into one space. A batch of `B`
    matching pairs gives a `B × B` matrix of cosine similarities, scaled by a learnable
    `logit_scale`; the loss asks each image to pick its own caption among the `B` (a softmax over
    the row) and each caption its own image (over the column). The same similarities classify
    images "zero-shot" (the class whose prompt embedding is closest) and retrieve captions.

    Use `torch` only (not open_clip's `ClipLoss`). The grader runs your notebook with **torch, numpy and matplotlib only**: transformers, open_clip,
    peft and `lfd13` are not installed there, so an answer that imports them earns no points.
    Conventions: `B` batch, `D` embedding width, `N` images, `C` classes.
    """)
    b.setup()
    b.md("""
    ## Part 1 — the symmetric contrastive loss (5 points)

    L2-normalise both feature sets, form `logits = logit_scale · img @ txtᵀ`, and average the
    cross-entropies of the rows (image → text) and of the columns (text → image), with the diagonal
    as targets. Keep it differentiable with respect to the features **and** `logit_scale` (CLIP
    learns its temperature), and do not modify the inputs.
    """)
    b.answer("answer_clip_loss", '''
    def clip_loss(image_features, text_features, logit_scale):
        """CLIP's symmetric InfoNCE loss.

        Args:
            image_features: [B, D], not normalised; row i is paired with text row i.
            text_features: [B, D], not normalised.
            logit_scale: scalar (tensor or float), the inverse temperature (CLIP starts at 1/0.07).

        Returns:
            A scalar tensor: (CE(image -> text) + CE(text -> image)) / 2.
        """
        ### BEGIN SOLUTION
        img = image_features / image_features.norm(dim=-1, keepdim=True)
        txt = text_features / text_features.norm(dim=-1, keepdim=True)
        logits = logit_scale * img @ txt.T  # (B, B): row = image, column = text
        targets = torch.arange(len(img), device=img.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        ### END SOLUTION
    ''')
    b.test("clip_loss_value", 3, """
    same = torch.eye(3)
    low = clip_loss(same, same, 100.0)
    assert low.dim() == 0, "the loss is a scalar"
    assert low < 1e-3, "perfectly matched pairs with a large scale give a loss near 0"
    assert abs(clip_loss(same, same, 0.0).item() - math.log(3)) < 1e-5, "scale 0: every caption equally likely"
    """)
    b.test("clip_loss_grad", 1, """
    img = torch.randn(4, 8, requires_grad=True)
    scale = torch.tensor(10.0, requires_grad=True)
    clip_loss(img, torch.randn(4, 8), scale).backward()
    assert img.grad is not None and scale.grad is not None, "differentiable in the features and the scale"
    """)
    b.test("clip_loss_edges", 1, """
    img = torch.randn(5, 8)
    copy = img.clone()
    clip_loss(img, torch.randn(5, 8), 1.0)
    assert torch.equal(img, copy), "the inputs are not modified"
    """)
    b.md("""
    ## Part 2 — zero-shot classification (2 points) and retrieval (3 points)

    `zero_shot_classify` returns, for each image, the index of the class text embedding with the
    highest **cosine** similarity. `recall_at_k` is the fraction of images whose own caption (same
    row) is among the `k` captions most similar to the image.
    """)
    b.answer("answer_retrieval", '''
    def zero_shot_classify(image_features, class_text_features):
        """Zero-shot classification by cosine similarity.

        Args:
            image_features: [N, D] image embeddings.
            class_text_features: [C, D] embeddings of one prompt per class ("a photo of a {label}").

        Returns:
            LongTensor [N], the predicted class of each image.
        """
        ### BEGIN SOLUTION
        img = F.normalize(image_features, dim=-1)
        cls = F.normalize(class_text_features, dim=-1)
        return (img @ cls.T).argmax(dim=1)
        ### END SOLUTION


    def recall_at_k(image_features, text_features, k):
        """Image-to-text retrieval recall@k.

        Args:
            image_features: [N, D]; text row i is the caption of image row i.
            text_features: [N, D].
            k: how many of the most similar texts count as retrieved.

        Returns:
            float in [0, 1], the fraction of images whose caption is among their k most similar texts.
        """
        ### BEGIN SOLUTION
        sims = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T  # (N, N)
        top = sims.topk(k, dim=1).indices
        hits = (top == torch.arange(len(sims))[:, None]).any(dim=1)
        return hits.float().mean().item()
        ### END SOLUTION
    ''')
    b.test("zero_shot", 2, """
    classes = torch.tensor([[1.0, 0.0], [0.0, 10.0]])
    images = torch.tensor([[2.0, 1.0], [0.1, 1.0]])
    assert zero_shot_classify(images, classes).tolist() == [0, 1], "cosine similarity, not the dot product"
    """)
    b.test("recall_at_k", 3, """
    img = torch.eye(4)
    txt = torch.eye(4)[[0, 1, 3, 2]]
    assert abs(recall_at_k(img, txt, 1) - 0.5) < 1e-9
    assert abs(recall_at_k(img, txt, 4) - 1.0) < 1e-9
    """)
    b.md("""
    ### See it work: a tiny CLIP trained with your loss

    Synthetic "images" and "captions" are two different noisy views of the same hidden concept.
    Two linear encoders and a learnable `logit_scale` are trained with `clip_loss`; retrieval on
    held-out pairs improves from chance.
    """)
    b.demo("demo_clip", """
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(0)
    concepts = torch.randn(600, 6, generator=gen)
    to_image, to_text = torch.randn(6, 32, generator=gen), torch.randn(6, 24, generator=gen)
    images = concepts @ to_image + 0.3 * torch.randn(600, 32, generator=gen)
    texts = concepts @ to_text + 0.3 * torch.randn(600, 24, generator=gen)
    image_encoder, text_encoder = nn.Linear(32, 16), nn.Linear(24, 16)
    log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [*image_encoder.parameters(), *text_encoder.parameters(), log_scale]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    try:
        test_img, test_txt = images[500:], texts[500:]
        before = recall_at_k(image_encoder(test_img), text_encoder(test_txt), 1)
        losses = []
        for step in range(200):
            batch = torch.randint(0, 500, (64,), generator=gen)
            loss = clip_loss(image_encoder(images[batch]), text_encoder(texts[batch]), log_scale.exp())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            after = recall_at_k(image_encoder(test_img), text_encoder(test_txt), 1)
        plt.figure(figsize=(4, 2.5))
        plt.plot(losses)
        plt.xlabel("step"); plt.ylabel("contrastive loss")
        plt.show()
        print(f"held-out recall@1: {before:.2f} before training, {after:.2f} after (chance: 0.01)")
    except NotImplementedError:
        print("Implement clip_loss and recall_at_k above to train the tiny CLIP.")
    """)
    return b


# ====================================================================== lora
def lora() -> Builder:
    b = Builder("lora")
    b.md("""
    # Assignment 3 — LoRA, parameter-efficient fine-tuning (10 points)

    LoRA (*PEFT* chapter of the course book) freezes a pre-trained weight `W` (`out × in`) and learns
    a low-rank update: `h = W x + (α / r) · B A x`, with `A` (`r × in`) random and `B` (`out × r`)
    zero at the start, so the adapted model starts exactly where the pre-trained one was. Only
    `A` and `B` are trained; after training, `B A` can be **merged** into `W`, so inference costs
    nothing extra.

    Use `torch` only (do not build on peft). The grader runs your notebook with **torch, numpy and matplotlib only**: transformers, open_clip,
    peft and `lfd13` are not installed there, so an answer that imports them earns no points.
    Conventions: `B` batch, `L` length, `D_in`/`D_out` widths, `r` the rank.
    """)
    b.setup()
    b.md("""
    ## Part 1 — a LoRA linear layer (7 points)

    `LoRALinear(base, r=..., alpha=..., dropout=...)` wraps an `nn.Linear`: attributes `base`
    (frozen, weight and bias), `lora_A = nn.Linear(in, r, bias=False)` (any random
    initialisation), `lora_B = nn.Linear(r, out, bias=False)` (zeros), `scaling = alpha / r`,
    `merged` (a bool). `forward(x) = base(x) + lora_B(lora_A(dropout(x))) · scaling`, or `base(x)`
    alone once merged. `merge()` adds `scaling · B A` into `base.weight`; `unmerge()` takes it out.
    Dropout applies to the LoRA branch only.
    """)
    b.answer("answer_lora_linear", '''
    class LoRALinear(nn.Module):
        """A frozen nn.Linear plus a trainable low-rank update (Hu et al., 2021).

        Args:
            base: the pre-trained nn.Linear (D_in -> D_out); frozen here.
            r: rank of the update.
            alpha: scale; the update is multiplied by alpha / r.
            dropout: dropout probability on the input of the LoRA branch.

        forward: x [..., D_in] -> [..., D_out].
        """

        def __init__(self, base: nn.Linear, *, r: int, alpha: float = 1.0, dropout: float = 0.0):
            super().__init__()
            ### BEGIN SOLUTION
            self.base = base
            self.base.requires_grad_(False)
            self.lora_A = nn.Linear(base.in_features, r, bias=False)  # default init: random (Kaiming uniform)
            self.lora_B = nn.Linear(r, base.out_features, bias=False)
            nn.init.zeros_(self.lora_B.weight)
            self.dropout = nn.Dropout(dropout)
            self.scaling = alpha / r
            self.merged = False
            ### END SOLUTION

        def delta_weight(self):
            """scaling · B A, shape [D_out, D_in]."""
            ### BEGIN SOLUTION
            return self.lora_B.weight @ self.lora_A.weight * self.scaling
            ### END SOLUTION

        def forward(self, x):
            ### BEGIN SOLUTION
            out = self.base(x)
            if self.merged:
                return out
            return out + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling
            ### END SOLUTION

        @torch.no_grad()
        def merge(self):
            ### BEGIN SOLUTION
            if not self.merged:
                self.base.weight += self.delta_weight()
                self.merged = True
            ### END SOLUTION

        @torch.no_grad()
        def unmerge(self):
            ### BEGIN SOLUTION
            if self.merged:
                self.base.weight -= self.delta_weight()
                self.merged = False
            ### END SOLUTION
    ''')
    b.test("lora_init", 2, """
    base = nn.Linear(5, 3)
    layer = LoRALinear(base, r=2, alpha=4.0)
    assert layer.lora_A.weight.shape == (2, 5) and layer.lora_B.weight.shape == (3, 2)
    assert (layer.lora_B.weight == 0).all(), "B starts at zero"
    assert layer.scaling == 2.0 and layer.merged is False
    assert not base.weight.requires_grad, "the base layer is frozen"
    """)
    b.test("lora_forward", 2, """
    layer = LoRALinear(nn.Linear(5, 3), r=2, alpha=2.0)
    with torch.no_grad():
        layer.lora_B.weight.fill_(1.0)
    x = torch.randn(4, 5)
    expected = layer.base(x) + x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    assert torch.allclose(layer(x), expected, atol=1e-6)
    """)
    b.test("lora_merge", 2, """
    layer = LoRALinear(nn.Linear(5, 3), r=2)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(4, 5)
    before = layer(x)
    layer.merge()
    assert layer.merged and torch.allclose(layer(x), before, atol=1e-6), "merging does not change the output"
    layer.unmerge()
    assert not layer.merged and torch.allclose(layer(x), before, atol=1e-6)
    """)
    b.test("lora_dropout", 1, """
    layer = LoRALinear(nn.Linear(5, 3), r=2, dropout=0.5)
    layer.eval()
    assert torch.allclose(layer(torch.ones(1, 5)), layer(torch.ones(1, 5))), "no dropout in eval mode"
    """)
    b.md("""
    ## Part 2 — adapting a whole model (3 points)

    `inject_lora(model, target_modules, r=..., alpha=..., dropout=...)` replaces every `nn.Linear`
    whose qualified name (as in `model.named_modules()`) **ends with** one of `target_modules` by a
    `LoRALinear` wrapping it, freezes every other parameter and returns the model.
    `count_parameters(model)` returns `(trainable, total)` numbers of parameters (each counted
    once; buffers are not parameters).
    """)
    b.answer("answer_inject_lora", '''
    def inject_lora(model, target_modules, *, r, alpha=1.0, dropout=0.0):
        """Wrap the targeted nn.Linear layers of `model` in LoRALinear and freeze everything else.

        Args:
            model: any nn.Module.
            target_modules: list of name suffixes, e.g. ["query", "value"].
            r, alpha, dropout: passed to every LoRALinear.

        Returns:
            The same model, modified in place.
        """
        ### BEGIN SOLUTION
        model.requires_grad_(False)
        targets = [name for name, module in model.named_modules()
                   if isinstance(module, nn.Linear) and any(name.endswith(t) for t in target_modules)]
        for name in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, LoRALinear(getattr(parent, child), r=r, alpha=alpha, dropout=dropout))
        return model
        ### END SOLUTION


    def count_parameters(model):
        """Returns (trainable, total): numbers of parameters, each shared parameter counted once."""
        ### BEGIN SOLUTION
        params = list(model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
        ### END SOLUTION
    ''')
    b.test("inject_lora", 2, """
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    inject_lora(model, ["0"], r=1)
    assert isinstance(model[0], LoRALinear) and isinstance(model[2], nn.Linear)
    assert not model[2].weight.requires_grad, "layers that are not targeted are frozen"
    """)
    b.test("count_parameters", 1, """
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert count_parameters(model) == (10, 30)
    """)
    b.md("""
    ### See it work: adapting a "pre-trained" network to a new task

    A small MLP is pre-trained on one regression task, then adapted to a related one either by
    LoRA on its hidden layers or not at all. LoRA trains a few percent of the parameters.
    """)
    b.demo("demo_lora", """
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=gen)
    task_a = torch.sin(x[:, :4].sum(dim=1, keepdim=True))
    task_b = torch.sin(x[:, :4].sum(dim=1, keepdim=True) + 0.5 * x[:, 4:5])

    def fit(model, target, steps, lr=1e-2):
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=lr)
        losses = []
        for _ in range(steps):
            loss = F.mse_loss(model(x), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    net = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1))
    fit(net, task_a, 200)
    try:
        inject_lora(net, ["0", "2"], r=4, alpha=8.0)
        trainable, total = count_parameters(net)
        print(f"LoRA trains {trainable:,} of {total:,} parameters ({trainable / total:.1%})")
        losses = fit(net, task_b, 150)
        plt.figure(figsize=(4, 2.5))
        plt.semilogy(losses)
        plt.xlabel("step"); plt.ylabel("MSE on the new task")
        plt.show()
        for module in net.modules():
            if isinstance(module, LoRALinear):
                module.merge()
        print(f"after merging: MSE {F.mse_loss(net(x), task_b).item():.4f} with plain linear layers' cost")
    except NotImplementedError:
        print("Implement LoRALinear, inject_lora and count_parameters above to adapt the network.")
    """)
    return b


def main() -> None:
    for name in BUILDERS:
        b = globals()[name]()
        print(f"{b.write()}: {b.points} points")


if __name__ == "__main__":
    main()
