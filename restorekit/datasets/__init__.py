"""Datasets: manifests, on-the-fly degraded corpora, paired and folder sets, the demo corpus.

Importing this package registers every component in it.
"""
from restorekit.registry import Registry

DATASETS = Registry("datasets")

# Imported for their registrations (after DATASETS exists, which they use).
from restorekit.datasets import degraded, demo, folder, paired, shards, text  # noqa: E402,F401
from restorekit.datasets.collate import collate  # noqa: E402

__all__ = ["DATASETS", "collate"]
