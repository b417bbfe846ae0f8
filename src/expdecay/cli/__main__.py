"""``python -m expdecay.cli``: the ``expdecay`` command."""

import sys

from . import main

sys.exit(main())
