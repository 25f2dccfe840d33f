"""Losses on SSL feature sequences (the Miipher-2 feature cleaner's objective)."""
from __future__ import annotations

import torch

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import Loss, check_same_shape

_REDUCTIONS = ("mean", "sum")
_SC_FORMS = ("ratio", "squared")


@LOSSES.register("miipher_feature_loss")
class MiipherFeatureLoss(Loss):
    """L1 + L2 + spectral convergence between feature sequences (B, frames, dim) -> scalar.

    As in Miipher-2: predicted clean SSL features (estimate) against the features of the clean
    recording (reference). ``reduction="mean"`` averages the L1 and L2 terms over every element
    (the scale does not depend on sequence length or feature size); ``"sum"`` sums them over all
    elements and divides by the batch size only. Spectral convergence
    ``||reference - estimate||_F / ||reference||_F`` is a ratio per utterance, averaged over the
    batch, under either reduction; ``spectral_convergence: squared`` uses the Miipher paper's
    ``||reference - estimate||_F^2 / ||reference||_F^2`` instead (Miipher-1's loss). With
    ``lengths`` (B,) (valid frames per item), padded frames are masked out of every term and the
    mean is over valid elements (the paper's K * D).
    """

    def __init__(self, reduction: str = "mean", eps: float = 1e-8, spectral_convergence: str = "ratio") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ConfigError(
                f"miipher_feature_loss: reduction '{reduction}' is not supported; use one of {_REDUCTIONS}"
            )
        if spectral_convergence not in _SC_FORMS:
            raise ConfigError(f"miipher_feature_loss: spectral_convergence '{spectral_convergence}' is not "
                              f"supported; use one of {_SC_FORMS} (squared: the Miipher paper's)")
        self.reduction, self.squared_sc = reduction, spectral_convergence == "squared"
        self.eps = eps

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths`` (B,): valid frames per item; frames past them count nowhere (padding masked)."""
        check_same_shape(estimate, reference, "miipher_feature_loss")
        count = torch.tensor(float(estimate.numel()), device=estimate.device)
        if lengths is not None:
            valid = (torch.arange(estimate.shape[1], device=estimate.device)[None] < lengths.to(estimate.device)[:, None])
            mask = valid[..., None].to(estimate.dtype)
            estimate, reference = estimate * mask, reference * mask
            count = mask.sum() * estimate[0, 0].numel()
        diff = estimate - reference
        if self.reduction == "mean":
            l1, l2 = diff.abs().sum() / count, diff.square().sum() / count
        else:
            l1, l2 = diff.abs().sum() / diff.shape[0], diff.square().sum() / diff.shape[0]
        return l1 + l2 + spectral_convergence(estimate, reference, self.eps, squared=self.squared_sc)


def spectral_convergence(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8,
                         squared: bool = False) -> torch.Tensor:
    """Per-item ``||ref - est||_F / ||ref||_F`` over all but the batch axis, averaged over the batch;
    ``squared``: ``||ref - est||_F^2 / ||ref||_F^2`` (the Miipher paper's form)."""
    if squared:
        diff = (reference - estimate).flatten(1).square().sum(dim=1)
        return (diff / (reference.flatten(1).square().sum(dim=1) + eps)).mean()
    diff = (reference - estimate).flatten(1).norm(dim=1)
    ref = reference.flatten(1).norm(dim=1)
    return (diff / (ref + eps)).mean()
