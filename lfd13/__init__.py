"""lfd13: companion package for *Learning From Data*, Lecture 13.

Deep representation learning and foundation models: the label bottleneck,
self-supervised pretext tasks, BERT, MAE, CLIP, supervised fine-tuning and
parameter-efficient fine-tuning. Each module holds one concept that the book's
chapters share; the notebooks import from here, never the reverse.

The one call every notebook starts with::

    import lfd13
    device = lfd13.setup(seed=0)

The modules are layered; a module imports only from lower layers (and from its own
subpackage), never from its own layer or above, so there is no import cycle
(``tests/unit/test_layers.py`` checks it):

0. :mod:`~lfd13.style`, :mod:`~lfd13.sampling`, :mod:`~lfd13.shipped` — leaves: plot style,
   few-label sampling, the one format of shipped checkpoints and results;
1. :mod:`~lfd13.runtime`, :mod:`~lfd13.optim` — device, seeds, threads, preset lookup, the ignored label;
   the recipe, AdamW and its schedule;
2. :mod:`~lfd13.data`, :mod:`~lfd13.train`, :mod:`~lfd13.pretrained`, :mod:`~lfd13.hub`, :mod:`~lfd13.plotting`,
   :mod:`~lfd13.report` — data sets, the training loop and recipes, loading pretrained and hub models, figures,
   a comparison's numbers as a small table on a page;
3. :mod:`~lfd13.evaluation`, :mod:`~lfd13.cnn` — probes and few-label experiments; the small digits CNN;
4. :mod:`~lfd13.pretext`, :mod:`~lfd13.mlm`, :mod:`~lfd13.mae`, :mod:`~lfd13.clip`, :mod:`~lfd13.finetune`,
   :mod:`~lfd13.sft` — one concept each (pretext tasks, masked language modelling, masked autoencoders,
   contrastive image-text pre-training, supervised fine-tuning, instruction tuning);
5. :mod:`~lfd13.peft_tools`, :mod:`~lfd13.memory` — LoRA and prompt tuning on top of fine-tuning; what training holds in memory;
6. :mod:`~lfd13.experiments` — one module per experiment a chapter shows: its settings, ``run`` and ``load``;
7. :mod:`~lfd13.recreate` — the table of commands that recreate every shipped file.

Concept modules name no chapter; an experiment module says which chapter shows it.
"""

from lfd13.runtime import get_device, make_generator, seed_everything, seeded, setup

__all__ = ["get_device", "make_generator", "seed_everything", "seeded", "setup", "__version__"]
__version__ = "0.1.0"
