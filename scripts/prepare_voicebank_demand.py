#!/usr/bin/env python
"""Download (resumable, checksum-verified), extract and index VOICEBANK_DEMAND (restorekit.datasets.recipes) and write metadata.csv.

    python scripts/prepare_voicebank_demand.py --out-dir DATA/voicebank_demand [--subsets ...] [--offline] [--checksum FILE=sha256:HEX]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from restorekit.datasets.recipes import VOICEBANK_DEMAND, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(VOICEBANK_DEMAND))
