#!/usr/bin/env python
"""Download CIFAR-10 or CIFAR-100 (python version), check its MD5 and unpack it where torchvision expects it
(the torchvision.datasets.CIFAR10 / CIFAR100 layout).

    python data_scripts/get_cifar.py                      # CIFAR-10 into $HNCAM_HOME/data (default ~/.cache/hncam/data)
    python data_scripts/get_cifar.py --dataset cifar100 --root ./data
    python data_scripts/get_cifar.py --url /path/to/cifar-10-python.tar.gz   # a copy you already have

Override the mirror with HNCAM_CIFAR10_URL / HNCAM_CIFAR100_URL or --url, or place the archive in --root by
hand. Exit code 0 on success, 1 on failure (the message says what was tried and how to fix it).
See data_scripts/README.md.
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: an installed hncam_utils wins over the checkout's
from hncam_utils.download import script_main  # noqa: E402

main = script_main("get_cifar.py", ("cifar10", "cifar100"), __doc__)

if __name__ == "__main__":
    sys.exit(main())
