"""lfd13: companion package for *Learning From Data*, Lecture 13.

Deep representation learning and foundation models: the label bottleneck,
self-supervised pretext tasks, BERT, MAE, CLIP, supervised fine-tuning and
parameter-efficient fine-tuning. Each module holds one concept that the book's
chapters share; the notebooks import from here, never the reverse.

The one call every notebook starts with::

    import lfd13
    device = lfd13.setup(seed=0)
"""

from lfd13.runtime import get_device, make_generator, seed_everything, setup

__all__ = ["get_device", "make_generator", "seed_everything", "setup", "__version__"]
__version__ = "0.1.0"
