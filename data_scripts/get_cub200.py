#!/usr/bin/env python
"""Download CUB-200-2011 (CaltechDATA, 1.1 GB), check its MD5 and unpack it to ``<root>/CUB_200_2011/``.

    python data_scripts/get_cub200.py                     # into $HNCAM_HOME/data (default ~/.cache/hncam/data)
    python data_scripts/get_cub200.py --root /content/drive/MyDrive/hncam/data
    python data_scripts/get_cub200.py --url ~/Downloads/CUB_200_2011.tgz     # a copy you already have

Exit code 0 on success, 1 on failure (the message says what was tried and how to fix it). See data_scripts/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from hncam_utils.download import command_line
except ModuleNotFoundError as exc:  # run from a checkout without `pip install -e .`
    if exc.name != "hncam_utils":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hncam_utils.download import command_line


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, fetch the data set, return the exit code."""
    return command_line(
        argv,
        choices=("cub200",),
        prog="get_cub200.py",
        description="Download CUB-200-2011 (CUB_200_2011.tgz, 1,150,585,339 bytes) from CaltechDATA, verify "
        "the MD5 and unpack it. Override the mirror with HNCAM_CUB200_URL or --url; or place the archive in "
        "--root by hand.",
    )


if __name__ == "__main__":
    sys.exit(main())
