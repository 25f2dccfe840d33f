"""restorekit: a composable speech-restoration toolkit (Miipher-2 and friends).

Components are registered by name in per-kind registries (``restorekit.models.MODELS``, ...)
and composed in YAML; see ``python -m restorekit list``.
"""
__version__ = "0.1.0"
