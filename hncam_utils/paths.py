"""The one folder for data sets, checkpoints and cached runs (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_home"]


def data_home(create: bool = True) -> Path:
    """``$HNCAM_HOME`` if set, else ``$XDG_CACHE_HOME/hncam``, else ``~/.cache/hncam``.

    Colab users point ``HNCAM_HOME`` at Google Drive (e.g. ``/content/drive/MyDrive/hncam``) so trained
    models survive the runtime. The folder is created unless ``create=False``.
    """
    env = os.environ.get("HNCAM_HOME")
    if env:
        root = Path(env).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME")
        root = (Path(cache).expanduser() if cache else Path.home() / ".cache") / "hncam"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root
