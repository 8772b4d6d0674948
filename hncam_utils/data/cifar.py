"""CIFAR-10 and CIFAR-100 through torchvision's data sets, fetched through :mod:`hncam_utils.download`.

:func:`load_cifar` finds the unpacked folder under ``root`` (``$HNCAM_HOME/data`` by default), downloads it
through the registry when asked (mirrors, MD5, atomic download, safe extraction, a bounded time-out), checks the
batch files' MD5s itself (so a damaged file is named, not just "corrupted"), and returns the plain
``torchvision.datasets.CIFAR10`` / ``CIFAR100`` object: ``.data`` (N, 32, 32, 3) uint8, ``.targets``,
``.classes``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Union

from ..download import ChecksumError, default_root, fetch_dataset, get_spec, md5sum
from .errors import DatasetNotFoundError, check_root

__all__ = ["load_cifar", "CIFAR_NUM_CLASSES"]

PathLike = Union[str, "os.PathLike[str]"]
CIFAR_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def how_to_get_cifar(name: str, root: Path) -> str:
    """The lines an error message prints on how to get CIFAR-10/100 into ``root``."""
    spec = get_spec(name)
    return (
        f"  * run  python data_scripts/get_cifar.py --dataset {spec.name} --root {root}\n"
        f"    (downloads {spec.filename}, {spec.size:,} bytes, MD5 {spec.md5}, and unpacks it), or pass download=True;\n"
        f"  * offline: put {spec.filename} (from {spec.homepage}) in {root} and run the script again,\n"
        f"    or set {spec.env_var} to a mirror or a local copy."
    )


def _torchvision_class(name: str):
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if name == "cifar10" else CIFAR100


def load_cifar(
    name: str = "cifar10",
    root: Optional[PathLike] = None,
    train: bool = True,
    transform: Optional[Callable] = None,
    target_transform: Optional[Callable] = None,
    download: bool = False,
    verify: bool = True,
    timeout: float = 60,
):
    """``torchvision.datasets.CIFAR10`` or ``CIFAR100`` from ``root``, downloading it through the registry.

    Args:
        name: ``"cifar10"`` or ``"cifar100"`` (``"CIFAR-10"`` etc. accepted).
        root: the folder holding ``cifar-10-batches-py/`` or ``cifar-100-python/``; default
            ``$HNCAM_HOME/data`` (:func:`hncam_utils.download.default_root`).
        train: the training split (50,000 images) or the test split (10,000).
        transform, target_transform: as for torchvision's data sets.
        download: fetch the archive (about 165 MB) when the folder is missing, via
            :func:`hncam_utils.download.fetch_dataset` (override variable, mirrors, MD5, safe extraction).
        verify: check the MD5s of the batch files this split reads (torchvision's list). Fixtures
            (:func:`hncam_utils.data.make_cifar_fixture`) are loaded with ``verify=False``.
        timeout: seconds allowed to connect and for each read while downloading (no hang when offline).

    Raises:
        DatasetNotFoundError: the folder or some of its files are missing (and ``download`` is off); the
            message says how to get them (``data_scripts/get_cifar.py``, the archive's name).
        NotADirectoryError: ``root`` is a file.
        hncam_utils.download.DownloadError: ``download=True`` and no source delivered the archive.
        hncam_utils.download.ChecksumError: a batch file is damaged; the message names it.
        ValueError: an unknown ``name``.
    """
    spec = get_spec(name)
    if spec.name not in CIFAR_NUM_CLASSES:
        raise ValueError(f"load_cifar loads cifar10 or cifar100, got {name!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    root = check_root(root, spec.title, how_to_get_cifar(spec.name, root))
    folder = root / spec.folder
    if download and (not folder.is_dir() or spec.missing(folder)):
        fetch_dataset(spec.name, root, timeout=timeout)
    missing = spec.missing(folder)
    if missing:
        raise DatasetNotFoundError(spec.title, folder, missing, how_to_get_cifar(spec.name, root))
    base = _torchvision_class(spec.name)
    if verify:
        entries = (base.train_list if train else base.test_list) + [[base.meta["filename"], base.meta["md5"]]]
        for fname, md5 in entries:
            path = folder / fname
            actual = md5sum(path)
            if actual != md5:
                raise ChecksumError(
                    f"{path} is damaged (MD5 {actual}, expected {md5}): delete {folder} and unpack "
                    f"{spec.filename} again (python data_scripts/get_cifar.py --dataset {spec.name} --root {root}).",
                    path=path, expected=md5, actual=actual,
                )

    class Checked(base):  # the files were checked above (or deliberately not, for a fixture)
        meta = {**base.meta, "md5": md5sum(folder / base.meta["filename"])}  # torchvision re-checks the meta file

        def _check_integrity(self) -> bool:
            return True

    Checked.__name__ = Checked.__qualname__ = base.__name__
    return Checked(str(root), train=train, transform=transform, target_transform=target_transform, download=False)
