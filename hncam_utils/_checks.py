"""Argument checks shared by the public functions of :mod:`hncam_utils` (torch and the standard library only,
so the maths modules ``losses`` and ``cam`` may use them too).

Every check raises at the user's call with a message that names the argument, shows the value and says how
to fix it: ``TypeError`` for a value of the wrong kind (a string where a number belongs), ``ValueError`` for a
value of the right kind outside its range (including NaN and infinity where a finite number is needed).

Nothing here reads a tensor's *values*: checks on tensors look at shape, dtype and device only, so they never
synchronise with a GPU.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any, Collection, Optional, Sequence, Tuple

import torch

__all__ = [
    "show",
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_tensor",
    "check_int_pair",
    "check_callable",
    "check_module",
    "check_folder",
    "check_file_stem",
]


def show(value: Any, limit: int = 80) -> str:
    """A short ``repr`` of ``value`` for an error message (tensors by shape and dtype, long values cut)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fix(fix: str) -> str:
    return f"; {fix}" if fix else ""


def check_int(
    name: str,
    value: Any,
    *,
    min: Optional[int] = None,
    max: Optional[int] = None,
    none_ok: bool = False,
    fix: str = "",
) -> Optional[int]:
    """``value`` as an ``int`` (Python or NumPy integers; not ``bool``, not ``2.0``), within ``[min, max]``.

    Raises:
        TypeError: not an integer. ValueError: out of range.
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = "an int" + (" or None" if none_ok else "")
        raise TypeError(f"{name} must be {kind}, got {show(value)} ({type(value).__name__}){_fix(fix)}")
    value = int(value)
    if (min is not None and value < min) or (max is not None and value > max):
        if max is None:
            rng = f">= {min}"
        elif min is None:
            rng = f"<= {max}"
        else:
            rng = f"in [{min}, {max}]"
        raise ValueError(f"{name} must be an int {rng}, got {value}{_fix(fix)}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    min: Optional[float] = None,
    max: Optional[float] = None,
    min_open: bool = False,
    max_open: bool = False,
    none_ok: bool = False,
    finite: bool = True,
    fix: str = "",
) -> Optional[float]:
    """``value`` as a finite ``float`` (any real number, not ``bool``), within the given bounds.

    ``min_open`` / ``max_open`` exclude the bound itself (``temperature > 0``). NaN is always refused; infinity
    unless ``finite=False``.

    Raises:
        TypeError: not a real number. ValueError: NaN, infinite, or out of range.
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.device.type == "cpu":
            value = value.item()  # a CPU scalar tensor: reading it costs nothing
        else:
            raise TypeError(f"{name} must be a number, got {show(value)} ({type(value).__name__}){_fix(fix)}")
    value = float(value)
    lo = "" if min is None else (f"> {min:g}" if min_open else f">= {min:g}")
    hi = "" if max is None else (f"< {max:g}" if max_open else f"<= {max:g}")
    wanted = " and ".join(x for x in (lo, hi) if x)
    what = ("a finite number" if finite else "a number") + (f" {wanted}" if wanted else "")
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be {what}, got {value}{_fix(fix)}")
    too_low = min is not None and (value <= min if min_open else value < min)
    too_high = max is not None and (value >= max if max_open else value > max)
    if too_low or too_high:
        raise ValueError(f"{name} must be {what}, got {value:g}{_fix(fix)}")
    return value


def check_bool(name: str, value: Any, fix: str = "") -> bool:
    """``value`` if it is a ``bool`` (NumPy bools too); a string such as ``"False"`` is refused, since it is true.

    Raises:
        TypeError: anything else.
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {show(value)} ({type(value).__name__}){_fix(fix)}")


def check_choice(name: str, value: Any, choices: Collection[Any], fix: str = "") -> Any:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: anything else (the message lists the choices).
    """
    try:
        ok = value in choices
    except TypeError:  # unhashable value and a set of choices
        ok = False
    if not ok:
        items = [repr(c) for c in choices]
        listed = " or ".join(items) if len(items) <= 2 else "one of " + ", ".join(items)
        raise ValueError(f"{name} must be {listed}, got {show(value)}{_fix(fix)}")
    return value


