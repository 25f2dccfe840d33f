"""Datasets: manifests, on-the-fly degraded corpora, paired and folder sets, the demo corpus.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

DATASETS = Registry("datasets")

__all__ = ["DATASETS"]
