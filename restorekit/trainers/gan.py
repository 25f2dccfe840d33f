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

from restorekit.errors import ConfigError
from restorekit.losses.adversarial import FeatureMatchingLoss
from restorekit.losses.base import GANLoss
from restorekit.trainers.base import TrainerArgs, setting

if TYPE_CHECKING:  # pragma: no cover
    from restorekit.trainers.base import BaseTrainer, LossTerm


@dataclass
class GanArgs(TrainerArgs):
    """Settings of every adversarial stage: which roles judge, how often, in how many parts."""

    discriminators: list = setting(["discriminators"], "model roles that judge the generator (their own optimizer)")
    discriminator_steps: int = setting(
        1, "discriminator updates per generator update, each on the same detached generator output")
    sub_batches: int = setting(
        1, "parts each batch is split into for the losses and discriminator updates after ONE generator pass "
        "(memory of D and loss networks / n; the generator gradient is the full batch's)")
    balancer: dict = setting(
        {}, "gradient balancer (trainers/balancer.py): {total_norm, ema_decay, weights: {loss: share}}; the named "
        "generator losses' output gradients get norms weight/sum(weights) x total_norm; {}: off")


def gan_optimizer_roles(generator: str, discriminators: list[str]) -> dict[str, list[str]]:
    """Optimizer groups of an adversarial stage: ``generator`` and, when any, ``discriminator``."""
    groups = {"generator": [generator]}
    if discriminators:
        groups["discriminator"] = list(discriminators)
    return groups


def check_gan_args(args: GanArgs) -> None:
    """ConfigError for settings the adversarial step cannot honour."""
    discs = args.discriminators
    if not isinstance(discs, (list, tuple)) or len(set(discs)) != len(discs):
        raise ConfigError(
            f"trainer.args.discriminators must be a list of distinct model roles (e.g. [mpd, msd]), got {discs}"
        )
    for key in ("discriminator_steps", "sub_batches"):
        if int(getattr(args, key)) < 1:
            raise ConfigError(f"trainer.args.{key} must be >= 1, got {getattr(args, key)}")
    if int(args.discriminator_steps) > 1 and int(args.grad_accum) > 1:
        raise ConfigError(
            "trainer.args.discriminator_steps > 1 needs grad_accum: 1 (several discriminator updates inside one "
            "accumulation window would accumulate instead of stepping); use sub_batches to save memory instead"
        )


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
                     fake: torch.Tensor, real: torch.Tensor, discriminator_steps: int = 1,
                     sub_batches: int = 1, extra_loss: torch.Tensor | None = None) -> dict[str, float]:
    """Discriminator update(s) on detached ``fake``, then the generator's losses and update.

    ``real`` is ``(B, samples)``; ``fake`` is ``(k * B, samples)``: k generator outputs per real
    clip (e.g. every WaveFit iteration), stacked output-major, carrying the generator's graph.
    The discriminators see each real clip once per pass; its logits and feature maps are reused
    for the k fakes instead of running D on k copies of the same audio.

    ``discriminator_steps``: D updates before the generator's, each on the same detached output.
    ``sub_batches`` (n): the generator has run once on the whole batch; each D update accumulates
    over n parts (loss / n), and the generator's losses are computed per part on a detached copy
    of its output whose gradient is accumulated, then pushed through the generator in one backward
    (FINALLY stage 3). With losses that average over items (all of restorekit's) the generator
    gradient equals the whole batch's; D and loss-network activations need memory for one part.

    ``extra_loss``: an already weighted generator loss that does not pass through ``fake`` (a
    codec's commitment and distillation), backpropagated in the same single backward pass (DDP
    allows one per forward). With ``trainer.balancer`` set the output gradient is balanced
    (trainers/balancer.py).
    """
    if real.shape[0] == 0 or fake.shape[0] % real.shape[0]:
        raise ValueError(f"fake batch {fake.shape[0]} is not a whole multiple of the real batch {real.shape[0]}")
    if real.shape[0] % sub_batches:
        raise ConfigError(f"trainer.args.sub_batches ({sub_batches}) must divide the batch ({real.shape[0]} items); "
                          "change data.batch_size or sub_batches")
    scalars: dict[str, float] = {}
    if d_roles and any(t.weight != 0 for t in losses.discriminator):
        for _ in range(discriminator_steps):
            scalars.update(_discriminator_update(trainer, losses, d_roles, fake.detach(), real, sub_batches))
    if getattr(trainer, "balancer", None) is not None:
        total, g_scalars = _generator_balanced(trainer, losses, d_roles, fake, real, sub_batches, extra_loss)
    elif sub_batches == 1:
        total, g_scalars = _generator_losses(trainer, losses, d_roles, fake, real)
        trainer.backward(total if extra_loss is None else total + extra_loss, "generator")
    else:
        total, g_scalars = _generator_sub_batched(trainer, losses, d_roles, fake, real, sub_batches, extra_loss)
    scalars.update(g_scalars)
    trainer.optimizer_step("generator")
    scalars["loss/generator_total"] = float(total.detach())
    return scalars


def _generator_losses(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str], fake: torch.Tensor,
                      real: torch.Tensor, values: dict | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted generator loss and its scalars; ``values`` (when given) collects each term's tensor."""
    with trainer.frozen(*d_roles):
        total, scalars = trainer.weighted_losses(losses.waveform, fake, _tile(real, fake.shape[0]), values=values)
        if d_roles and (losses.adversarial or losses.feature_matching):
            adv_total, adv_scalars = _generator_adversarial(trainer, losses, d_roles, fake, real, values)
            total = total + adv_total
            scalars.update(adv_scalars)
    return total, scalars


