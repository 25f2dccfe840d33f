#!/usr/bin/env python
"""Download (resumable, md5-verified), extract and index DAPS (restorekit.datasets.recipes) and write metadata.csv.

DAPS is 44.1 kHz; datasets resample on load, so sample_rate: 48000 gives FINALLY's stage-3 targets.

    python scripts/prepare_daps.py --out-dir DATA/daps [--offline] [--archives-dir DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from restorekit.datasets.recipes import DAPS, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(DAPS))
