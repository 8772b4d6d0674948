"""Where the code runs: device auto-detection, seeding, and the course's run profiles.

Profiles (environment variable ``HNCAM_PROFILE``): ``smoke`` (CI: seconds, tiny data), ``cpu`` (a laptop:
minutes on 2 cores), ``gpu`` (the full recipe). Unset: ``gpu`` when CUDA is present, else ``cpu``.
"""

from __future__ import annotations

import os
import random
from typing import Any, Dict, Mapping, Optional, TypeVar, Union

import numpy as np
import torch

__all__ = ["PROFILES", "get_device", "get_profile", "pick", "seed_everything", "describe_environment"]

PROFILES = ("smoke", "cpu", "gpu")
T = TypeVar("T")


def get_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """The device to use: ``device`` if given, else ``$HNCAM_DEVICE``, else cuda, then mps, then cpu.

    Raises:
        ValueError: a requested device that this machine does not have (e.g. ``"cuda"`` without a GPU).
    """
    requested = device if device is not None else os.environ.get("HNCAM_DEVICE") or None
    if requested is not None:
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available; use 'cpu' or leave it unset")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"device {requested!r} requested but MPS is not available; use 'cpu' or leave it unset")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(profile: Optional[str] = None) -> str:
    """The run profile: ``profile`` if given, else ``$HNCAM_PROFILE``, else ``gpu`` with CUDA, else ``cpu``.

    Raises:
        ValueError: an unknown profile name.
    """
    name = profile or os.environ.get("HNCAM_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (from HNCAM_PROFILE or the argument); choose one of {PROFILES}")
    return name


def pick(options: Mapping[str, T], profile: Optional[str] = None) -> T:
    """``options[profile]`` for the current profile: the one-line way a parameter cell chooses its settings.

    Raises:
        KeyError: the mapping lacks the current profile.
    """
    name = get_profile(profile)
    if name not in options:
        raise KeyError(f"no settings for profile {name!r}; this cell defines {sorted(options)}")
    return options[name]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that model initialisation is reproducible."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def describe_environment() -> Dict[str, Any]:
    """Versions, device and threads: what to paste into a bug report."""
    import platform

    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(get_device()),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "profile": get_profile(),
    }
    for pkg in ("torchvision", "captum", "numpy", "matplotlib", "ipywidgets", "sklearn"):
        try:
            info[pkg] = __import__(pkg).__version__
        except Exception:  # pragma: no cover - optional packages
            info[pkg] = None
    return info
