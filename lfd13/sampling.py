"""Few-label sampling: which labelled examples a run may use.

Every chapter that measures *data efficiency* trains or probes on ``n`` labelled examples
per class, drawn at random with a seed; this module is the one place that draws them, for
images and texts alike. A leaf module: it imports nothing from lfd13.
"""

from __future__ import annotations

import torch

__all__ = ["split_indices", "subset_indices"]


def subset_indices(labels: torch.Tensor, n_per_class: int | None, *, seed: int) -> torch.Tensor:
    """Indices of ``n_per_class`` examples of every class, drawn at random.

    Args:
        labels: [N] integer class labels.
        n_per_class: examples to keep per class; ``None`` keeps everything.
        seed: seed of the draw; the same seed gives the same subset.

    Returns:
        [n_per_class · C] long indices into ``labels``, sorted.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {tuple(labels.shape)}")
    if n_per_class is None:
        return torch.arange(len(labels))
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1 (or None for all), got {n_per_class}")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if n_per_class > len(members):
            raise ValueError(
                f"n_per_class={n_per_class} but class {c} has only {len(members)} examples; "
                f"ask for at most {len(members)} or pass None to use all"
            )
        chosen.append(members[torch.randperm(len(members), generator=g)[:n_per_class]])
    return torch.sort(torch.cat(chosen)).values


def split_indices(
    labels: torch.Tensor, n_per_class: int, n_val_per_class: int, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A few-label training subset and a disjoint validation subset, drawn together.

    The training part is exactly ``subset_indices(labels, n_per_class, seed=seed)``; the
    validation part is the next ``n_val_per_class`` examples of every class in the same random
    order, so it never overlaps the training part. Hyperparameters (steps, learning rate,
    regularisation) are chosen on it, and the test set is used once.

    Returns:
        ``(train [n_per_class · C], validation [n_val_per_class · C])`` long indices, each sorted.
    """
    if n_per_class < 1 or n_val_per_class < 1:
        raise ValueError(f"n_per_class and n_val_per_class must be >= 1, got {n_per_class} and {n_val_per_class}")
    g = torch.Generator().manual_seed(seed)  # the same draw as subset_indices
    train, val = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if n_per_class + n_val_per_class > len(members):
            raise ValueError(
                f"class {c} has {len(members)} examples, fewer than n_per_class + n_val_per_class = "
                f"{n_per_class} + {n_val_per_class}; ask for fewer"
            )
        order = members[torch.randperm(len(members), generator=g)]
        train.append(order[:n_per_class])
        val.append(order[n_per_class : n_per_class + n_val_per_class])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values
