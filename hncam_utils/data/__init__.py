"""Data sets. They know nothing of networks or losses.

* :mod:`hncam_utils.data.cluttered_digits`: the embedded, offline Cluttered Digits data set.
* :mod:`hncam_utils.data.fashion_mnist`: Fashion-MNIST through torchvision (system copy or download).
* :mod:`hncam_utils.data.device_loader`: :class:`DeviceLoader`, a whole small-image split on the device.
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
]
