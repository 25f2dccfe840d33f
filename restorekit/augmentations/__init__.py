"""Augmentations (degradations): noise, reverb, codecs, bitcrush, ... composed by a chain.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

AUGMENTATIONS = Registry("augmentations")

__all__ = ["AUGMENTATIONS"]
