"""``python -m recforge`` (and ``torchrun -m recforge``) run the command line."""

import sys

from recforge.cli import main

if __name__ == "__main__":
    sys.exit(main())
