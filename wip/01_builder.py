import json, uuid
P='book/01_label_bottleneck.ipynb'
nb=json.load(open(P))
old={c.get('id'):c for c in nb['cells']}
cells=[old['lfd13-setup']]
def md(i, t): cells.append({"cell_type":"markdown","id":i or uuid.uuid4().hex[:8],"metadata":{},"source":t.strip('\n')})
def code(i, t, tags=None):
    meta={"tags":tags} if tags else {}
    cells.append({"cell_type":"code","id":i or uuid.uuid4().hex[:8],"metadata":meta,"source":t.strip('\n'),"outputs":[],"execution_count":None})

md('134fabcd', r'''
# 1. The label bottleneck

Supervised deep learning turns labelled examples into accuracy, at a poor exchange rate.
{footcite:t}`sun2017revisiting` noticed that while computing power and model sizes kept growing, the largest
labelled vision data set stayed at ImageNet's size for about five years. They trained on JFT-300M instead:
300 million images labelled automatically from web signals, about 20 % of the labels wrong. Performance grew
only **logarithmically** with the amount of data: every tenfold increase bought roughly the same gain.

Labels cost money, time and expertise (think of medical images or low-resource languages). This *label
bottleneck* motivates the whole module. In this chapter we measure it ourselves, on a data set small enough
to train on in seconds.

```{admonition} Learning objectives
:class: tip
After this chapter you can
- measure a **label curve**, test accuracy against labelled examples per class, with error bars over seeds;
- fit and read a **log-linear trend**, and see where the curve bends and saturates;
- explain why the bottleneck motivates **self-supervised representation learning** from unlabelled data.
```
''')
code('4038b764', r'''
import math
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import lfd13
from lfd13 import plotting
from lfd13.cnn import DIGITS_CNN_RECIPE, build_digits_cnn
from lfd13.data import labelled_subset, load_digits
from lfd13.evaluation import accuracy_on, compare, train_and_test
from lfd13.report import comparison_table, glue_values, score_table
from lfd13.sampling import subset_indices

device = lfd13.setup(seed=0)
''')
md('bd9e54a1', r'''
## The data: handwritten digits

Scikit-learn comes with {glue:text}`ch1_num_images:,d` grey-scale $8 \times 8$ images of the ten digits.
`load_digits` splits them into a training pool and a test set, the same in every chapter. We also set
aside a small **validation set** from the pool: the learning rate is chosen on it, so the test set is
used only to report.
''')
code('96fc7cd6', r'''
digits = load_digits()
test_set = (digits.x_test, digits.y_test)
val = subset_indices(digits.y_train, 20, seed=1000)            # 20 images per class for choosing the learning rate
rest = torch.ones(len(digits.y_train), dtype=torch.bool)
rest[val] = False
val_set = (digits.x_train[val], digits.y_train[val])
pool_x, pool_y = digits.x_train[rest], digits.y_train[rest]    # the labelled examples are drawn from here
print(f"pool: {tuple(pool_x.shape)}, validation: {tuple(val_set[0].shape)}, test: {tuple(digits.x_test.shape)}")
glue_values("ch1", num_images=len(digits.y_train) + len(digits.y_test), n_val=20)
''')
code('9d4249fc', r'''
first = torch.stack([pool_x[pool_y == c][:6] for c in range(10)], dim=1).flatten(0, 1)
plotting.image_grid(first, ncols=10, size=0.7)
plt.show()
''')
md('b5b0dd3c', r'''
## The experiment: accuracy against labels

We pretend that only $n$ images per class carry a label, for $n \in \{1, 2, 5, 10, 20, 50\}$ and for the
whole pool, and train the same small convolutional network from scratch on each labelled subset. The
network is the package's `build_digits_cnn`, which later chapters train from scratch too:
two $3 \times 3$ convolutions, a pooling, two linear layers.

One point of the curve is one training run: draw the labelled subset, train, test.
''')
code('29ecfe16', r'''
EPOCHS, MIN_STEPS, BATCH = 30, DIGITS_CNN_RECIPE.steps, DIGITS_CNN_RECIPE.batch_size  # AdamW, cosine decay


def recipe_for(n_examples: int, lr: float):
    """EPOCHS passes over the labelled examples, and at least MIN_STEPS steps of BATCH images."""
    steps = max(MIN_STEPS, EPOCHS * math.ceil(n_examples / BATCH))
    return replace(DIGITS_CNN_RECIPE, steps=steps, lr=lr)


def label_curve_point(n_per_class, seed, lr):
    """Train from scratch on n labelled images per class; return (validation accuracy, test accuracy, final loss)."""
    x, y = labelled_subset(pool_x, pool_y, n_per_class, seed=seed)     # x: [10 n, 1, 8, 8], y: [10 n]
    model = build_digits_cnn(seed=seed)
    run = train_and_test(model, (x, y), test_set, recipe_for(len(y), lr), seed=seed, device=device)
    return accuracy_on(model, val_set, device=device), run.accuracy, run.history.last("loss", 20)
''')
md(None, r'''
Which $n$ images get a label is random, so every budget is repeated over three seeds, each a different
subset *and* a different initialisation. Each budget also gets its own learning rate, the one of a small
grid that scores best on the validation set: a fair curve gives every budget the same care.
''')
code(None, r'''
SEEDS, BUDGETS = range(3), [1, 2, 5, 10, 20, 50, None]   # None: every label in the pool


def tuned_point(n_per_class, lrs=(1e-3, 3e-3, 1e-2)):
    """Choose the learning rate by the first seed's validation accuracy, then train every seed at it.

    The grid grows by a factor of 3 past an edge that wins, so the chosen rate is never at its edge."""
    first = {lr: label_curve_point(n_per_class, SEEDS[0], lr) for lr in lrs}
    for _ in range(3):
        best = max(sorted(first), key=lambda lr: first[lr][0])
        if min(first) < best < max(first):
            break
        new = best * 3 if best == max(first) else best / 3
        first[new] = label_curve_point(n_per_class, SEEDS[0], new)
    runs = [first[best]] + [label_curve_point(n_per_class, s, best) for s in SEEDS[1:]]
    return best, [t for _, t, _ in runs], max(loss for _, _, loss in runs)


tuned = {n: tuned_point(n) for n in BUDGETS}
''', ['hide-cell'])
code('e64c6efc', r'''
n_all = len(pool_y) // 10                                    # about this many labels per class in the whole pool
ns = np.array([n or n_all for n in BUDGETS], dtype=float)
acc = np.array([tuned[n][1] for n in BUDGETS])              # [budgets, seeds] test accuracies
mean, sd = acc.mean(axis=1), acc.std(axis=1, ddof=1)
curve = score_table({f"{n or 'all'} per class": tuned[n][1] for n in BUDGETS}, column="test accuracy")
curve["learning rate"] = [f"{tuned[n][0]:.0e}" for n in BUDGETS]
curve
''')
code('0671d5b3', r'''
ax = plotting.plot_label_curve({"small CNN trained from scratch (± sd over seeds)": (ns, mean, sd)})
ax.set_xticks(ns, ["1", "2", "5", "10", "20", "50", f"all\n({n_all})"])
ax.set_ylim(0.5, 1.02)
ax.axhline(1.0, color="0.7", lw=0.8)
ax.legend(loc="lower right")
plt.show()
glue_values("ch1", acc_1=mean[0], acc_10=mean[BUDGETS.index(10)], acc_all=mean[-1], n_all=n_all)
''')
md('4a4a4e6e', r'''
With a single label per class the network reaches {glue:text}`ch1_acc_1:.3f` test accuracy, with ten
{glue:text}`ch1_acc_10:.3f`, and with every label in the pool, about {glue:text}`ch1_n_all` per class,
{glue:text}`ch1_acc_all:.3f`. The first few labels buy a lot; later ones buy less and less.
''')
md(None, r'''
```{dropdown} How this was measured
Each point is the mean of three runs; the error bars and the ± in the table are the sample standard deviation
over those runs, the spread of single runs. A seed draws the labelled subset, initialises the network and
orders the batches. The network trains with AdamW and a cosine learning-rate decay for
{glue:text}`ch1_epochs` passes over its labelled set, and at least {glue:text}`ch1_min_steps` steps.

The learning rate of each budget is chosen from a grid of three values, extended by factors of three
whenever the best one sat at an edge, by the first seed's accuracy on the validation set of
{glue:text}`ch1_n_val` images per class; the other seeds then train at the chosen rate, which the table shows. That validation set has more labels
than the smallest budgets, which a practitioner with one label per class would not have, so the curve
shows what each budget can reach with a well-chosen rate.

Every run fits its labelled set: its final training loss is below {glue:text}`ch1_max_final_loss:.3f`. Whether
longer training would still raise the largest budgets is not checked on this page; on this network the curve's
right end is a property of this recipe.
```
''')
code(None, r'''
glue_values("ch1", epochs=EPOCHS, min_steps=MIN_STEPS, max_final_loss=max(tuned[n][2] for n in BUDGETS))
''', ['remove-cell'])
md('51e767c0', r'''
## A log-linear trend, and where it ends

If accuracy grows logarithmically, then $\text{acc}(n) \approx a + b \log_{10} n$, and $b$ is the gain from
ten times more labels. We fit that line to the small budgets, up to {glue:text}`ch1_fit_max` labels per class,
and look at the gain per tenfold increase between neighbouring budgets.
''')
code('0c68ef94', r'''
FIT_MAX = 20
small = ns <= FIT_MAX
b, a = np.polyfit(np.log10(ns[small]), mean[small], deg=1)          # acc ≈ a + b · log10(n)
per_decade = np.diff(mean) / np.diff(np.log10(ns))                   # gain per tenfold increase, neighbour to neighbour
gains = pd.DataFrame({"from n": ns[:-1].astype(int), "to n": ns[1:].astype(int),
                      "gain per tenfold increase (points)": np.round(100 * per_decade, 1)})
gains.set_index(["from n", "to n"])
''')
code(None, r'''
grid = np.logspace(0, np.log10(n_all), 50)
ax = plotting.plot_label_curve({"small CNN trained from scratch (± sd over seeds)": (ns, mean, sd)})
ax.plot(grid, a + b * np.log10(grid), ls="--", color="0.35", lw=1, label=f"log-linear fit (n ≤ {FIT_MAX})")
ax.axhline(1.0, color="0.7", lw=0.8)
ax.set_xticks(ns, ["1", "2", "5", "10", "20", "50", f"all\n({n_all})"])
ax.set_ylim(0.5, 1.1)
ax.legend(loc="lower right")
plt.show()
i10 = BUDGETS.index(10)
gain_low, gain_high = mean[i10] - mean[0], (mean[-1] - mean[i10]) / np.log10(n_all / 10)
glue_values("ch1", fit_max=FIT_MAX, slope_points=round(100 * b, 1), gain_low_points=round(100 * gain_low, 1),
            gain_high_points=round(100 * gain_high, 1), trend="falls" if gain_high < gain_low else "does not fall",
            overshoot_points=round(100 * (a + b * np.log10(n_all) - mean[-1]), 1),
            saturation_n=round(10 ** ((mean[-1] - a) / b)))
''', ['hide-input'])
md('6f4390d1', r'''
The fitted line rises by **{glue:text}`ch1_slope_points:.1f` accuracy points per tenfold increase**. It is a crude
local summary, not a law: over whole decades the gain {glue:text}`ch1_trend`, from
{glue:text}`ch1_gain_low_points:.1f` points between one and ten labels per class to
{glue:text}`ch1_gain_high_points:.1f` points per decade from ten to the full pool.

Accuracy is capped at one, so no log-linear trend holds for ever. Extrapolated to the full pool, the line
predicts {glue:text}`ch1_overshoot_points:.1f` points more than we measure; it would reach the all-label
accuracy already at about {glue:text}`ch1_saturation_n` labels per class. On this easy task the curve saturates
within the labels we have. On the much harder tasks of {footcite:t}`sun2017revisiting` it had not saturated at
300 million images. Either way, past the first few labels **every extra point of accuracy costs many more
labels than the last one**.
''')
md('bae6687d', r'''
## Learning from unlabelled data

Labelled data are scarce, but **unlabelled data are abundant** in every domain: web pages and books, photos
and videos, speech recordings and podcasts. Even here, at ten labels per class the other
{glue:text}`ch1_unlabelled` images of the pool sit unused.

**Self-supervised representation learning** puts them to work. A *pretext task* manufactures its own labels
from the data, and in solving it a network learns features that can be reused for many downstream tasks,
where a few labels then suffice. The lecture names four families of pretext tasks
{footcite}`ericsson2022ssl`:

| family | the network predicts | example |
|---|---|---|
| transformation prediction | which transformation was applied | the rotation of an image |
| masked prediction | what was hidden | a masked word (BERT), masked patches (MAE) |
| instance discrimination | which views come from the same example | contrastive learning, CLIP |
| clustering | which cluster an example belongs to | DeepCluster |

Contrastive learning is a special case of instance discrimination: two augmented views of one image are
pulled together, views of other images pushed apart. A network pre-trained this way gives a better starting
point for a task with few labels, learns it from less data and in fewer steps, and carries over to tasks and
domains it was not trained on. The {doc}`second part of this chapter <01_pretext_tasks>` builds the four
families on these same digits and measures how much they help at ten labels per class; the rest of the
module scales the idea up to BERT, MAE and CLIP, and then adapts such models with fine-tuning and PEFT.
''')
code(None, r'''
glue_values("ch1", unlabelled=len(pool_y) - 10 * 10)
''', ['remove-cell'])
md('e38812f3', r'''
## Summary

- Test accuracy rises roughly with the logarithm of the number of labels: here by about
  {glue:text}`ch1_slope_points:.1f` points per tenfold more labels up to {glue:text}`ch1_fit_max` per class.
- The curve bends and saturates as accuracy nears its ceiling; before that, each further point costs more
  labels than the last: the **label bottleneck**.
- Unlabelled data are plentiful. Self-supervised pretext tasks turn them into representations that make the
  few labels we have go further.

## Check your understanding

1. According to the fitted trend, how much accuracy would you gain by going from $n = 10$ to $n = 1000$
   labels per class? Why should you not believe that number here?

   ```{dropdown} Answer
   Each tenfold increase adds the same gain $b$, so two of them add $2b$, twice
   {glue:text}`ch1_slope_points:.1f` points. But with ten labels we are already at
   {glue:text}`ch1_acc_10:.3f`, and accuracy cannot exceed one: the curve saturates, as the full-pool point
   shows. A log-linear law is a local description, valid while the task is far from its ceiling.
   ```

2. Why do we repeat each budget over several seeds, and what changes from one seed to the next?

   ```{dropdown} Answer
   With one or two labels per class the result depends strongly on *which* examples happen to be labelled
   and on the random initialisation. Each seed draws a new labelled subset and a new initialisation. The
   error bars show the spread of single runs; whether two settings differ is a question about their means,
   answered by comparing them run for run on the same seeds with an interval for the mean difference.
   ```

3. Why is the learning rate chosen on a validation set and not on the test set?

   ```{dropdown} Answer
   A rate chosen for its test accuracy makes that accuracy an optimistic estimate: the test set would have
   been used to train a choice. Choosing on separate validation images keeps the test set for one purpose,
   reporting. The same holds for the number of steps, the architecture, anything chosen.
   ```

4. Name two domains where unlabelled data are cheap but labels are expensive, and say who would have to
   produce the labels.

   ```{dropdown} Answer
   For example medical imaging (radiologists must annotate scans), speech in low-resource languages (native
   speakers must transcribe), satellite imagery (experts must map land use), legal or scientific text
   (domain experts must read and classify documents).
   ```

**Exercise 5 (code).** Measure a budget the curve skips, thirty labels per class, with `tuned_point`. Where
does it fall: on the fitted line, or on the bent curve between its neighbours?
''')
code('db505518', r'''
# Solution
lr_30, acc_30, _ = tuned_point(30)
on_line = a + b * np.log10(30)
on_curve = np.interp(np.log10(30), np.log10(ns), mean)
print(f"30 labels per class: {np.mean(acc_30):.3f} ± {np.std(acc_30, ddof=1):.3f} (sd over 3 seeds), learning rate {lr_30:.0e}")
print(f"the fitted line predicts {on_line:.3f}; the curve between 20 and 50 labels, {on_curve:.3f}")
nearer = "the bent curve" if abs(np.mean(acc_30) - on_curve) < abs(np.mean(acc_30) - on_line) else "the fitted line"
print(f"Thirty labels per class fall nearer to {nearer} than to the other.")
''', ['hide-cell'])
md('6608526f', r'''
## Going further

````{dropdown} Going further: the same measurement on CIFAR-10
On a real benchmark the data and the model change; the loop, the recipe and the seeds stay. With a GPU and
the internet, for example with CIFAR-10 from torchvision and a ResNet-18 given a CIFAR stem, a $3 \times 3$
first convolution and no max-pool (the ImageNet stem shrinks a $32 \times 32$ image too early), `lfd13.setup`
picks the GPU. A fair curve would also choose the learning rate per budget on a validation split, as above.

```python
import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.transforms import ToTensor

import lfd13
from lfd13.data import labelled_subset
from lfd13.evaluation import train_and_test
from lfd13.train import Recipe

device = lfd13.setup(seed=0)  # cuda if available
train = torchvision.datasets.CIFAR10("data", train=True, download=True, transform=ToTensor())
test = torchvision.datasets.CIFAR10("data", train=False, download=True, transform=ToTensor())
x, y = torch.stack([img for img, _ in train]), torch.tensor(train.targets)
test_set = (torch.stack([img for img, _ in test]), torch.tensor(test.targets))


def cifar_resnet18(seed: int) -> nn.Module:
    """ResNet-18 with a CIFAR stem: a 3x3 stride-1 first convolution and no max-pool."""
    with lfd13.seeded(seed):
        model = torchvision.models.resnet18(num_classes=10)
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


for n in [10, 100, 1000, 5000]:
    recipe = Recipe(steps=max(2000, 40 * 10 * n // 128), lr=1e-3, batch_size=128, weight_decay=5e-4)
    accs = [train_and_test(cifar_resnet18(s), labelled_subset(x, y, n, seed=s), test_set, recipe, seed=s,
                           device=device).accuracy for s in range(3)]
    print(f"{n} labels per class: test accuracy {np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f} (sd over 3 seeds)")
```
````

```{dropdown} Reproduce this chapter
Nothing in this chapter was computed beforehand: every training run on the page runs when the notebook runs,
in about half a minute to a minute and a half on a laptop CPU, the learning-rate search included. The book's
checks re-execute the whole notebook and compare every number with the outputs shown here, within the
noise a different processor can cause. To run it yourself, open it on Colab or Binder, or run
`jupyter lab book/01_label_bottleneck.ipynb` in a clone with `lfd13` installed.
```

## References

Works cited in this chapter (all entries: {doc}`bibliography`):

```{footbibliography}
```
''')
nb['cells']=cells
nb['metadata'].setdefault('lfd13',{})['cited_numbers']=['300','20']
json.dump(nb,open(P,'w'),indent=1,ensure_ascii=False); open(P,'a').write('\n')
