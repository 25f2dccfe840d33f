#!/usr/bin/env python
"""Index the audio under a folder into DIR/metadata.csv (see restorekit.datasets.manifest).

    python scripts/make_metadata_csv.py --root-dir DIR [--update] [--workers N] [--speaker-pattern RE]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from restorekit.datasets.manifest import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
