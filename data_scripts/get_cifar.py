#!/usr/bin/env python
"""Download CIFAR-10 or CIFAR-100 (python version), check its MD5 and unpack it where torchvision expects it.

    python data_scripts/get_cifar.py                      # CIFAR-10 into $HNCAM_HOME/data (default ~/.cache/hncam/data)
    python data_scripts/get_cifar.py --dataset cifar100 --root ./data
    python data_scripts/get_cifar.py --url /path/to/cifar-10-python.tar.gz   # a copy you already have

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
        choices=("cifar10", "cifar100"),
        prog="get_cifar.py",
        description="Download CIFAR-10 / CIFAR-100 (python version), verify the MD5 and unpack it "
        "(torchvision.datasets.CIFAR10/CIFAR100 layout). Override the mirror with HNCAM_CIFAR10_URL / "
        "HNCAM_CIFAR100_URL or --url; or place the archive in --root by hand.",
    )


if __name__ == "__main__":
    sys.exit(main())
