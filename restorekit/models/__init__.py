"""Models: SSL encoders with adapters, vocoders, discriminators, restorers.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

MODELS = Registry("models")

from restorekit.models import adapters, discriminators, miipher2, ssl, wavefit  # noqa: E402,F401  (registers)
from restorekit.models import finally_gen, hifigan, hifipp, mos  # noqa: E402,F401  (registers)

__all__ = ["MODELS"]
