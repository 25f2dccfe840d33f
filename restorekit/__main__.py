"""``python -m restorekit <command>``: list, train, infer, evaluate."""
import sys

from restorekit.cli import main

if __name__ == "__main__":
    sys.exit(main())
