"""Losses: pure functions of tensors, forward(estimate, reference) -> scalar.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

LOSSES = Registry("losses")

__all__ = ["LOSSES"]
