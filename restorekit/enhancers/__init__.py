"""Enhancers for comparisons: baselines and restorekit exports, (wave, sr) -> (wave, sr).

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

ENHANCERS = Registry("enhancers")

__all__ = ["ENHANCERS"]
