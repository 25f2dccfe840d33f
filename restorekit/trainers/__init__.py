"""Trainers: the BaseTrainer loop, the Miipher-2 stages and the waveform-generator stages (HiFi-GAN, HiFi++, FINALLY).

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

TRAINERS = Registry("trainers")

from restorekit.trainers import feature_cleaner, generator, miipher1, mimi, vocoder  # noqa: E402,F401  (registers)
from restorekit.trainers.base import BaseTrainer  # noqa: E402

__all__ = ["TRAINERS", "BaseTrainer"]
