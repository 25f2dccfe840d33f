"""Optimizers and learning-rate schedulers, registered by name.

Importing this package registers every component in it. Optimizers are built with the
parameters injected (``OPTIMIZERS.build(node, where, params=...)``), schedulers with the
optimizer injected (``SCHEDULERS.build(node, where, optimizer=...)``).
"""
from restorekit.registry import Registry

OPTIMIZERS = Registry("optimizers")
SCHEDULERS = Registry("schedulers")

from restorekit.optim import optimizers, schedulers  # noqa: E402,F401  (registers)

__all__ = ["OPTIMIZERS", "SCHEDULERS"]
