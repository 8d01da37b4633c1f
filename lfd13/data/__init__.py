"""Data for every chapter, generated or shipped offline.

- :mod:`lfd13.data.digits` — scikit-learn's handwritten digits, a fixed split, few-label subsets.

Other submodules add the coloured-shape images with captions (CLIP), the English
text corpus (BERT) and the labelled text task (fine-tuning, PEFT).
"""

from lfd13.data.corpus import CorpusSplit, Document, load_corpus
from lfd13.data.digits import DigitsSplit, labelled_subset, load_digits
from lfd13.data.newsgroups import TextSplit, load_newsgroups
from lfd13.data.shapes import (
    ShapesConfig,
    ShapesData,
    ShapesSplit,
    compositional_split,
    make_shapes,
)

__all__ = ["CorpusSplit", "Document", "load_corpus", "DigitsSplit", "labelled_subset", "load_digits", "TextSplit", "load_newsgroups", "ShapesConfig", "ShapesData", "ShapesSplit", "compositional_split", "make_shapes"]
