"""The book's matplotlib style: one colour cycle and one set of rcParams for every figure.

A leaf module (it imports nothing from lfd13), so that :func:`lfd13.setup` can apply the
style without importing the plotting functions.
"""

from __future__ import annotations

import matplotlib as mpl

__all__ = ["PALETTE", "STYLE", "use_style"]

#: Colour cycle (Okabe–Ito, readable with colour-vision deficiencies).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "font.size": 10,
    "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
    "image.cmap": "gray_r",
    # deterministic SVG/PNG output: no random ids, no timestamps
    "svg.hashsalt": "lfd13",
}


def use_style() -> None:
    """Apply the book's style to every later figure."""
    mpl.rcParams.update(STYLE)
