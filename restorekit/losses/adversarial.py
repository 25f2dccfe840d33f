"""GAN losses (hinge, least squares) and discriminator feature matching."""
from __future__ import annotations

import torch

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import GANLoss, Loss

REDUCTIONS = ("mean", "sum")


def _check_reduction(name: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"{name}: reduction '{reduction}' is not supported; use one of {REDUCTIONS} "
                          "(mean: average over discriminators/maps; sum: add them, as HiFi-GAN and FINALLY do)")
    return reduction


def _reduce(terms: list[torch.Tensor], reduction: str) -> torch.Tensor:
    """Per-discriminator (or per-map) terms combined: averaged, so the scale does not grow with their
    number, or summed, as HiFi-GAN and FINALLY do, so their published loss weights carry over."""
    stacked = torch.stack(terms)
    return stacked.sum() if reduction == "sum" else stacked.mean()


class _ReducedGANLoss(GANLoss):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(type(self).__name__, reduction)


@LOSSES.register("hinge_gan")
class HingeGANLoss(_ReducedGANLoss):
    """Hinge GAN loss over lists of logits: G = mean(-fake); D = mean(relu(1-real)) + mean(relu(1+fake)).

    Each term is averaged within a logit tensor, then averaged (``reduction: mean``) or summed
    (``sum``) over the discriminators in the list.
    """

    def generator(self, fake_logits: list[torch.Tensor]) -> torch.Tensor:
        return _reduce([(-f).mean() for f in fake_logits], self.reduction)

    def discriminator(self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
        terms = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
        return _reduce(terms, self.reduction)


@LOSSES.register("lsgan")
class LSGANLoss(_ReducedGANLoss):
    """Least-squares GAN loss over lists of logits: G = mean((1-fake)^2); D = mean((1-real)^2) + mean(fake^2).

    Each term is averaged within a logit tensor, then averaged (``reduction: mean``) or summed
    (``sum``: HiFi-GAN's and FINALLY's form, for their weights) over the discriminators.
    """

    def generator(self, fake_logits: list[torch.Tensor]) -> torch.Tensor:
        return _reduce([(1 - f).square().mean() for f in fake_logits], self.reduction)

    def discriminator(self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
        terms = [(1 - r).square().mean() + f.square().mean() for r, f in zip(real_logits, fake_logits)]
        return _reduce(terms, self.reduction)


@LOSSES.register("feature_matching")
class FeatureMatchingLoss(Loss):
    """Mean L1 between discriminator feature maps of generated and real audio -> scalar.

    ``estimate`` and ``reference`` are ``list[list[Tensor]]`` (per discriminator, per layer) as
    returned by a discriminator's ``forward``. The reference maps are detached (they are targets).
    The L1 is averaged within each map, then averaged (``reduction: mean``) or summed (``sum``:
    HiFi-GAN's and FINALLY's form, so their weights carry over) over all maps.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction("feature_matching", reduction)

    def forward(self, estimate: list[list[torch.Tensor]], reference: list[list[torch.Tensor]]) -> torch.Tensor:
        terms = [
            (e - r.detach()).abs().mean()
            for est_maps, ref_maps in zip(estimate, reference)
            for e, r in zip(est_maps, ref_maps)
        ]
        return _reduce(terms, self.reduction)
