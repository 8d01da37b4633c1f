"""Plots: one consistent matplotlib style for the whole book.

Every figure of the book is drawn by a function here or by a few lines of
matplotlib in a chapter, always after :func:`use_style` (from :mod:`lfd13.style`, which
:func:`lfd13.setup` applies). Functions take an
optional ``ax`` so that chapters can compose panels, and return the axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch

from lfd13.style import PALETTE, STYLE, use_style

if TYPE_CHECKING:
    from lfd13.train import History

__all__ = ["PALETTE", "STYLE", "bar_chart", "image_grid", "plot_history", "plot_label_curve", "similarity_matrix", "use_style"]

def _ax(ax: plt.Axes | None, figsize: tuple[float, float] | None = None) -> plt.Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def image_grid(
    images: torch.Tensor | np.ndarray,
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cmap: str | None = None,
    size: float = 1.1,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> plt.Figure:
    """Show images in a grid.

    Args:
        images: [N, H, W], [N, 1, H, W] or [N, 3, H, W] with values in [vmin, vmax].
        ncols: images per row.
        titles: one small title per image.
        row_labels: one label per row, written on the left.
        cmap: colour map for single-channel images (default: the style's ``gray_r``).
        size: inches per image.
        vmin, vmax: value range of single-channel images.
    """
    imgs = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, dtype=float)
    if imgs.ndim == 4:
        if imgs.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N, 1|3, H, W] or [N, H, W], got {imgs.shape}")
        imgs = imgs[:, 0] if imgs.shape[1] == 1 else imgs.transpose(0, 2, 3, 1).clip(0, 1)
    elif imgs.ndim != 3:
        raise ValueError(f"images must be [N, 1|3, H, W] or [N, H, W], got {imgs.shape}")
    n = len(imgs)
    if n == 0:
        raise ValueError("no images to show")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.25 * nrows if titles else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for s in ax.spines.values():
            s.set_visible(False)
        if i < n:
            ax.imshow(imgs[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    head = np.cumsum(v[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(v, kernel, mode="valid")])


def plot_history(
    history: History | Mapping[str, History],
    *,
    metric: str = "loss",
    smooth: int = 20,
    ax: plt.Axes | None = None,
    logy: bool = False,
    xlabel: str = "step",
) -> plt.Axes:
    """Learning curve(s) of ``metric`` against the step, smoothed by a running mean.

    Args:
        history: one :class:`~lfd13.train.History`, or ``{label: history}`` to compare runs.
        metric: which recorded metric to draw.
        smooth: running-mean window in steps (1 = raw).
        ax: axes to draw on (default: a new figure).
        logy: logarithmic y axis.
        xlabel: label of the x axis.
    """
    ax = _ax(ax)
    runs = history if isinstance(history, Mapping) else {metric: history}
    for label, h in runs.items():
        ax.plot(h.step, _smooth(h[metric], smooth), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    if logy:
        ax.set_yscale("log")
    if len(runs) > 1:
        ax.legend()
    return ax


def bar_chart(
    values: Mapping[str, float],
    *,
    errors: Mapping[str, float] | None = None,
    ax: plt.Axes | None = None,
    ylabel: str = "",
    reference: float | None = None,
    reference_label: str = "chance",
    fmt: str = "{:.2f}",
    horizontal: bool = False,
) -> plt.Axes:
    """Bars with optional error bars, value labels and a dashed reference line.

    Args:
        values: label -> value, drawn in the given order.
        errors: label -> half-width of the error bar (e.g. a standard deviation).
        ax: axes to draw on.
        ylabel: the value axis label.
        reference: draw a dashed line at this value (e.g. chance level).
        reference_label: legend text of the reference line.
        fmt: format of the value labels.
        horizontal: horizontal bars (for long labels).
    """
    ax = _ax(ax)
    labels = list(values)
    heights = [values[k] for k in labels]
    errs = [errors.get(k, 0.0) for k in labels] if errors else None
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(labels))]
    if horizontal:
        bars = ax.barh(labels, heights, xerr=errs, color=colours, capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
        ax.grid(axis="y", visible=False)
    else:
        bars = ax.bar(labels, heights, yerr=errs, color=colours, capsize=3)
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
        if max(len(s) for s in labels) > 8:
            plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    ax.bar_label(bars, labels=[fmt.format(h) for h in heights], padding=2, fontsize=8)
    if reference is not None:
        (ax.axvline if horizontal else ax.axhline)(reference, color="0.4", ls="--", lw=1, label=reference_label)
        ax.legend(loc="lower right" if not horizontal else "upper right")
    return ax


def plot_label_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    *,
    ax: plt.Axes | None = None,
    xlabel: str = "labelled examples per class (log scale)",
    ylabel: str = "test accuracy",
) -> plt.Axes:
    """Accuracy against the number of labels, on a log-scaled x axis, with ± std bands.

    Args:
        curves: label -> ``(n, mean, std)`` sequences of equal length.
        ax: axes to draw on.
    """
    ax = _ax(ax)
    for label, (n, mean, std) in curves.items():
        n, mean, std = (np.asarray(a, dtype=float) for a in (n, mean, std))
        (line,) = ax.plot(n, mean, marker="o", label=label)
        ax.fill_between(n, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def similarity_matrix(
    sim: torch.Tensor | np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = False,
    cmap: str = "viridis",
) -> plt.Axes:
    """A heat map of a [N, M] similarity matrix with optional labels and values."""
    s = sim.detach().cpu().float().numpy() if isinstance(sim, torch.Tensor) else np.asarray(sim, dtype=float)
    if s.ndim != 2:
        raise ValueError(f"sim must be 2-D [N, M], got shape {s.shape}")
    ax = _ax(ax)
    im = ax.imshow(s, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), col_labels, fontsize=8, rotation=45, ha="right")
    if annotate:
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                ax.text(j, i, f"{s[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w" if s[i, j] < s.mean() else "k")
    return ax
