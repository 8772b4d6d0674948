"""The one folder for data sets, checkpoints and cached runs (standard library only)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["data_home", "atomic_write_text"]


def data_home(create: bool = True) -> Path:
    """``$HNCAM_HOME`` if set, else ``$XDG_CACHE_HOME/hncam``, else ``~/.cache/hncam``.

    Colab users point ``HNCAM_HOME`` at Google Drive (e.g. ``/content/drive/MyDrive/hncam``) so trained
    models survive the runtime. The folder is created unless ``create=False``.

    Raises:
        NotADirectoryError: the folder (or one of its parents) is a file; the message names the variable it
            came from (``HNCAM_HOME`` or ``XDG_CACHE_HOME``) and how to fix it.
        OSError (e.g. PermissionError): the folder cannot be created.
    """
    env = os.environ.get("HNCAM_HOME", "").strip()
    if env:
        root, source = Path(env).expanduser(), "HNCAM_HOME"
    else:
        cache = os.environ.get("XDG_CACHE_HOME", "").strip()
        root = (Path(cache).expanduser() if cache else Path.home() / ".cache") / "hncam"
        source = "XDG_CACHE_HOME" if cache else "the default data folder"
    fix = f"point {source} at a folder you can write to" if source != "the default data folder" else \
        "set HNCAM_HOME to a folder you can write to"
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{source}: {root} is a file, not a folder; {fix}")
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a parent is a file
            raise NotADirectoryError(f"{source}: {root} cannot be created (a parent is a file); {fix}") from None
        except OSError as exc:
            raise type(exc)(f"{source}: {root} cannot be created ({exc.strerror}); {fix}") from None
    return root


def atomic_write_text(path: "os.PathLike | str", text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.
    An interruption leaves the previous file (or none), never a half-written one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
