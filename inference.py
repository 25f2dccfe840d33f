"""`python inference.py ...`: the same as `python -m restorekit infer ...`."""
import sys

from restorekit.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
