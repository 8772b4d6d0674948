"""Data sets. They know nothing of networks or losses.

* :mod:`hncam_utils.data.cluttered_digits`: the embedded, offline Cluttered Digits data set.
"""

from .cluttered_digits import (
    CLASS_NAMES,
    CONFUSABLE,
    NUM_CLASSES,
    SETTINGS,
    ClutteredDigits,
    ClutteredDigitsConfig,
    make_cluttered_digits,
    source_split,
)

__all__ = [
    "ClutteredDigits",
    "ClutteredDigitsConfig",
    "SETTINGS",
    "CONFUSABLE",
    "CLASS_NAMES",
    "NUM_CLASSES",
    "make_cluttered_digits",
    "source_split",
]
