"""What training holds in memory besides the weights: gradients and the optimiser's state, measured.

Full fine-tuning keeps a gradient and two AdamW moments for every weight; LoRA and prompt tuning
only for the few weights they train. :func:`training_memory` measures those bytes on real tensors
with one optimiser step that changes nothing (learning rate 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from lfd13.finetune import sequence_classification_step

__all__ = ["TrainingMemory", "optimizer_state_bytes", "training_memory"]


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes that training needs besides the frozen weights, measured on real tensors."""

    weights: int  # all parameters of the model
    trainable: int  # the parameters the optimiser updates
    gradients: int  # their .grad tensors after a backward pass
    optimizer_state: int  # the optimiser's state tensors (AdamW: first and second moments)

    @property
    def training_extra(self) -> int:
        """Gradients plus optimiser state: what full fine-tuning pays per trainable weight."""
        return self.gradients + self.optimizer_state


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in ``optimizer.state`` (e.g. AdamW's ``exp_avg``, ``exp_avg_sq``)."""
    return _nbytes(v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor))


def training_memory(model: nn.Module, batch: tuple[torch.Tensor, ...], *,
                    step: Callable[[nn.Module, tuple[torch.Tensor, ...]], object] = sequence_classification_step,
                    device: torch.device | str | None = None) -> TrainingMemory:
    """Measure gradient and AdamW-state memory with one real optimiser step that changes nothing.

    The step uses ``lr=0`` and no weight decay, so the weights stay as they were; the
    gradients are cleared afterwards.

    Args:
        model: the model as it would be trained (frozen parameters have ``requires_grad=False``).
        batch: one training batch, e.g. ``(input_ids [B, L], attention_mask [B, L], labels [B])``.
        step: turns ``(model, batch)`` into a loss or ``{"loss": …}`` (default: classification).
        device: where to run (default: the model's device).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters, so training needs no optimiser memory")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch = tuple(t.to(device) for t in batch)
    optimizer = torch.optim.AdamW(params, lr=0.0, weight_decay=0.0)
    was_training = model.training
    model.train()
    out = step(model, batch)
    loss = out["loss"] if isinstance(out, dict) else out
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[union-attr]
    gradients = _nbytes(p.grad for p in params if p.grad is not None)
    optimizer.step()
    state = optimizer_state_bytes(optimizer)
    optimizer.zero_grad(set_to_none=True)
    model.train(was_training)
    unique = {id(p): p for p in model.parameters()}
    return TrainingMemory(weights=_nbytes(unique.values()), trainable=_nbytes(params), gradients=gradients,
                          optimizer_state=state)
