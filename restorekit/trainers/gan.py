"""One adversarial training step (discriminator, then generator), shared by GAN stages.

Correct by construction (DESIGN.md §5): the discriminator learns from detached fakes, and
the generator loss is computed with the discriminators frozen and unwrapped, so it leaves no
gradient in them and triggers no DDP reduction for them. Each optimizer clips its own
parameters (``BaseTrainer.optimizer_step``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from restorekit.losses.adversarial import FeatureMatchingLoss
from restorekit.losses.base import GANLoss

if TYPE_CHECKING:  # pragma: no cover
    from restorekit.trainers.base import BaseTrainer, LossTerm


@dataclass
class GanLosses:
    """The config's loss list sorted by what each loss compares."""

    waveform: list[LossTerm]  # loss(fake wave, real wave)
    adversarial: list[LossTerm]  # GANLoss: generator(fake logits) / discriminator(real, fake)
    feature_matching: list[LossTerm]  # loss(fake feature maps, real feature maps)
    discriminator: list[LossTerm]  # GANLoss terms whose .discriminator() trains D

    @classmethod
    def split(cls, terms: list[LossTerm], d_terms: list[LossTerm] | None = None) -> GanLosses:
        """Sort generator-side ``terms``; D's objective is ``d_terms`` when given, else G's GAN terms."""
        adv = [t for t in terms if isinstance(t.fn, GANLoss)]
        fm = [t for t in terms if isinstance(t.fn, FeatureMatchingLoss)]
        wave = [t for t in terms if t not in adv and t not in fm]
        disc = [t for t in d_terms if isinstance(t.fn, GANLoss)] if d_terms else adv
        return cls(wave, adv, fm, disc)


def discriminate(trainer: BaseTrainer, roles: list[str], wave: torch.Tensor, wrapped: bool
                 ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Logits and feature maps of every discriminator role, concatenated in role order."""
    logits: list[torch.Tensor] = []
    fmaps: list[list[torch.Tensor]] = []
    for role in roles:
        module = trainer.model(role) if wrapped else trainer.raw(role)
        lg, fm = module(wave)
        logits.extend(lg)
        fmaps.extend(fm)
    return logits, fmaps


def adversarial_step(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str],
                     fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """Discriminator update on detached ``fake``, then the generator's losses and update.

    ``real`` is ``(B, samples)``; ``fake`` is ``(k * B, samples)``: k generator outputs per real
    clip (e.g. every WaveFit iteration), stacked output-major, carrying the generator's graph.
    The discriminators see each real clip once per pass; its logits and feature maps are reused
    for the k fakes instead of running D on k copies of the same audio.
    """
    if real.shape[0] == 0 or fake.shape[0] % real.shape[0]:
        raise ValueError(f"fake batch {fake.shape[0]} is not a whole multiple of the real batch {real.shape[0]}")
    scalars: dict[str, float] = {}
    if d_roles and any(t.weight != 0 for t in losses.discriminator):
        scalars.update(_discriminator_update(trainer, losses, d_roles, fake.detach(), real))
    with trainer.frozen(*d_roles):
        total, g_scalars = trainer.weighted_losses(losses.waveform, fake, _tile(real, fake.shape[0]))
        scalars.update(g_scalars)
        if d_roles and (losses.adversarial or losses.feature_matching):
            adv_total, adv_scalars = _generator_adversarial(trainer, losses, d_roles, fake, real)
            total = total + adv_total
            scalars.update(adv_scalars)
    trainer.backward(total, "generator")
    trainer.optimizer_step("generator")
    scalars["loss/generator_total"] = float(total.detach())
    return scalars


def _discriminator_update(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str],
                          fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    with trainer.autocast():
        real_logits, _ = discriminate(trainer, d_roles, real, wrapped=True)
        fake_logits, _ = discriminate(trainer, d_roles, fake, wrapped=True)
    total = torch.zeros((), device=real.device)
    scalars = {}
    for t in losses.discriminator:
        with torch.no_grad() if t.weight == 0 else contextlib.nullcontext():
            value = t.fn.discriminator([x.float() for x in real_logits], [x.float() for x in fake_logits])
        if t.weight != 0:  # the config weight scales G's term; D learns at unit weight
            total = total + value
        scalars[f"{t.key}_d"] = float(value.detach())
    trainer.backward(total, "discriminator")
    trainer.optimizer_step("discriminator")
    return scalars


def _generator_adversarial(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str],
                           fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    with trainer.autocast():
        with torch.no_grad():
            _, real_fmaps = discriminate(trainer, d_roles, real, wrapped=False)
        fake_logits, fake_fmaps = discriminate(trainer, d_roles, fake, wrapped=False)
    real_fmaps = [[_tile(m, f.shape[0]) for m, f in zip(r, fk)] for r, fk in zip(real_fmaps, fake_fmaps)]
    adv, s1 = trainer.weighted_losses(losses.adversarial, fake_logits)
    fm, s2 = trainer.weighted_losses(losses.feature_matching, fake_fmaps, real_fmaps)
    return adv + fm, {**s1, **s2}


def _tile(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` (B, ...) repeated along the batch to ``rows`` rows (the layout of stacked fakes)."""
    return x if x.shape[0] == rows else x.repeat(rows // x.shape[0], *([1] * (x.ndim - 1)))
