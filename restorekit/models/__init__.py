"""Models: SSL encoders with adapters, vocoders, discriminators, restorers.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

MODELS = Registry("models")

__all__ = ["MODELS"]
