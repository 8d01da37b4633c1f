import json, uuid
P='book/05a_layers.ipynb'
nb=json.load(open(P))
old={c.get('id'):c for c in nb['cells']}
cells=[old['d1e0cac4']]
def md(i, t): cells.append({"cell_type":"markdown","id":i or uuid.uuid4().hex[:8],"metadata":{},"source":t.strip('\n')})
def code(i, t, tags=None):
    meta={"tags":tags} if tags else {}
    cells.append({"cell_type":"code","id":i or uuid.uuid4().hex[:8],"metadata":meta,"source":t.strip('\n'),"outputs":[],"execution_count":None})

md('0f2a8de2', r'''
# 5a. Which layers to transfer

Fine-tuning need not update every layer, and a network for a new task need not take every layer from a
pretrained one. The lecture's slide 22 puts the folklore in two lines: *speech: usually copy the last few
layers; image: usually copy the first few layers.* The reason usually given for both is **where the two
tasks differ**. A vision network's first layers learn general features (edges, blobs, strokes) and its last
layers features specific to its classes; new classes change the output end, so the first layers are the ones
to copy. A speech recogniser that meets new speakers or new acoustic conditions faces a change at the input end
while the sounds to recognise stay the same, so there the last layers are copied and the first retrained.

{footcite:t}`yosinski2014transferable` measured the image half on two halves of ImageNet. Transfer was hurt
by two distinct things: the specialisation of higher layers to their original task, and the difficulty of
training new layers beneath or above copied, *co-adapted* ones. They told the two apart with a control that
copies layers back into a network for the *same* task.

This chapter measures the principle on the book's two modalities: on text, by freezing the bottom or the top
layers of a pretrained encoder; on images, by copying parts of a small CNN into networks for new classes, for
inverted images, and for the same task again.

```{admonition} Learning objectives
:class: tip
After this chapter you can
- freeze the bottom or the top *k* layers of a pretrained transformer and say how much of it is then trained;
- run a Yosinski-style transfer experiment: copy the first or the last blocks of a network into networks for
  tasks that differ at the output, at the input or not at all;
- say what the slide's rule of thumb rests on, and how far these measurements support it.
```
''')
code('a033b0c5', r'''
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import lfd13
from lfd13 import finetune as ft
from lfd13 import plotting
from lfd13.data import load_digits, load_newsgroups
from lfd13.evaluation import accuracy_on, compare, linear_probe
from lfd13.experiments import layer_transfer as exp
from lfd13.pretrained import load_text_encoder, mean_pool
from lfd13.report import comparison_table, glue_values, score_table

device = lfd13.setup(seed=0)
''')
md('e7fd2e9a', r'''
## Text: freezing the bottom or the top layers of MiniLM

The task and encoder of {doc}`05_finetuning`: four newsgroups, a few labelled posts per class, and
all-MiniLM-L6-v2 with a classification head (the *pooler*, a dense layer with tanh on the final [CLS] vector,
then a linear classifier). Freezing is one line: `requires_grad_(False)` on the parameters that stay as they
were. `freeze_bottom_layers(model, k)` freezes the token embeddings and the bottom $k$ transformer layers;
`freeze_top_layers(model, k)` is its mirror image, the slide's recipe for speech.
''')
code('7c6d17bf', r'''
data = load_newsgroups(n_test_per_class=40)
tokenizer, encoder = load_text_encoder(device=device)
ARMS = {name: (end, k) for name, end, k, _ in exp.TEXT_SETTINGS.arms}   # arm -> (which end is frozen, k of 6 layers)
for name, (end, k) in ARMS.items():
    freeze = ft.freeze_bottom_layers if end == "bottom" else ft.freeze_top_layers
    print(f"{name:<22} {ft.parameter_count(freeze(ft.build_sequence_classifier(encoder, num_labels=4), k))}")
''')
md(None, r'''
Freezing the bottom two layers also freezes the embedding table ($30{,}522 \times 384$ weights), which holds
more parameters than all six transformer layers together; freezing the top two leaves it trainable.

Each arm is then fine-tuned on {glue:text}`ft_text_n_per_class` labelled posts per class with one recipe, the
one of {doc}`05_finetuning`, and tested on {glue:text}`ft_text_test_size` posts. These runs were computed once
beforehand and are loaded here; Exercise 1 trains one of them again.
''')
code('0b43833c', r'''
text = exp.load_text()
full = "bottom 0 (full)"
text_table = score_table({arm: accs for arm, accs in text.runs.items()}, column="test accuracy")
text_table.insert(0, "trained", [f"{100 * text.trainable[a]:.1f} %" for a in text.runs])
text_table
''')
code(None, r'''
text_cmp = {arm: compare(text.runs[arm], text.runs[full], test_size=text.n_test) for arm in text.runs if arm != full}
comparison_table({f"{arm} − full": c for arm, c in text_cmp.items()})
''')
code(None, r'''
glue_values("ft", text_n_per_class=exp.TEXT_SETTINGS.n_per_class, text_test_size=text.n_test,
            bottom2_v=text_cmp["bottom 2"].verdict, head_v=text_cmp["bottom 6 (head only)"].verdict,
            bottom2_pct=round(100 * text.trainable["bottom 2"], 1), head_pct=round(100 * text.trainable["bottom 6 (head only)"], 1))
''', ['remove-cell'])
md('da738170', r'''
Freezing the embeddings and the bottom two layers, with {glue:text}`ft_bottom2_pct:.1f` % of the parameters
left to train, scores {glue:text}`ft_bottom2_v` full fine-tuning. Training only the head,
{glue:text}`ft_head_pct:.1f` % of the parameters, scores {glue:text}`ft_head_v` it. A four-topic newsgroup task
changes the output end of the network: its lower layers can stay as they were.
''')
md(None, r'''
```{dropdown} How this was measured
One draw of labelled posts, the first of {doc}`05_finetuning`. Every arm trains for {glue:text}`ft_text_steps`
steps of AdamW at learning rate {glue:text}`ft_text_lr` on batches of {glue:text}`ft_text_batch`: Chapter 5's
recipe for full fine-tuning at this budget, the same for every arm. The arms' learning rates were not searched
one by one: a grid of three per arm triples the runs, more than this chapter was given. So the table compares
what one recipe does with each set of trainable layers. The arm it may treat worst is the head-only one, whose
freshly initialised layers might want a larger rate; the linear probe under "Going further" is its fully
fitted counterpart. With one run per arm, an interval counts only the sampling noise of the
{glue:text}`ft_text_test_size` test posts; the spread between training runs comes on top of it.
```
''')
code(None, r'''
recipe = exp.TEXT_SETTINGS.recipe
glue_values("ft", text_steps=recipe.steps, text_lr=recipe.lr, text_batch=recipe.batch_size)
''', ['remove-cell'])
md('67e95db2', r'''
````{dropdown} Going further: what the head-only arm lacks
Two explanations fit a head-only arm that falls short. The [CLS] vector may hold too little of the post's
topic: all-MiniLM-L6-v2 is a sentence-transformers model {footcite}`reimers2019sentencebert` whose sentence
embedding is the *mean* of its last-layer token vectors, and the pooler on the [CLS] vector plays no part in
that objective. Or the head may be under-trained in a short run.

A linear probe tells the two apart: a logistic regression on the *frozen* encoder's features, fitted to
convergence with its regularisation chosen by cross-validation on the labelled posts. The cell below fits it
on the [CLS] vector, the pooler's output and the token mean, on {glue:text}`ft_probe_draws` draws of labelled
posts, the first being the draw of the fine-tuned arms. The head-only arm, trained on that draw with the
pooler beneath it, scores {glue:text}`ft_head_vs_pooler_v` the probe on the pooler's output on that draw; the
token mean, the embedding the model was trained to produce, scores {glue:text}`ft_mean_vs_cls_v` the [CLS]
vector.
````
''')
code('1405c650', r'''
@torch.no_grad()
def frozen_features(texts: ft.EncodedTexts) -> dict[str, torch.Tensor]:
    """[N, D] features of the frozen encoder: its [CLS] vector, the pooler on it, and the token mean."""
    ids, mask = texts.input_ids.to(device), texts.attention_mask.to(device)
    out = encoder(input_ids=ids, attention_mask=mask)
    return {"[CLS]": out.last_hidden_state[:, 0].cpu(), "pooler": out.pooler_output.cpu(),
            "mean": mean_pool(out.last_hidden_state, mask).cpu()}


PROBE_SEEDS = range(3)  # draws of labelled posts; the first is the fine-tuned arms' draw
test = ft.tokenize_texts(tokenizer, data.test_texts, data.test_labels)
test_features = frozen_features(test)
probe_acc = {name: [] for name in test_features}
for s in PROBE_SEEDS:
    posts = ft.tokenize_texts(tokenizer, *data.train_subset(exp.TEXT_SETTINGS.n_per_class, seed=s))
    for name, features in frozen_features(posts).items():
        probe_acc[name].append(linear_probe(features, posts.labels, test_features[name], test.labels, c="cv"))
head = list(text.runs["bottom 6 (head only)"])
probe_cmp = {"token mean − [CLS]": compare(probe_acc["mean"], probe_acc["[CLS]"]),
             "head-only arm − pooler probe, first draw": compare(head, probe_acc["pooler"][:1], test_size=len(test.labels))}
glue_values("ft", probe_draws=len(PROBE_SEEDS), head_vs_pooler_v=probe_cmp["head-only arm − pooler probe, first draw"].verdict,
            mean_vs_cls_v=probe_cmp["token mean − [CLS]"].verdict)
display(score_table({f"probe on frozen {name}": accs for name, accs in probe_acc.items()}, column="test accuracy"))
comparison_table(probe_cmp)
''', ['hide-cell'])
md('fe1e90a8', r'''
## Images: copying the first or the last blocks of a CNN

A small CNN of three convolution blocks, then global average pooling and a linear head, is trained on the
**source task**: the digits zero to four, with all their labels. Parts of it are copied, frozen, into new
networks for three **target tasks** with {glue:text}`ft_img_n_labels` labelled examples per class:

- *new labels*: the digits five to nine. The images look alike, the classes differ: a change at the output.
- *inverted inputs*: the digits zero to four with every image inverted, $x \mapsto 1 - x$. The classes are
  the same, the inputs differ: a change at the input, the role new speakers play for speech. The source
  network itself scores {glue:text}`ft_img_source_inverted:.3f` on inverted test digits.
- *same task*: the digits zero to four as they are, Yosinski's control. Nothing differs, so whatever a copy
  costs here is not specificity.

Copying is two lines per block: load the source block's weights, and freeze them. The other blocks and the
head start from random weights and are trained.
''')
code('44f9eab2', r'''
digits = load_digits()
TASKS = exp.transfer_tasks(digits)                 # target task -> (labelled pool, test set), labels 0-4
source_cnn, _ = exp.load_source_cnn()              # trained beforehand on the digits 0-4, loaded
target = exp.SmallCNN(num_classes=5, width=exp.SETTINGS.width)
for i in (0, 1):                                   # "copy first 2"
    target.blocks[i].load_state_dict(source_cnn.blocks[i].state_dict())
    target.blocks[i].requires_grad_(False)
for name, p in target.named_parameters():
    print(f"{name:<18} {str(list(p.shape)):<16} {'trained' if p.requires_grad else 'copied, frozen'}")
glue_values("ft_img", n_labels=exp.SETTINGS.n_labels,
            source_inverted=accuracy_on(source_cnn, TASKS["inverted inputs"][1], device=device))
''')
md('5b0f6a3e', r'''
The variants: copying the first two blocks (the slide's rule for images), copying the last two (its rule for
speech, the bottom block learned anew), and as references copying none, which is training from scratch, and
copying all three, frozen, so that only a new head is trained. Each variant runs over several seeds at its own learning rate; the runs were computed
once beforehand and are loaded here.
''')
code('5defdab5', r'''
loaded = exp.load()
RUNS, VARIANTS = exp.SETTINGS.by_task, list(exp.SETTINGS.blocks)   # task -> (variants, seeds); variant names
img_acc = {(task, v): loaded.runs[task][v] for task, (names, _) in RUNS.items() for v in names}
pd.concat({task: score_table({v: img_acc[task, v] for v in names})["accuracy"]
           for task, (names, _) in RUNS.items()}, axis=1).fillna("").rename_axis("blocks copied")
''')
code('fb98972a', r'''
fig, ax = plt.subplots(figsize=(8, 3.4))
bar = 0.8 / len(RUNS)
for j, task in enumerate(RUNS):
    shown = [(i, v) for i, v in enumerate(VARIANTS) if (task, v) in img_acc]
    ax.bar([i + (j - 1) * bar for i, _ in shown], [np.mean(img_acc[task, v]) for _, v in shown], bar,
           yerr=[np.std(img_acc[task, v], ddof=1) for _, v in shown], capsize=2, color=plotting.PALETTE[j], label=task)
ax.axhline(0.2, color="0.4", ls="--", lw=1, label="chance")
ax.set_xticks(range(len(VARIANTS)), VARIANTS)
ax.set_ylabel("target test accuracy")
ax.set_xlabel("blocks copied, frozen, from the CNN trained on digits 0-4")
ax.set_ylim(0, 1.08)
ax.legend(ncol=4, fontsize=8, loc="upper right")
plt.show()
''')
code('4d240d97', r'''
def diff(task, a, b="none (scratch)", task_b=None):
    n = len(RUNS[task_b or task][1])
    return compare(img_acc[task, a][:n] if task_b else img_acc[task, a], img_acc[task_b or task, b])


against_scratch = {
    "new labels: first 2 − scratch": diff("new labels", "first 2"),
    "new labels: last 2 − scratch": diff("new labels", "last 2"),
    "new labels: all (frozen) − scratch": diff("new labels", "all (frozen)"),
    "inverted: first 2 − scratch": diff("inverted inputs", "first 2"),
    "inverted: last 2 − scratch": diff("inverted inputs", "last 2"),
    "inverted: first 2 − last 2": diff("inverted inputs", "first 2", "last 2"),
    "same task: first 2 − scratch": diff("same task", "first 2"),
    "same task: last 2 − scratch": diff("same task", "last 2"),
}
comparison_table(against_scratch)
''')
code(None, r'''
v = {k: c.verdict for k, c in against_scratch.items()}
glue_values("ft_img", new_first2_v=v["new labels: first 2 − scratch"], new_last2_v=v["new labels: last 2 − scratch"],
            inv_first2_v=v["inverted: first 2 − scratch"], inv_last2_v=v["inverted: last 2 − scratch"],
            inv_flip_v=v["inverted: first 2 − last 2"], same_first2_v=v["same task: first 2 − scratch"],
            same_last2_v=v["same task: last 2 − scratch"])
''', ['remove-cell'])
md('a83446a3', r'''
**New labels.** Copying the first two blocks scores {glue:text}`ft_img_new_first2_v` training from scratch;
copying the last two scores {glue:text}`ft_img_new_last2_v` it.

**Inverted inputs.** If the principle held in its simple form, the ranking would flip here. It does not:
copying the first two blocks scores {glue:text}`ft_img_inv_flip_v` copying the last two, on inverted digits as
on new classes.

**The control.** On the unchanged task, copying the first two blocks scores {glue:text}`ft_img_same_first2_v`
scratch, and copying the last two {glue:text}`ft_img_same_last2_v` it. Nothing changed between source and
target, so what the copy of the last two loses is not specificity: it is the cost of splitting co-adapted
blocks. A new bottom block, trained from random weights on a few labels per class, must learn to produce what
the frozen top was trained to receive.
''')
md(None, r'''
### Where the specificity sits

Yosinski et al. read the difference between a copy on its own task and the same copy on a changed task as the
copied layers' *specificity*. The table puts each copy on the unchanged task against the same copy on a changed
one, pairing runs seed by seed.
''')
code(None, r'''
specificity = {
    "first 2: same task − new labels": diff("same task", "first 2", "first 2", task_b="new labels"),
    "first 2: same task − inverted": diff("same task", "first 2", "first 2", task_b="inverted inputs"),
    "last 2: same task − new labels": diff("same task", "last 2", "last 2", task_b="new labels"),
    "last 2: same task − inverted": diff("same task", "last 2", "last 2", task_b="inverted inputs"),
    "all (frozen): inverted − new labels": diff("inverted inputs", "all (frozen)", "all (frozen)", task_b="new labels"),
}
spec = {k: c.verdict for k, c in specificity.items()}
glue_values("ft_img", spec_first2_new=spec["first 2: same task − new labels"],
            spec_first2_inv=spec["first 2: same task − inverted"],
            spec_first2_new_pts=round(100 * specificity["first 2: same task − new labels"].difference, 1),
            spec_top_v=spec["all (frozen): inverted − new labels"])
comparison_table(specificity)
''')
md('5pec0001', r'''
On their own task, the copied first two blocks score {glue:text}`ft_img_spec_first2_new` what they score for new
labels, by {glue:text}`ft_img_spec_first2_new_pts:.1f` points, and {glue:text}`ft_img_spec_first2_inv` what they
score for inverted inputs. With every block frozen, the network for inverted digits of the source classes scores
{glue:text}`ft_img_spec_top_v` the one for new classes.

The all-frozen comparison is the evidence that the top blocks are specific to the source classes. It does not
show that specificity sits *only* at the top: where the copy of the first two blocks scores less on a changed
task than on its own, those blocks are measurably specific to their source task too, even if they remain the
better blocks to copy.
''')
md(None, r'''
```{dropdown} How this was measured
The source network trained for {glue:text}`ft_img_source_steps` steps on every training image of the digits zero
to four. Every target network trains for {glue:text}`ft_img_steps` steps of AdamW on
{glue:text}`ft_img_n_labels` labelled examples per class. Its learning rate is chosen per task and variant: a grid
of three values, extended by factors of three until the best is not at an edge, scored by the mean accuracy over
the seeds on {glue:text}`ft_img_n_val` validation examples per class, drawn from the task's pool apart from the
labelled ones. The chosen rates are in the table below. A seed draws the labelled and validation examples and
initialises the new blocks and the head; each variant runs over {glue:text}`ft_img_seeds` seeds, the control
over {glue:text}`ft_img_control_seeds`, since its differences are smaller. Two variants are compared seed by
seed, with Student's t interval on the paired differences. These trainings were computed once beforehand;
the cell below runs one variant again, copying the first two blocks for inverted digits, for every seed.
```
''')
code('37ff83e3', r'''
pd.DataFrame(loaded.lr).map(lambda lr: f"{lr:.0e}", na_action="ignore").fillna("").rename_axis("chosen learning rate")
''', ['hide-cell'])
code(None, r'''
transfer = partial(exp.transfer_accuracy, source_cnn, TASKS, device=device)  # transfer(task, blocks, seed, lr=...)
lr_inv = loaded.lr["inverted inputs"]["first 2"]
here = [transfer("inverted inputs", exp.SETTINGS.blocks["first 2"], s, lr=lr_inv) for s in RUNS["inverted inputs"][1]]
pd.DataFrame({"run here": here, "computed beforehand": img_acc["inverted inputs", "first 2"]},
             index=pd.Index(RUNS["inverted inputs"][1], name="seed")).round(3)
''', ['hide-cell'])
code(None, r'''
glue_values("ft", img_seconds=round(loaded.seconds), text_seconds=round(text.seconds))
glue_values("ft_img", source_steps=exp.SETTINGS.source_recipe.steps, steps=exp.SETTINGS.target_recipe.steps,
            n_val=exp.SETTINGS.n_val, seeds=len(RUNS["new labels"][1]), control_seeds=len(RUNS["same task"][1]))
''', ['remove-cell'])
md('48c2dbe6', r'''
## Summary

- Freezing layers is the simplest parameter-efficient fine-tuning: `requires_grad_(False)` on what stays.
- On the newsgroup task, which changes the output end, freezing MiniLM's embeddings and bottom two layers
  scores {glue:text}`ft_bottom2_v` full fine-tuning while training {glue:text}`ft_bottom2_pct:.0f` % of the
  parameters.
- On digits, copying the first two blocks scores {glue:text}`ft_img_new_first2_v` training from scratch for new
  classes and {glue:text}`ft_img_inv_first2_v` it for inverted inputs. Copying the last two scores
  {glue:text}`ft_img_same_last2_v` scratch even on the unchanged task: a co-adaptation cost, not specificity.
- Specificity shows where a copy scores less on a changed task than on its own; the slide's rule is a rule of
  thumb about where the *largest* change is.
- {doc}`06_peft` covers LoRA and prompt tuning, which adapt every layer while training few parameters.

## Check your understanding

1. Why does freezing the bottom layers also save computation and memory during training, not only optimiser
   state?

   ```{dropdown} Answer
   No gradient has to flow beneath the lowest trainable layer, so the backward pass stops there and the
   activations of the frozen layers need not be stored for it. The forward pass still runs through every
   layer. Freezing the *top* layers saves much less: the gradient must pass through them to reach the
   trainable layers below.
   ```

2. In the same-task control, copying the last two blocks scores {glue:text}`ft_img_same_last2_v` training from
   scratch, although source and target tasks are identical. Where can a cost come from, and what would you
   change to reduce it?

   ```{dropdown} Answer
   The copied top blocks were trained on the features the source network's own bottom block produces. The new
   bottom block starts from random weights and must learn, from a few labels per class, to produce features
   that fit the frozen top: the co-adaptation Yosinski et al. describe. More labelled examples or more steps,
   or initialising the bottom block from the source network as well and fine-tuning it, give it a better
   chance; each is a change to `exp.Settings` that you can measure.
   ```

3. `freeze_top_layers(model, 2)` trains far more of MiniLM's parameters than `freeze_bottom_layers(model, 2)`.
   Why?

   ```{dropdown} Answer
   `freeze_bottom_layers` freezes the token embeddings along with the bottom layers; `freeze_top_layers` keeps
   them trainable, since they sit at the bottom. The embedding table holds more parameters than all of the
   transformer layers together.
   ```

## Exercises

**Exercise 1 (code).** Fine-tune MiniLM with `freeze_top_layers(model, 2)`, the slide's recipe for speech, on
the draw and with the recipe of the text arms, and compare it with
`freeze_bottom_layers(model, 2)` using `compare(..., test_size=...)`. Which end of the encoder does the
newsgroup task change, and does the result fit the principle?
''')
code(None, r'''
# Solution
lr_top = text.lr["top 2"]
val_acc, top2_here, trained = exp.text_run(encoder, tokenizer, data, test, "top", 2, lr_top, seed=0, device=device)
top_vs_bottom = compare([top2_here], text.runs["bottom 2"], test_size=len(test.labels))
print(f"top 2 frozen, trained here at learning rate {lr_top:.0e}: test accuracy {top2_here:.3f} "
      f"(computed beforehand: {text.runs['top 2'][0]:.3f}), {100 * trained:.1f} % of the parameters trained")
print(f"bottom 2 frozen: {text.runs['bottom 2'][0]:.3f}; top 2 minus bottom 2: {top_vs_bottom}")
print("The newsgroup task keeps the language and changes the classes, so it changes the output end.")
print(f"Freezing the top two layers scores {top_vs_bottom.verdict} freezing the bottom two, "
      f"while training {100 * trained:.0f} % rather than {100 * text.trainable['bottom 2']:.0f} % of the weights.")
''', ['hide-cell'])
md('6b8266f9', r'''
**Exercise 2 (code).** The inversion $x \mapsto 1 - x$ can be undone inside the first convolution. For a filter
$w$ with bias $b$, the filter $-w$ with bias $b + \sum w$ gives on $1 - x$ the response that $w$ and $b$ give on
$x$, away from the border where the zero padding differs. Write an `edit` function that rewrites the copied
first block this way, run `transfer("inverted inputs", (0, 1), seed, lr=..., edit=...)` for every seed, and
compare the result with copying the first two blocks unchanged. What does the result say about where the
inverted-digits task differs from the source task?
''')
code('f85d45e5', r'''
# Solution
@torch.no_grad()
def undo_inversion(model: exp.SmallCNN) -> None:
    """Rewrite the first convolution so that on 1 - x it computes what it computed on x (away from the border)."""
    conv = model.blocks[0][0]
    conv.bias += conv.weight.sum(dim=(1, 2, 3))  # (-w) * (1 - x) + b + sum(w) = w * x + b
    conv.weight.neg_()


seeds = RUNS["inverted inputs"][1]
rewritten = [transfer("inverted inputs", (0, 1), s, lr=lr_inv, edit=undo_inversion) for s in seeds]
fixed = compare(rewritten, img_acc["inverted inputs", "first 2"])
print(f"inverted digits, copy first 2 as it is:  {np.mean(img_acc['inverted inputs', 'first 2']):.3f}")
print(f"inverted digits, copy first 2 rewritten: {np.mean(rewritten):.3f}")
print(f"same task,       copy first 2:           {np.mean(img_acc['same task', 'first 2'][:len(seeds)]):.3f}")
print("rewritten minus as it is:", fixed)
print(f"Undoing the inversion in the first layer alone scores {fixed.verdict} the unchanged copy: "
      "the inverted task differs from the source at the input end.")
''', ['hide-cell'])
md('12b138a1', r'''
````{dropdown} Going further: the same freezing on a larger encoder
The same freezing on a larger hub encoder and a GPU:

```python
import lfd13
from lfd13 import finetune as ft
from lfd13.data import load_newsgroups
from lfd13.train import Recipe

device = lfd13.setup(seed=0)  # picks the GPU
data = load_newsgroups()
tokenizer, model = ft.load_classifier(num_labels=data.num_classes, name="bert-base-uncased", device=device)
ft.freeze_bottom_layers(model, 8)  # the embeddings and 8 of the 12 layers frozen
print(ft.parameter_count(model))
train = ft.tokenize_texts(tokenizer, *data.train_subset(64, seed=0), max_length=256)
recipe = Recipe(steps=300, lr=5e-5, batch_size=32, weight_decay=0.01, warmup=30, max_grad_norm=1.0)
ft.train_classifier(model, train, recipe, seed=0, device=device)
test = ft.tokenize_texts(tokenizer, data.test_texts, data.test_labels, max_length=256)
print(ft.evaluate_accuracy(model, test, device=device))
# the mirror image: ft.freeze_top_layers(model, 4) keeps the top 4 layers fixed
```

Choose its learning rate per arm on a validation split, as the arms above were.
````

```{dropdown} Reproduce this chapter
Two sets of results were computed once beforehand and are loaded by this page:

- the source CNN and every image transfer run, with the learning-rate search, by
  `python -m lfd13.recreate transfer` (about {glue:text}`ft_img_seconds` s when last made);
- the text arms with their learning-rate search, by `python -m lfd13.recreate transfer-text`
  (about {glue:text}`ft_text_seconds` s).

The page checks them by running parts again: copying the first two blocks for inverted digits, for every seed,
printed beside the loaded accuracies, and the text arm with the top two layers frozen, in Exercise 1. The book's checks
re-execute every chapter and compare its outputs with the ones shown here.
```

## References

Works cited in this chapter (all entries: {doc}`bibliography`):

```{footbibliography}
```
''')
nb['cells']=cells
json.dump(nb,open(P,'w'),indent=1,ensure_ascii=False); open(P,'a').write('\n')
