"""`python train.py ...`: the same as `python -m restorekit train ...`."""
import sys

from restorekit.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
