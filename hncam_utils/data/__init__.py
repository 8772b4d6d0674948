"""Data sets. They know nothing of networks or losses.

* :mod:`hncam_utils.data.cluttered_digits`: the embedded, offline Cluttered Digits data set.
* :mod:`hncam_utils.data.fashion_mnist`: Fashion-MNIST through torchvision (system copy or download).
* :mod:`hncam_utils.data.device_loader`: :class:`DeviceLoader`, a whole small-image split on the device.
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
from .device_loader import DeviceLoader
from .fashion_mnist import (
    FASHION_CLASSES,
    FASHION_MEAN,
    FASHION_STD,
    UPPER_BODY,
    load_fashion_mnist,
    make_fashion_mnist_fixture,
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
    "DeviceLoader",
    "FASHION_CLASSES",
    "FASHION_MEAN",
    "FASHION_STD",
    "UPPER_BODY",
    "load_fashion_mnist",
    "make_fashion_mnist_fixture",
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
