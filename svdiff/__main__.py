"""`python -m svdiff`: the command line."""

import sys

from svdiff.cli import main

sys.exit(main())
