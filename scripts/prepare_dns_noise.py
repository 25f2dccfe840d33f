#!/usr/bin/env python
"""Download (resumable, checksum-verified), extract and index DNS_NOISE (restorekit.datasets.recipes) and write metadata.csv.

    python scripts/prepare_dns_noise.py --out-dir DATA/dns_noise [--subsets ...] [--offline] [--checksum FILE=sha256:HEX]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from restorekit.datasets.recipes import DNS_NOISE, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(DNS_NOISE))
