"""``python -m skinfluence``: the same command line as ``skinfluence``."""

import sys

from skinfluence.cli import main

sys.exit(main())
