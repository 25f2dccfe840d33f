"""Models: SSL encoders with adapters, vocoders, discriminators, restorers.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

MODELS = Registry("models")

from restorekit.models import (  # noqa: E402,F401  (registers)
    adapters,
    discriminators,
    finally_gen,
    hifigan,
    hifigan_ssl,
    hifipp,
    miipher1,
    miipher2,
    mimi,
    mos,
    speaker,
    ssl,
    text,
    wave_restorer,
    wavefit,
)

__all__ = ["MODELS"]
