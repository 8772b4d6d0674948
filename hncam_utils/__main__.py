"""``python -m hncam_utils compare`` and ``python -m hncam_utils train``: see :mod:`hncam_utils.cli`."""

import sys

from .cli import main

sys.exit(main())
