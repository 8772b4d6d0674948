"""hncam_utils: Class Activation Maps and the Homogeneous Negative CAM (HNC) loss, for the HNC-CAM course.

Layers (lower ones never import higher ones):

* maths, torch only: :mod:`~hncam_utils.losses` (the HNC loss), :mod:`~hncam_utils.cam` (CAMs)
* :mod:`~hncam_utils.models` (CAM-ready networks), :mod:`~hncam_utils.data` (data sets),
  :mod:`~hncam_utils.runtime` (device, seeds, profiles), :mod:`~hncam_utils.paths`, :mod:`~hncam_utils.download`
* :mod:`~hncam_utils.train` (one training engine), :mod:`~hncam_utils.metrics`
* :mod:`~hncam_utils.plots` (figures), :mod:`~hncam_utils.widgets` (the notebook explorer),
  :mod:`~hncam_utils.cli` (``python -m hncam_utils``)
"""

from .cam import compute_cams, normalize_cams, shared_scale, upsample_cams
from .losses import HNCLoss, hnc_loss

__version__ = "0.1.0"

__all__ = ["HNCLoss", "hnc_loss", "compute_cams", "upsample_cams", "normalize_cams", "shared_scale", "__version__"]
