"""Fashion-MNIST: 70,000 real 28 x 28 grayscale photos of clothes (Zalando, MIT licence), 10 classes.

Through torchvision's :class:`torchvision.datasets.FashionMNIST`; the files come through the download
registry (:func:`hncam_utils.download.fetch_dataset` ``("fashion_mnist")``): the system copy of Debian's
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``) when it is installed, else a download
from torchvision's mirror. Either way each file is verified by its *decompressed* MD5 (Debian recompressed
the ``.gz`` files, so their MD5s differ from torchvision's, but the data is the same).

Four upper-body classes are easily confused: T-shirt/top (0), Pullover (2), Coat (4), Shirt (6)
(:data:`UPPER_BODY`): the "similar classes" HNC is meant to separate.

For tests and the ``smoke`` profile, :func:`make_fashion_mnist_fixture` writes small *format-faithful*
idx files (generated pictures, not Fashion-MNIST): anything measured on them is a pipeline check only.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ..download import ChecksumError, fetch_dataset, get_spec, md5sum

__all__ = [
    "FASHION_CLASSES",
    "UPPER_BODY",
    "FASHION_MEAN",
    "FASHION_STD",
    "load_fashion_mnist",
    "fashion_mnist_checksums",
    "make_fashion_mnist_fixture",
    "write_idx",
]

PathLike = Union[str, "os.PathLike[str]"]

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
#: T-shirt/top, Pullover, Coat, Shirt: the classes most often confused with each other.
UPPER_BODY = (0, 2, 4, 6)
#: Pixel mean and standard deviation of the training split (in [0, 1] units).
FASHION_MEAN = 0.2860
FASHION_STD = 0.3530


def fashion_mnist_checksums() -> Dict[str, str]:
    """The official decompressed MD5s, ``{raw file name: md5}``."""
    return {f.raw_name: f.raw_md5 for f in get_spec("fashion_mnist").files}


def load_fashion_mnist(
    split: str = "train",
    root: Optional[PathLike] = None,
    *,
    download: bool = True,
    use_system: bool = True,
    checksums: Optional[Mapping[str, str]] = None,
    transform=None,
):
    """Fashion-MNIST as torchvision's data set (``.data``: ``(N, 28, 28)`` uint8, ``.targets``: ``(N,)``).

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: torchvision's ``root``: the files live in ``root / "FashionMNIST" / "raw"``
            (default :func:`hncam_utils.download.default_root`).
        download: fetch the files when missing (system copy first, then the mirror); with ``False`` a
            missing file is an error.
        use_system: use the system copy of ``dataset-fashion-mnist`` when installed.
        checksums: ``{raw file name: md5}`` to verify instead of the official ones; for fixtures written by
            :func:`make_fashion_mnist_fixture` (which returns them). Nothing is fetched then.
        transform: passed to torchvision (per-image transforms; the device-resident loader needs none).

    Raises:
        ValueError: an unknown split.
        FileNotFoundError: files missing and ``download=False`` (the message says how to get them).
        ChecksumError: a file whose content differs from the expected one (system copy included).
        DownloadError: no source delivered the files (offline, no system copy).
    """
    from torchvision.datasets import FashionMNIST

    from ..download import default_root

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    raw = root / "FashionMNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    if checksums is not None:
        for name, md5 in checksums.items():
            if name.startswith(prefix):
                path = raw / name
                if not path.is_file():
                    raise FileNotFoundError(f"{path} is missing: write the fixture first (make_fashion_mnist_fixture)")
                actual = md5sum(path)
                if actual != md5:
                    raise ChecksumError(f"{path} has MD5 {actual}, expected {md5}: write the fixture again",
                                        path=path, expected=md5, actual=actual)
    elif download:
        fetch_dataset("fashion_mnist", root, use_system=use_system, progress=False)
    else:
        expected = {k: v for k, v in fashion_mnist_checksums().items() if k.startswith(prefix)}
        for name, md5 in expected.items():
            path = raw / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing. Get Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian) "
                    "and load with download=True, or run `python data_scripts/get_fashion_mnist.py`."
                )
            actual = md5sum(path)
            if actual != md5:
                raise ChecksumError(f"{path} has MD5 {actual}, expected {md5}: delete it and load with download=True",
                                    path=path, expected=md5, actual=actual)
    return FashionMNIST(str(root), train=split == "train", download=False, transform=transform)


# ----------------------------------------------------------------------------------------------- fixtures


def write_idx(path: PathLike, array: np.ndarray) -> str:
    """Write ``array`` (uint8) as an idx file (big-endian header: magic ``0x0000 08 ndim``, then each
    dimension as uint32), the format of the MNIST family. Returns the file's MD5."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def _fixture_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28 x 28 pictures whose shape depends on the class (a filled box of a class-dependent size and place,
    two bars for class 1 ...) plus noise: learnable, not Fashion-MNIST."""
    n = len(labels)
    out = np.zeros((n, 28, 28), dtype=np.float32)
    yy, xx = np.mgrid[:28, :28]
    for c in range(10):
        idx = np.nonzero(labels == c)[0]
        if not len(idx):
            continue
        w = 6 + 2 * (c % 5)
        h = 8 + 2 * (c // 2)
        x0 = 14 - w // 2 + (c % 3) - 1
        y0 = 14 - min(h, 26) // 2
        mask = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + min(h, 26))
        if c % 2:
            mask &= (xx - x0) % 4 < 2  # stripes for odd classes
        out[idx] = mask * (0.5 + 0.05 * c)
    out += rng.normal(0, 0.15, out.shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def make_fashion_mnist_fixture(
    root: PathLike,
    n_train: int = 600,
    n_test: int = 200,
    seed: int = 0,
    compressed: bool = False,
) -> Dict[str, str]:
    """Write a small, format-faithful Fashion-MNIST look-alike (generated pictures, balanced labels).

    Args:
        root: the files go to ``root / "FashionMNIST" / "raw"`` (torchvision's layout); with
            ``compressed=True``, the four ``.gz`` files go to ``root`` itself instead (the layout of the
            Debian package and of the mirror).
        n_train, n_test: images per split.
        seed: fixes the pictures and labels.
        compressed: write ``.gz`` files instead of raw ones.

    Returns:
        ``{raw file name: md5}`` of the decompressed files, for ``load_fashion_mnist(..., checksums=...)``.
    """
    import gzip

    rng = np.random.default_rng(seed)
    root = Path(root)
    sums: Dict[str, str] = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = _fixture_images(labels, rng)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{prefix}-{kind}"
            if compressed:
                tmp = root / f".{name}.tmp"
                sums[name] = write_idx(tmp, arr)
                root.mkdir(parents=True, exist_ok=True)
                with gzip.open(root / f"{name}.gz", "wb") as f:
                    f.write(tmp.read_bytes())
                tmp.unlink()
            else:
                sums[name] = write_idx(root / "FashionMNIST" / "raw" / name, arr)
    return sums
