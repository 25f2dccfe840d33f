"""restorekit: a composable speech-restoration toolkit (Miipher-2 and friends).

Components are registered by name in per-kind registries (``restorekit.models.MODELS``, ...)
and composed in YAML; see ``python -m restorekit list``.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "from_pretrained", "load", "push_to_hub"]


def __getattr__(name: str):
    # The API is imported on first use, so `import restorekit` stays light (no torch import).
    if name in ("load", "from_pretrained"):
        from restorekit import api

        return getattr(api, name)
    if name == "push_to_hub":
        from restorekit import hub

        return hub.push_to_hub
    raise AttributeError(f"module 'restorekit' has no attribute {name!r}")
