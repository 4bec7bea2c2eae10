"""``python -m citytwin``: the command line (see :mod:`citytwin.cli`)."""

import sys

from citytwin.cli import main

if __name__ == "__main__":
    sys.exit(main())
