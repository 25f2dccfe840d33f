"""GAN losses (hinge, least squares) and discriminator feature matching."""
from __future__ import annotations

import torch

from restorekit.losses import LOSSES
from restorekit.losses.base import GANLoss, Loss


def _mean_over(terms: list[torch.Tensor]) -> torch.Tensor:
    """Average of per-discriminator terms, so the scale does not grow with their number."""
    return torch.stack(terms).mean()


@LOSSES.register("hinge_gan")
class HingeGANLoss(GANLoss):
    """Hinge GAN loss over lists of logits: G = mean(-fake); D = mean(relu(1-real)) + mean(relu(1+fake)).

    Each term is averaged within a logit tensor, then over the discriminators in the list.
    """

    def generator(self, fake_logits: list[torch.Tensor]) -> torch.Tensor:
        return _mean_over([(-f).mean() for f in fake_logits])

    def discriminator(self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
        terms = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
        return _mean_over(terms)


@LOSSES.register("lsgan")
class LSGANLoss(GANLoss):
    """Least-squares GAN loss over lists of logits: G = mean((1-fake)^2); D = mean((1-real)^2) + mean(fake^2).

    Each term is averaged within a logit tensor, then over the discriminators in the list.
    """

    def generator(self, fake_logits: list[torch.Tensor]) -> torch.Tensor:
        return _mean_over([(1 - f).square().mean() for f in fake_logits])

    def discriminator(self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
        terms = [(1 - r).square().mean() + f.square().mean() for r, f in zip(real_logits, fake_logits)]
        return _mean_over(terms)


@LOSSES.register("feature_matching")
class FeatureMatchingLoss(Loss):
    """Mean L1 between discriminator feature maps of generated and real audio -> scalar.

    ``estimate`` and ``reference`` are ``list[list[Tensor]]`` (per discriminator, per layer) as
    returned by a discriminator's ``forward``. The reference maps are detached (they are targets).
    The L1 is averaged within each map, then over all maps.
    """

    def forward(self, estimate: list[list[torch.Tensor]], reference: list[list[torch.Tensor]]) -> torch.Tensor:
        terms = [
            (e - r.detach()).abs().mean()
            for est_maps, ref_maps in zip(estimate, reference)
            for e, r in zip(est_maps, ref_maps)
        ]
        return _mean_over(terms)
