"""Waveform-generator stages: HiFi-GAN, HiFi++ and FINALLY's three stages.

One template: the ``generator`` role makes audio from the batch (what it reads differs per
stage), the config's losses compare it with the clean target at the generator's output rate,
and the discriminator roles listed in ``trainer.args.discriminators`` (none for regression
stages) judge it through the shared adversarial step, which also gives every stage several
discriminator updates per generator update and sub-batching with one generator pass.

- ``hifigan``: a mel vocoder (``hifigan`` or ``hifipp`` model) learns log-mel of clean speech
  -> clean speech (copy synthesis).
- ``hifipp``: an audio-to-audio generator (``a2a_hifipp``) learns degraded -> clean.
- ``finally_stage1`` / ``finally_stage2`` / ``finally_stage3``: the ``finally`` generator learns
  degraded (16 kHz, with the longer degraded row as WavLM's context when the data gives one)
  -> clean at its output rate (16 kHz, 48 kHz in stage 3). ``finally_stage3_pretrain`` trains the
  Upsample WaveUNet alone (``train_only: {generator: [upsampler]}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from restorekit.errors import ConfigError
from restorekit.trainers import TRAINERS
from restorekit.trainers.base import BaseTrainer, setting
from restorekit.trainers.data import resample
from restorekit.trainers.gan import GanArgs, GanLosses, adversarial_step, check_gan_args, gan_optimizer_roles


@dataclass
class GeneratorArgs(GanArgs):
    """The adversarial settings; a regression stage lists no discriminators."""

    discriminators: list = setting([], "model roles that judge the generator (their own optimizer); [] = regression")


class WaveGeneratorTrainer(BaseTrainer):
    """Template for the stages below: ``generator_inputs`` and the generator's own rates differ."""

    Args = GeneratorArgs
    ema_role = "generator"

    @property
    def trainable_roles(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("generator", *self.args.discriminators)

    @property
    def export_roles(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("generator", *self.args.discriminators)

    def roles(self) -> list[str]:
        return ["generator", *self.args.discriminators]

    def optimizer_roles(self) -> dict[str, list[str]]:
        return gan_optimizer_roles("generator", self.args.discriminators)

    def check_inputs(self) -> None:
        super().check_inputs()
        check_gan_args(self.args)
        if "generator" in self.args.discriminators:
            raise ConfigError("trainer.args.discriminators lists 'generator'; list the discriminator roles only")

    # ---------------------------------------------------------------- what stages change
    def generator_inputs(self, batch: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """Positional and keyword arguments of the generator's forward for ``batch``."""
        raise NotImplementedError

    def target(self, batch: dict[str, Any]) -> torch.Tensor:
        """The clean audio at the generator's output rate."""
        return resample(batch["clean"], int(batch["sr"]), int(self.raw("generator").sample_rate))

    # ---------------------------------------------------------------- the step
    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        args, kwargs = self.generator_inputs(batch)
        real = self.target(batch)
        with self.autocast():
            fake = self.model("generator")(*args, **kwargs)
        n = min(real.shape[-1], fake.shape[-1])
        losses = GanLosses.split(self.losses_for("generator"), self.losses.get("discriminator"))
        return adversarial_step(self, losses, list(self.args.discriminators), fake[..., :n], real[..., :n],
                                int(self.args.discriminator_steps), int(self.args.sub_batches))

    @torch.no_grad()
    def synthesize(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        args, kwargs = self.generator_inputs(batch)
        with self.autocast():
            wave = self.raw("generator")(*args, **kwargs)
        return wave.float(), int(self.raw("generator").sample_rate)

    def valid_losses(self, batch: dict[str, Any]) -> dict[str, float]:
        """The generator's waveform losses (e.g. ``valid/loss/lmos``) on a validation batch."""
        wave, _ = self.synthesize(batch)
        real = self.target(batch)
        n = min(real.shape[-1], wave.shape[-1])
        waveform = GanLosses.split(self.losses_for("generator")).waveform
        return self.weighted_losses(waveform, wave[..., :n], real[..., :n])[1]


@TRAINERS.register("hifigan")
class HiFiGANTrainer(WaveGeneratorTrainer):
    """HiFi-GAN: a mel vocoder learns the log mel of clean speech -> clean speech (copy synthesis).

    Roles: ``generator`` (``hifigan`` or ``hifipp``: ``features(wave)`` gives its mel, ``forward(mel)``
    the wave) and the discriminator roles in ``trainer.args.discriminators`` (HiFi-GAN: ``mpd`` and
    ``msd``). Losses: ``losses.generator`` (``mel_l1`` 45, ``lsgan`` 1, ``feature_matching`` 2 with
    ``reduction: sum`` in the paper) and optionally ``losses.discriminator``. Optimizers
    ``generator`` and ``discriminator``. Reads ``clean`` only. Export: generator (EMA) + discriminators;
    inference then re-synthesises its input through the mel (a vocoder check, not a restorer).
    """

    def generator_inputs(self, batch: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        gen = self.raw("generator")
        clean = self.target(batch)
        clean = clean[..., : clean.shape[-1] // gen.hop * gen.hop]
        with torch.no_grad():
            return (gen.features(clean),), {}


@TRAINERS.register("hifipp")
class HiFiPPTrainer(WaveGeneratorTrainer):
    """HiFi++: an audio-to-audio generator (``a2a_hifipp``) learns degraded -> clean speech.

    Roles: ``generator`` and the discriminator roles in ``trainer.args.discriminators`` (HiFi++: one
    ``msd`` with ``same_scale: true``). The degraded input is resampled to the generator's
    ``input_rate``; the target is clean speech at its ``sample_rate``. Losses, optimizers and
    export as ``hifigan``; the export is a restorer ``inference.py`` loads.
    """

    def generator_inputs(self, batch: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        gen = self.raw("generator")
        return (resample(batch["degraded"], int(batch["sr"]), int(gen.input_rate)),), {}


class _FinallyTrainer(WaveGeneratorTrainer):
    """FINALLY: degraded speech at 16 kHz (plus WavLM's context row when the data gives one) -> clean."""

    def generator_inputs(self, batch: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        gen, sr = self.raw("generator"), int(batch["sr"])
        rate = int(gen.input_rate)
        kwargs: dict[str, Any] = {}
        if "context" in batch:
            kwargs["context"] = resample(batch["context"], sr, rate)
            # the crop position in input samples; the data keeps it a whole number at 16 kHz
            kwargs["context_offset"] = torch.div(batch["context_offset"] * rate, sr, rounding_mode="floor")
            if "context_lengths" in batch:  # shorter rows are zero-padded: WavLM must not read the zeros
                kwargs["context_lengths"] = torch.div(batch["context_lengths"] * rate, sr, rounding_mode="floor")
        return (resample(batch["degraded"], sr, rate),), kwargs


@TRAINERS.register("finally_stage1")
class FinallyStage1Trainer(_FinallyTrainer):
    """FINALLY stage 1: the whole generator (WavLM frozen) regresses clean speech with LMOS.

    Roles: ``generator`` (``finally``, 16 kHz out). Losses: ``losses.generator`` (``lmos`` 1).
    Optimizer ``generator``. No discriminators. Export: generator (EMA), a 16 kHz restorer.
    """


@TRAINERS.register("finally_stage2")
class FinallyStage2Trainer(_FinallyTrainer):
    """FINALLY stage 2: stage 1's generator (``init_from.generator``) + an MS-STFT discriminator.

    Roles: ``generator`` and ``trainer.args.discriminators`` (default ``[discriminators]``, an
    ``ms_stft`` with the 16 kHz EnCodec scales). Losses: ``lmos`` 20, ``lsgan`` 0.4,
    ``feature_matching`` 20 (sum reductions); D at unit weight. Optimizers ``generator`` and
    ``discriminator``. Export: generator (EMA) + discriminators.
    """

    @dataclass
    class Args(GeneratorArgs):
        discriminators: list = setting(["discriminators"], "model roles that judge the generator")


@TRAINERS.register("finally_stage3_pretrain")
class FinallyStage3PretrainTrainer(_FinallyTrainer):
    """FINALLY stage 3 warm-up: only the Upsample WaveUNet trains (16 -> 48 kHz); the rest is frozen.

    Roles: ``generator`` (``finally`` with ``upsample: true``), usually with
    ``trainer.args.init_weights.generator`` = the stage-2 export (its weights load into the larger
    model; the upsampler starts fresh). ``train_only`` defaults to ``{generator: [upsampler]}``.
    Losses: ``lmos``. Target: clean speech at 48 kHz. Export: generator (EMA).
    """

    @dataclass
    class Args(GeneratorArgs):
        train_only: dict = setting({"generator": ["upsampler"]}, "role -> submodules that train")

    def check_inputs(self) -> None:
        super().check_inputs()
        node = (self.cfg.get("models") or {}).get("generator")
        if "generator" not in self.args.init_from and node is not None and not (node.get("args") or {}).get("upsample"):
            raise ConfigError("finally_stage3_pretrain trains the generator's upsampler, but models.generator has "
                              "none; set models.generator.args.upsample: true")


@TRAINERS.register("finally_stage3")
class FinallyStage3Trainer(_FinallyTrainer):
    """FINALLY stage 3: the whole generator + upsampler at 48 kHz, MS-STFT GAN and human-feedback losses.

    Against a 48 kHz MS-STFT discriminator, with ``utmos_loss`` and ``pesq_loss``. Roles: ``generator`` (``init_from`` the stage-3 warm-up export) and ``trainer.args.discriminators``.
    Losses: ``lmos`` 0.5, ``lsgan`` 5, ``feature_matching`` 15, ``utmos_loss`` 20, ``pesq_loss`` 2.
    The paper runs the generator once on 32 items and the discriminator twice per step over 4
    sub-batches of 8: ``discriminator_steps: 2``, ``sub_batches: 4``. Export: generator (EMA) +
    discriminators; the generator is a 16 kHz -> 48 kHz restorer.
    """

    @dataclass
    class Args(GeneratorArgs):
        discriminators: list = setting(["discriminators"], "model roles that judge the generator")


__all__ = ["WaveGeneratorTrainer", "HiFiGANTrainer", "HiFiPPTrainer", "FinallyStage1Trainer",
           "FinallyStage2Trainer", "FinallyStage3PretrainTrainer", "FinallyStage3Trainer"]
