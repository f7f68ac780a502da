"""``python -m llmesr.cli``: what the ``llmesr`` script runs."""

import sys

from llmesr.cli import main

sys.exit(main())
