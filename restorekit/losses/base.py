"""The loss contract: ``forward(estimate, reference) -> scalar tensor``, estimate first, always.

Weights are not part of a loss: they live in the config's loss list
(``{name: mel_l1, weight: 45, args: {...}}``) and are applied by :func:`build_losses` users.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class Loss(nn.Module):
    """Base of every registered loss: ``forward(estimate, reference) -> scalar``.

    ``estimate`` is what the model produced, ``reference`` is the target; swapping them is a bug
    that some losses (spectral convergence) do not forgive.
    """

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class GANLoss(Loss):
    """Adversarial loss over a list of discriminator logits (one tensor per sub-discriminator).

    ``generator(fake_logits)`` is the generator's loss; ``discriminator(real_logits, fake_logits)``
    the discriminator's. ``forward(estimate, reference=None)`` is the generator form, so the
    estimate-first contract holds (``estimate`` = logits of generated audio).
    """

    def forward(self, estimate: list[torch.Tensor], reference: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self.generator(estimate)

    def generator(self, fake_logits: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def discriminator(
        self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]
    ) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


@dataclass
class WeightedLoss:
    """A built loss with its config weight; ``name`` is the log key suffix (``loss/<name>``)."""

    name: str
    weight: float
    loss: Loss


def check_same_shape(estimate: torch.Tensor, reference: torch.Tensor, what: str) -> None:
    """A shape mismatch between estimate and reference is a bug in the caller; say which."""
    assert estimate.shape == reference.shape, (
        f"{what}: estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ in shape"
    )
