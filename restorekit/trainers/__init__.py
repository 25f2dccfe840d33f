"""Trainers: the BaseTrainer loop and the Miipher-2 stages.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

TRAINERS = Registry("trainers")

__all__ = ["TRAINERS"]