def _generator_sub_batched(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str], fake: torch.Tensor,
                           real: torch.Tensor, n: int, extra_loss: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, dict[str, float]]:
    """Generator losses per part on a detached output; one backward through the generator."""
    leaf = fake.detach().requires_grad_(True)
    total = torch.zeros((), device=fake.device)
    scalars: dict[str, float] = {}
    for f, r in zip(_parts(leaf, real, n), real.chunk(n)):
        part_total, part_scalars = _generator_losses(trainer, losses, d_roles, f, r)
        trainer.backward(part_total / n, "generator")  # accumulates (scaled) into leaf.grad only
        total = total + part_total.detach() / n
        for k, v in part_scalars.items():
            scalars[k] = scalars.get(k, 0.0) + v / n
    if extra_loss is not None:  # one backward: the output gradient (already scaled) and the extra loss
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(fake)
        trainer.backward(_surrogate(fake, grad / trainer.scaler.get_scale() * trainer.args.grad_accum) + extra_loss,
                         "generator")
    elif leaf.grad is not None:  # None when every loss is log-only (weight 0)
        with torch.autocast(device_type=fake.device.type, enabled=False):
            fake.backward(leaf.grad)  # the accumulated output gradient, through the generator once
    return total, scalars


def _surrogate(output: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient w.r.t. ``output`` is ``grad``: pushes a computed output gradient
    through the generator with ``trainer.backward`` (scaler, accumulation, one DDP backward)."""
    return (output.float() * grad.detach().float()).sum()


def _generator_balanced(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str], fake: torch.Tensor,
                        real: torch.Tensor, n: int, extra_loss: torch.Tensor | None
                        ) -> tuple[torch.Tensor, dict[str, float]]:
    """Each loss's gradient w.r.t. the output (over ``n`` parts), balanced, then one backward."""
    leaf = fake.detach().requires_grad_(True)
    total = torch.zeros((), device=fake.device)
    scalars: dict[str, float] = {}
    grads: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    for f, r in zip(_parts(leaf, real, n), real.chunk(n)):
        values: dict = {}
        part_total, part_scalars = _generator_losses(trainer, losses, d_roles, f, r, values)
        total = total + part_total.detach() / n
        for k, v in part_scalars.items():
            scalars[k] = scalars.get(k, 0.0) + v / n
        for key, (weight, value) in values.items():
            name = key.removeprefix("loss/")
            weights[name] = weight
            g = torch.autograd.grad(value / n, leaf, retain_graph=True, allow_unused=True)[0]
            if g is not None:
                grads[name] = grads[name] + g if name in grads else g
    grad, balance = trainer.balancer.combine(grads, weights) if grads else (torch.zeros_like(leaf), {})
    scalars.update(balance)
    surrogate = _surrogate(fake, grad)
    trainer.backward(surrogate if extra_loss is None else surrogate + extra_loss, "generator")
    return total, scalars


def _parts(fake: torch.Tensor, real: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``fake`` (k * B rows, output-major) split into n parts aligned with ``real.chunk(n)``."""
    k, b = fake.shape[0] // real.shape[0], real.shape[0]
    per_output = fake.view(k, b, *fake.shape[1:]).chunk(n, dim=1)
    return [p.reshape(-1, *fake.shape[1:]) for p in per_output]


def _discriminator_update(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str],
                          fake: torch.Tensor, real: torch.Tensor, n: int = 1) -> dict[str, float]:
    scalars: dict[str, float] = {}
    for f, r in zip(_parts(fake, real, n), real.chunk(n)):
        with trainer.autocast():
            real_logits, _ = discriminate(trainer, d_roles, r, wrapped=True)
            fake_logits, _ = discriminate(trainer, d_roles, f, wrapped=True)
        total = torch.zeros((), device=real.device)
        for t in losses.discriminator:
            with torch.no_grad() if t.weight == 0 else contextlib.nullcontext():
                value = t.fn.discriminator([x.float() for x in real_logits], [x.float() for x in fake_logits])
            if t.weight != 0:  # the config weight scales G's term; D learns at unit weight
                total = total + value
            scalars[f"{t.key}_d"] = scalars.get(f"{t.key}_d", 0.0) + float(value.detach()) / n
        trainer.backward(total / n, "discriminator")
    trainer.optimizer_step("discriminator")
    return scalars


def _generator_adversarial(trainer: BaseTrainer, losses: GanLosses, d_roles: list[str], fake: torch.Tensor,
                           real: torch.Tensor, values: dict | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    with trainer.autocast():
        with torch.no_grad():
            _, real_fmaps = discriminate(trainer, d_roles, real, wrapped=False)
        fake_logits, fake_fmaps = discriminate(trainer, d_roles, fake, wrapped=False)
    real_fmaps = [[_tile(m, f.shape[0]) for m, f in zip(r, fk)] for r, fk in zip(real_fmaps, fake_fmaps)]
    adv, s1 = trainer.weighted_losses(losses.adversarial, fake_logits, values=values)
    fm, s2 = trainer.weighted_losses(losses.feature_matching, fake_fmaps, real_fmaps, values=values)
    return adv + fm, {**s1, **s2}


def _tile(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` (B, ...) repeated along the batch to ``rows`` rows (the layout of stacked fakes)."""
    return x if x.shape[0] == rows else x.repeat(rows // x.shape[0], *([1] * (x.ndim - 1)))
