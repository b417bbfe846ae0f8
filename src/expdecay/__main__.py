"""``python -m expdecay``: the ``expdecay`` command (as ``python -m expdecay.cli``)."""

import sys

from .cli import main

sys.exit(main())
