"""`python evaluate.py ...`: the same as `python -m restorekit evaluate ...`."""
import sys

from restorekit.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
