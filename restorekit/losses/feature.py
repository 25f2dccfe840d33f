"""Losses on SSL feature sequences (the Miipher-2 feature cleaner's objective)."""
from __future__ import annotations

import torch

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import Loss, check_same_shape

_REDUCTIONS = ("mean", "sum")


@LOSSES.register("miipher_feature_loss")
class MiipherFeatureLoss(Loss):
    """L1 + L2 + spectral convergence between feature sequences (B, frames, dim) -> scalar.

    As in Miipher-2: predicted clean SSL features (estimate) against the features of the clean
    recording (reference). ``reduction="mean"`` averages the L1 and L2 terms over every element
    (the scale does not depend on sequence length or feature size); ``"sum"`` sums them over all
    elements and divides by the batch size only. Spectral convergence
    ``||reference - estimate||_F / ||reference||_F`` is a ratio per utterance, averaged over the
    batch, under either reduction.
    """

    def __init__(self, reduction: str = "mean", eps: float = 1e-8) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ConfigError(
                f"miipher_feature_loss: reduction '{reduction}' is not supported; use one of {_REDUCTIONS}"
            )
        self.reduction = reduction
        self.eps = eps

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        check_same_shape(estimate, reference, "miipher_feature_loss")
        diff = estimate - reference
        if self.reduction == "mean":
            l1, l2 = diff.abs().mean(), diff.square().mean()
        else:
            l1, l2 = diff.abs().sum() / diff.shape[0], diff.square().sum() / diff.shape[0]
        return l1 + l2 + spectral_convergence(estimate, reference, self.eps)


def spectral_convergence(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-item ``||ref - est||_F / ||ref||_F`` over all but the batch axis, averaged over the batch."""
    diff = (reference - estimate).flatten(1).norm(dim=1)
    ref = reference.flatten(1).norm(dim=1)
    return (diff / (ref + eps)).mean()
