"""Enhancers for comparisons: baselines and restorekit exports, (wave, sr) -> (wave, sr).

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

ENHANCERS = Registry("enhancers")

from restorekit.enhancers import baselines, codec, export  # noqa: E402,F401  (registers them)
from restorekit.enhancers.base import Enhancer  # noqa: E402

__all__ = ["ENHANCERS", "Enhancer"]
