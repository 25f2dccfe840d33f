"""Metrics: intrusive (paired) and non-intrusive scores of audio, whoever made it.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

METRICS = Registry("metrics")

__all__ = ["METRICS"]
