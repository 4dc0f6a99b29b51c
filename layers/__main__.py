"""``python -m layers ...`` is the ``layers`` command."""

import sys

from layers.cli import main

sys.exit(main())
