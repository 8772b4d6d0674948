"""Data sets. They know nothing of networks or losses.

* :mod:`hncam_utils.data.cluttered_digits`: the embedded, offline Cluttered Digits data set.
* :mod:`hncam_utils.data.cifar`: CIFAR-10/100 through torchvision, fetched through the registry (:func:`load_cifar`).
* :mod:`hncam_utils.data.cub`: CUB-200-2011 with its boxes (:class:`CUB200`, :func:`cub_transforms`).
* :mod:`hncam_utils.data.fixtures`: small format-faithful stand-ins (tests, smoke profiles; not results).
* :mod:`hncam_utils.data.errors`: :class:`DatasetNotFoundError`, :class:`CorruptImageError`.
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
from .cifar import CIFAR_NUM_CLASSES, load_cifar
from .cub import CUB200, IMAGENET_MEAN, IMAGENET_STD, cub_transforms
from .errors import CorruptImageError, DatasetNotFoundError
from .fixtures import make_cifar_fixture, make_cub_fixture

__all__ = [
    "ClutteredDigits",
    "ClutteredDigitsConfig",
    "SETTINGS",
    "CONFUSABLE",
    "CLASS_NAMES",
    "NUM_CLASSES",
    "make_cluttered_digits",
    "source_split",
    "load_cifar",
    "CIFAR_NUM_CLASSES",
    "CUB200",
    "cub_transforms",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DatasetNotFoundError",
    "CorruptImageError",
    "make_cub_fixture",
    "make_cifar_fixture",
]
