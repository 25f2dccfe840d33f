"""Augmentations (degradations): noise, reverb, codecs, bitcrush, ... composed by a chain.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

AUGMENTATIONS = Registry("augmentations")

# Imported for their registrations (after AUGMENTATIONS exists, which they use).
from restorekit.augmentations import (  # noqa: E402,F401
    adapters,
    chain,
    codec,
    effects,
    filters,
    levels,
    neural_codec,
    noise,
    packet_loss,
    reverb,
)

__all__ = ["AUGMENTATIONS"]
