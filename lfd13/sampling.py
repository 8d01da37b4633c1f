"""Few-label sampling: which labelled examples a run may use.

Every chapter that measures *data efficiency* trains or probes on ``n`` labelled examples
per class, drawn at random with a seed; this module is the one place that draws them, for
images and texts alike. A leaf module: it imports nothing from lfd13.
"""

from __future__ import annotations

import torch


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
