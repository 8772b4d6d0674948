"""Errors the data sets raise: each one says what is wrong and what to do (standard library only)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Sequence, Union

__all__ = ["DatasetNotFoundError", "CorruptImageError", "check_root", "describe_missing"]

PathLike = Union[str, "os.PathLike[str]"]


class DatasetNotFoundError(FileNotFoundError):
    """A data set's folder, or files in it, are missing.

    A :class:`FileNotFoundError`, so ``except FileNotFoundError`` catches it; notebooks catch it to skip the
    sections whose data cannot be had (and print ``str(error)``, which says how to get the data).

    Attributes:
        dataset: the data set's human name (``"CUB-200-2011"``).
        folder: the folder that was searched.
        missing: the missing entries (file or folder names relative to ``folder``).
        how_to_get: one or more lines saying how to get the data.
    """

    def __init__(self, dataset: str, folder: Path, missing: Sequence[str], how_to_get: str):
        self.dataset = dataset
        self.folder = Path(folder)
        self.missing = list(missing)
        self.how_to_get = how_to_get
        shown = ", ".join(self.missing[:8]) + (f" and {len(self.missing) - 8} more" if len(self.missing) > 8 else "")
        what = "is missing" if not self.folder.exists() else f"is incomplete: it lacks {shown}"
        message = f"{dataset} not found: {self.folder} {what}.\nHow to get it:\n{how_to_get}"
        super().__init__(errno.ENOENT, message, str(self.folder))

    def __str__(self) -> str:  # FileNotFoundError's own str would add "[Errno 2]" and the path again
        return self.strerror


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded (truncated, not an image, ...).

    Attributes:
        path: the file.
    """

    def __init__(self, path: Path, reason: str, fix: str):
        self.path = Path(path)
        super().__init__(f"cannot read the image {self.path}: {reason}. {fix}")


def check_root(root: PathLike, dataset: str, how_to_get: str) -> Path:
    """``root`` as a :class:`~pathlib.Path`, refusing a root that is an existing file.

    Raises:
        NotADirectoryError: ``root`` is a file (e.g. the archive itself was passed instead of its folder).
    """
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        hint = ""
        if path.name.endswith((".tgz", ".tar.gz", ".tar", ".zip")):
            hint = f" It looks like the archive: pass the folder that holds it ({path.parent}) instead."
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"the {dataset} root {path} is a file, not a folder.{hint} The root is the folder that holds the "
            f"data set's folder.\nHow to get the data:\n{how_to_get}",
            str(path),
        )
    return path


def describe_missing(items: Sequence[str], n: int = 3) -> str:
    """``"a, b, c (and 7 more)"``: a short list for error messages."""
    items = list(items)
    shown = ", ".join(items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")