def check_tensor(
    name: str,
    value: Any,
    *,
    dims: Optional[Sequence[int]] = None,
    shape_hint: str = "",
    floating: bool = False,
    integer: bool = False,
    fix: str = "",
) -> torch.Tensor:
    """``value`` if it is a tensor with an allowed number of dimensions and a floating / integer dtype.

    Looks at metadata only (shape, dtype): never reads the values, so it costs no GPU synchronisation.

    Raises:
        TypeError: not a tensor, or the wrong kind of dtype. ValueError: the wrong number of dimensions.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{' ' + shape_hint if shape_hint else ''}, got "
                        f"{type(value).__name__}{_fix(fix or 'convert it with torch.as_tensor(...)')}")
    if dims is not None and value.dim() not in dims:
        hint = shape_hint or f"{' or '.join(str(d) for d in dims)} dimensions"
        raise ValueError(f"{name} must have shape {hint}, got shape {tuple(value.shape)}{_fix(fix)}")
    if floating and not value.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}"
                        f"{_fix(fix or f'convert it with {name}.float()')}")
    if integer and (value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool):
        raise TypeError(f"{name} must hold integer class indices, got dtype {value.dtype}"
                        f"{_fix(fix or f'convert it with {name}.long()')}")
    return value


def check_int_pair(
    name: str, value: Any, *, min: Optional[int] = None, max: Optional[int] = None, ordered: bool = True, fix: str = ""
) -> Tuple[int, int]:
    """``value`` as a pair ``(a, b)`` of ints within ``[min, max]``, with ``a <= b`` when ``ordered``.

    Raises:
        TypeError: not a pair of ints. ValueError: out of range or ``a > b``.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (min, max) of ints, got {show(value)}{_fix(fix)}")
    a = check_int(f"{name}[0]", value[0], min=min, max=max, fix=fix)
    b = check_int(f"{name}[1]", value[1], min=min, max=max, fix=fix)
    if ordered and a > b:
        raise ValueError(f"{name} must be (min, max) with min <= max, got {tuple(value)}{_fix(fix)}")
    return a, b


def check_callable(name: str, value: Any, fix: str = "") -> Any:
    """``value`` if it is callable.

    Raises:
        TypeError: anything else.
    """
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {show(value)} ({type(value).__name__}){_fix(fix)}")
    return value


def check_module(name: str, value: Any, fix: str = "") -> torch.nn.Module:
    """``value`` if it is a ``torch.nn.Module``.

    Raises:
        TypeError: anything else.
    """
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {show(value)} ({type(value).__name__}){_fix(fix)}")
    return value


def check_folder(name: str, path: Any, *, create: bool = True, writable: bool = False, fix: str = "") -> Path:
    """``path`` as a :class:`~pathlib.Path` to a folder: not a file, created when ``create``, and (with
    ``writable``) one this process can write to (checked by creating and removing a small file).

    Raises:
        TypeError: not a path. NotADirectoryError: an existing file, or below one. OSError (e.g.
        PermissionError): the folder cannot be created or written to.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"{name} must be a folder path, got {show(path)}{_fix(fix)}")
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{name}={str(folder)!r} is a file, not a folder{_fix(fix or 'choose a folder')}")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:  # a parent is a file
            raise NotADirectoryError(f"{name}={str(folder)!r} cannot be created: {exc.strerror} "
                                     f"({exc.filename}){_fix(fix or 'choose another folder')}") from None
        except OSError as exc:  # PermissionError, read-only file system, ...: same type, clearer message
            raise type(exc)(f"{name}={str(folder)!r} cannot be created: {exc.strerror}"
                            f"{_fix(fix or 'choose a folder you can write to')}") from None
    if writable and folder.is_dir():
        probe = folder / f".hncam-write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise type(exc)(f"{name}={str(folder)!r} is not writable: {exc.strerror}"
                            f"{_fix(fix or 'choose a folder you can write to')}") from None
    return folder


def check_file_stem(name: str, value: Any, fix: str = "") -> str:
    """``value`` if it can name a file on its own (it becomes ``<folder>/<value>.pt`` or ``.json``): a non-empty
    string without ``/`` or ``\\`` that does not start with ``.`` (so it cannot leave its folder or hide).

    Raises:
        TypeError: not a string. ValueError: empty, blank, with a path separator, or starting with a dot.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string (a plain file name), got {show(value)} "
                        f"({type(value).__name__}){_fix(fix)}")
    if not value.strip() or any(c in value for c in "/\\") or value.startswith("."):
        raise ValueError(f"{name} must be a non-empty name without '/', '\\' or a leading '.', got {show(value)}"
                         f"{_fix(fix)}")
    return value
