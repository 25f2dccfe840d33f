"""Trainers: the BaseTrainer loop and the Miipher-2 stages.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

TRAINERS = Registry("trainers")

from restorekit.trainers import feature_cleaner, vocoder  # noqa: E402,F401  (registers)
from restorekit.trainers.base import BaseTrainer  # noqa: E402

__all__ = ["TRAINERS", "BaseTrainer"]
