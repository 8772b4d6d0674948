#!/usr/bin/env python
"""Make Fashion-MNIST available where torchvision expects it, verified by the decompressed files' MD5s.

    python data_scripts/get_fashion_mnist.py              # into $HNCAM_HOME/data/FashionMNIST/raw
    python data_scripts/get_fashion_mnist.py --root ./data

On Debian (and these machines) `apt-get install dataset-fashion-mnist` installs a system copy in
/usr/share/datasets/fashion-mnist/, which is used without any network; elsewhere the files are downloaded
from torchvision's mirror (override it with HNCAM_FASHION_MNIST_URL or --url, a base URL or a local folder).
Exit code 0 on success, 1 on failure. See data_scripts/README.md.
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
        choices=("fashion_mnist",),
        prog="get_fashion_mnist.py",
        description="Make Fashion-MNIST available (torchvision.datasets.FashionMNIST layout: FashionMNIST/raw/), "
        "from the system copy of Debian's dataset-fashion-mnist when installed, else by download; every file is "
        "checked against its decompressed MD5. --url takes a base URL or a local folder holding the .gz files.",
    )


if __name__ == "__main__":
    sys.exit(main())
