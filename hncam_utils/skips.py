"""Saying plainly that part of a notebook was skipped, and why (standard library only).

Data that cannot be had (CIFAR or CUB offline, weights that cannot be downloaded) must not make the course fail
or hang. A notebook section that needs such data calls :func:`report_skip` with the error; the line it prints
starts with :data:`SKIP_MARKER`, which ``tools/run_notebooks.py`` (``make course``) collects into its closing
summary. A notebook that cannot run at all without the data lets one of the :data:`SKIP_ERRORS` propagate: the
runner reports the notebook as skipped, with the error's message, instead of failed.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Union

from .paths import data_home

__all__ = ["SKIP_MARKER", "SKIP_ERRORS", "report_skip", "is_skip_error"]

#: The start of every "skipped" line a notebook prints (``tools/run_notebooks.py`` looks for it).
SKIP_MARKER = "[skipped]"

#: Names of the exceptions that mean "the data or weights cannot be had here", not "the code is broken".
SKIP_ERRORS = ("DatasetNotFoundError", "DownloadError", "WeightsUnavailableError")


def is_skip_error(error: BaseException) -> bool:
    """Whether ``error`` means that data or weights cannot be had (see :data:`SKIP_ERRORS`)."""
    return any(cls.__name__ in SKIP_ERRORS for cls in type(error).__mro__)


def report_skip(section: str, reason: Union[str, BaseException], file: Optional[object] = None) -> str:
    """Print that ``section`` was skipped, with the reason (an error's message says how to get the data).

    Returns the printed text. The first line reads ``[skipped] <section>: <first line of the reason>``. The data
    folder is written ``$HNCAM_HOME`` (when that variable is set) and the home folder ``~``.
    """
    text = str(reason).strip() or type(reason).__name__
    # no machine paths in stored outputs: the data folder and the home folder by their names
    home = str(data_home(create=False))
    text = text.replace(home, "$HNCAM_HOME" if os.environ.get("HNCAM_HOME") else home.replace(os.path.expanduser("~"), "~"))
    text = text.replace(os.path.expanduser("~") + os.sep, "~" + os.sep)
    first, _, rest = text.partition("\n")
    message = f"{SKIP_MARKER} {section}: {first}" + (f"\n{rest}" if rest else "")
    print(message, file=file or sys.stdout, flush=True)
    return message
