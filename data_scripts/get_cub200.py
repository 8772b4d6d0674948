#!/usr/bin/env python
"""Download CUB-200-2011 (CUB_200_2011.tgz from CaltechDATA, 1,150,585,339 bytes), check its MD5 and unpack it
to <root>/CUB_200_2011/.

    python data_scripts/get_cub200.py                     # into $HNCAM_HOME/data (default ~/.cache/hncam/data)
    python data_scripts/get_cub200.py --root /content/drive/MyDrive/hncam/data
    python data_scripts/get_cub200.py --url ~/Downloads/CUB_200_2011.tgz     # a copy you already have

Override the mirror with HNCAM_CUB200_URL or --url, or place the archive in --root by hand. Exit code 0 on
success, 1 on failure (the message says what was tried and how to fix it). See data_scripts/README.md.
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: an installed hncam_utils wins over the checkout's
from hncam_utils.download import script_main  # noqa: E402

main = script_main("get_cub200.py", ("cub200",), __doc__)

if __name__ == "__main__":
    sys.exit(main())
