#!/usr/bin/env python
"""Make Fashion-MNIST available where torchvision expects it (torchvision.datasets.FashionMNIST layout:
<root>/FashionMNIST/raw/), every file checked against its decompressed MD5.

    python data_scripts/get_fashion_mnist.py              # into $HNCAM_HOME/data/FashionMNIST/raw
    python data_scripts/get_fashion_mnist.py --root ./data

On Debian (and these machines) `apt-get install dataset-fashion-mnist` installs a system copy in
/usr/share/datasets/fashion-mnist/, which is used without any network; elsewhere the files are downloaded
from torchvision's mirror (override it with HNCAM_FASHION_MNIST_URL or --url, a base URL or a local folder
holding the .gz files). Exit code 0 on success, 1 on failure. See data_scripts/README.md.
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: an installed hncam_utils wins over the checkout's
from hncam_utils.download import script_main  # noqa: E402

main = script_main("get_fashion_mnist.py", ("fashion_mnist",), __doc__)

if __name__ == "__main__":
    sys.exit(main())
