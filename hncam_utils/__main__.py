"""``python -m hncam_utils compare``: see :mod:`hncam_utils.cli`."""

import sys

from .cli import main

sys.exit(main())
