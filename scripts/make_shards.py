#!/usr/bin/env python
"""Pack an indexed audio folder into webdataset tar shards for the ``webdataset_shards`` dataset.

    python scripts/make_shards.py --root-dir DIR --out-dir SHARDS [--maxcount 1000] [--maxsize 1e9]

Files are stored as they are (no re-encoding) with a JSON header each; DIR/metadata.csv is
built first if absent. Prints the brace pattern to put in the dataset's ``urls``.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from restorekit.datasets.shards import write_shards  # noqa: E402
from restorekit.errors import RestorekitError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root-dir", required=True, help="audio root (indexed by metadata.csv)")
    parser.add_argument("--out-dir", required=True, help="empty folder for shard-NNNNNN.tar")
    parser.add_argument("--maxcount", type=int, default=1000, help="files per shard at most")
    parser.add_argument("--maxsize", type=float, default=1e9, help="bytes per shard at most")
    args = parser.parse_args(argv)
    try:
        shards = write_shards(args.root_dir, args.out_dir, args.maxcount, args.maxsize)
    except RestorekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = len(shards) - 1
    print(f"wrote {len(shards)} shards; urls: {Path(args.out_dir) / f'shard-{{000000..{last:06d}}}.tar'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
