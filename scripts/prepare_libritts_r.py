#!/usr/bin/env python
"""Download (resumable, checksum-verified), extract and index LIBRITTS_R (restorekit.datasets.recipes) and write metadata.csv.

    python scripts/prepare_libritts_r.py --out-dir DATA/libritts_r [--subsets ...] [--offline] [--checksum FILE=sha256:HEX]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from restorekit.datasets.recipes import LIBRITTS_R, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(LIBRITTS_R))
