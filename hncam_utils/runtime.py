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

from ._checks import check_int

__all__ = ["PROFILES", "get_device", "get_profile", "pick", "seed_everything", "describe_environment"]

PROFILES = ("smoke", "cpu", "gpu")
T = TypeVar("T")


def get_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """The device to use: ``device`` if given, else ``$HNCAM_DEVICE``, else cuda, then mps, then cpu.

    Raises:
        ValueError: a name that is not a device (``"bogus"``), or a requested device that this machine does not
            have (``"cuda"`` without a GPU, ``"cuda:3"`` with one GPU); the message says whether the value came
            from the argument or from ``HNCAM_DEVICE``.
        TypeError: ``device`` neither a string nor a ``torch.device``.
    """
    if device is not None:
        requested, source = device, "device"
    else:
        requested, source = os.environ.get("HNCAM_DEVICE", "").strip() or None, "HNCAM_DEVICE"
    if requested is not None:
        fix = "use 'cpu', 'cuda', 'cuda:0' or 'mps', or " + ("unset HNCAM_DEVICE" if source == "HNCAM_DEVICE"
                                                              else "leave device=None for auto-detection")
        if isinstance(requested, torch.device):
            dev = requested
        elif isinstance(requested, str):
            try:
                dev = torch.device(requested)
            except (RuntimeError, ValueError):
                raise ValueError(f"{source}={requested!r} is not a device name; {fix}") from None
        else:
            raise TypeError(f"device must be a string such as 'cpu' or a torch.device, got {type(requested).__name__}")
        if dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"{source}={requested!r}: the course runs on cpu, cuda or mps, not {dev.type!r}; {fix}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{source}={requested!r} requested but CUDA is not available; use 'cpu' or leave it unset")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{source}={requested!r} but this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"{source}={requested!r} requested but MPS is not available; use 'cpu' or leave it unset")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(profile: Optional[str] = None) -> str:
    """The run profile: ``profile`` if given, else ``$HNCAM_PROFILE``, else ``gpu`` with CUDA, else ``cpu``.

    Raises:
        ValueError: an unknown profile name (the message says whether it came from the argument or from
            ``HNCAM_PROFILE``).
        TypeError: ``profile`` not a string.
    """
    if profile is not None:
        if not isinstance(profile, str):
            raise TypeError(f"profile must be one of {PROFILES} or None, got {type(profile).__name__}")
        name, source = profile, "profile"
    elif os.environ.get("HNCAM_PROFILE", "").strip():
        name, source = os.environ["HNCAM_PROFILE"], "HNCAM_PROFILE"
    else:
        name, source = ("gpu" if torch.cuda.is_available() else "cpu"), "default"
    name = name.strip().lower()
    if name not in PROFILES:
        fix = "unset HNCAM_PROFILE or set it to one of them" if source == "HNCAM_PROFILE" else "pass one of them"
        raise ValueError(f"unknown profile {name!r} (from {source}={name!r}); choose one of {', '.join(PROFILES)}: {fix}")
    return name


def pick(options: Mapping[str, T], profile: Optional[str] = None) -> T:
    """``options[profile]`` for the current profile: the one-line way a parameter cell chooses its settings.

    Raises:
        KeyError: the mapping lacks the current profile.
    """
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict {{profile: settings}}, e.g. {{'smoke': 1, 'cpu': 5, 'gpu': 50}}, "
                        f"got {type(options).__name__}")
    name = get_profile(profile)
    if name not in options:
        raise KeyError(f"no settings for profile {name!r}; this cell defines {sorted(options)}")
    return options[name]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that model initialisation is reproducible.

    Raises:
        TypeError: ``seed`` not an int. ValueError: a negative seed.
    """
    seed = check_int("seed", seed, min=0)
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
