"""Optimizers and learning-rate schedulers, registered by name.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

OPTIMIZERS = Registry("optimizers")
SCHEDULERS = Registry("schedulers")

__all__ = ["OPTIMIZERS", "SCHEDULERS"]
