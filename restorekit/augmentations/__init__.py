"""Augmentations (degradations): noise, reverb, codecs, bitcrush, ... composed by a chain.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

AUGMENTATIONS = Registry("augmentations")

# Imported for their registrations (after AUGMENTATIONS exists, which they use).
from restorekit.augmentations import chain, codec, filters, levels, noise, packet_loss, reverb  # noqa: E402,F401

__all__ = ["AUGMENTATIONS"]
