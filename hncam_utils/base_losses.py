"""Classification losses other than cross-entropy, to train with (or without) the HNC term.

Torch only, so any of them can be copied into another project. Each takes logits ``(B, C)`` and class
indices ``(B,)`` and returns the mean over the batch (or per-example values with ``reduction="none"``).
With :math:`p = \\mathrm{softmax}(z)` and :math:`p_y` the probability of the label:

* **Generalized cross-entropy** (GCE; Zhang & Sabuncu, NeurIPS 2018), a loss that resists label noise:
  :math:`\\mathcal{L}_q = (1 - p_y^q) / q` for :math:`q \\in (0, 1]`. As :math:`q \\to 0` it tends to
  cross-entropy :math:`-\\log p_y`; at :math:`q = 1` it is :math:`1 - p_y`, which is half the mean absolute
  error (MAE) :math:`\\lVert e_y - p \\rVert_1 = 2 (1 - p_y)`. Its gradient is CE's scaled by
  :math:`p_y^q`: examples the model finds implausible (often the mislabelled ones) pull less.
* **Focal loss** (Lin et al., ICCV 2017), multi-class form: :math:`-(1 - p_y)^\\gamma \\log p_y`; ``gamma = 0``
  is cross-entropy; larger ``gamma`` down-weights examples that are already well classified.
* **CosFace** (large margin cosine loss; Wang et al., CVPR 2018), an additive cosine margin: with cosine
  logits :math:`z_c = s \\cos\\theta_c` (unit-norm weights, unit-norm pooled features, scale ``s``),
  :math:`\\mathcal{L} = \\mathrm{CE}(s(\\cos\\theta - m\\,e_y), y)`: the label's cosine must beat the others by
  the margin ``m``. It needs a cosine head (:class:`hncam_utils.models.CosineCAMNet`); the margin applies in
  training only (prediction is the argmax of the cosines).

Label smoothing is ``F.cross_entropy(..., label_smoothing=eps)`` and stays in the training engine.

Why these are written here: no maintained package provides GCE; torchvision has only the binary
``sigmoid_focal_loss``, and kornia's multi-class ``FocalLoss`` needs Python >= 3.11 and torch >= 2.5.1, above
the course's floors; pytorch-metric-learning's ``CosFaceLoss`` owns its own weight matrix and returns only the
loss, while a CAM model needs that weight as its classifier to build class activation maps. Each function is
a few lines and is tested against its definition (``tests/test_base_losses.py``).
"""

from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_choice, check_float

__all__ = ["BASE_LOSSES", "generalized_cross_entropy", "focal_loss", "cosface_loss", "check_base_loss"]

#: Names understood by :func:`hncam_utils.train.TrainConfig` (``base_loss``).
BASE_LOSSES = ("ce", "gce", "focal", "cosface")


def _check_inputs(logits: Tensor, targets: Tensor, reduction: str) -> None:
    """Shapes and dtypes (metadata only); class indices in ``[0, C)`` when the targets are on the CPU, where
    reading them costs no GPU synchronisation (elsewhere the training engine checks the labels once, up front)."""
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must have shape (B, C), got {shape}")
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating-point tensor (the model's raw scores), got dtype {logits.dtype}; "
                        "convert it with logits.float()")
    if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(
            f"targets must be (B,) class indices matching logits {tuple(logits.shape)}, got {shape}; these losses "
            "are for single-label data (use binary cross-entropy for multi-hot targets)"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.device.type == "cpu" and targets.numel():
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(f"targets must be class indices in [0, {logits.shape[1] - 1}] for {logits.shape[1]} "
                             f"classes, got values in [{lo}, {hi}]; check the labels and the model's number of classes")
    check_choice("reduction", reduction, ("mean", "sum", "none"))


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _label_log_prob(logits: Tensor, targets: Tensor) -> Tensor:
    """``log p_y`` per example, in at least float32."""
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return torch.log_softmax(z, dim=1).gather(1, targets.long()[:, None])[:, 0]


def generalized_cross_entropy(logits: Tensor, targets: Tensor, q: float = 0.7, reduction: str = "mean") -> Tensor:
    """Generalized cross-entropy :math:`(1 - p_y^q) / q` (Zhang & Sabuncu, 2018).

    Computed as ``-expm1(q * log p_y) / q``, which stays accurate for small ``q`` (where it approaches
    cross-entropy) and never forms ``p_y`` by exponentiating a large negative logit difference twice.

    Args:
        logits: ``(B, C)``.
        targets: ``(B,)`` class indices.
        q: in ``(0, 1]``; 0.7 in the paper's experiments. Small ``q``: close to CE; ``q = 1``: ``1 - p_y``
            (half the MAE between the one-hot label and ``p``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: ``q`` outside ``(0, 1]``, shapes that do not match, class indices outside ``[0, C)`` (checked
            when the targets are on the CPU), an unknown reduction.
        TypeError: a ``q`` that is not a number, integer logits, non-integer targets.
    """
    _check_inputs(logits, targets, reduction)
    q = check_float("q", q, min=0, min_open=True, max=1, fix="q lies in (0, 1] (q -> 0 is cross-entropy, q = 1 is MAE)")
    values = -torch.expm1(q * _label_log_prob(logits, targets)) / q
    return _reduce(values, reduction)


def focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, reduction: str = "mean") -> Tensor:
    """Multi-class focal loss :math:`-(1 - p_y)^\\gamma \\log p_y` (Lin et al., 2017), without class weights.

    Args:
        logits: ``(B, C)``.
        targets: ``(B,)`` class indices.
        gamma: focusing parameter ``>= 0`` (0 gives cross-entropy; 2 in the paper).
        reduction: ``"mean"`` over the batch (not over batch x classes), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: ``gamma < 0`` (or not finite), shapes that do not match, class indices outside ``[0, C)``
            (on the CPU), an unknown reduction.
        TypeError: a ``gamma`` that is not a number, integer logits, non-integer targets.
    """
    _check_inputs(logits, targets, reduction)
    gamma = check_float("gamma", gamma, min=0, fix="0 is cross-entropy, 2 the paper's value")
    log_p = _label_log_prob(logits, targets)
    weight = (-torch.expm1(log_p)).clamp_min(0).pow(float(gamma))  # (1 - p_y)^gamma, accurate near p_y = 1
    return _reduce(-weight * log_p, reduction)


def cosface_loss(
    logits: Tensor, targets: Tensor, scale: float, margin: float = 0.35, reduction: str = "mean"
) -> Tensor:
    """CosFace, the additive cosine margin: :math:`\\mathrm{CE}(z - s\\,m\\,e_y, y)` on cosine logits
    :math:`z = s\\cos\\theta` (Wang et al., 2018).

    Args:
        logits: ``(B, C)`` **cosine logits** ``s * cos(theta)`` from a cosine head (unit-norm weights and
            features), e.g. :class:`hncam_utils.models.CosineCAMNet`; ordinary logits make no sense here.
        targets: ``(B,)`` class indices.
        scale: ``s``, the head's scale (``model.classifier.scale``).
        margin: ``m`` in cosine units (0.35 in the paper); ``margin = 0`` is cross-entropy on the cosine logits.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        ValueError: ``scale <= 0``, ``margin`` outside ``[0, 1)``, shapes that do not match, class indices
            outside ``[0, C)`` (on the CPU).
        TypeError: a ``scale`` or ``margin`` that is not a number, integer logits, non-integer targets.
    """
    _check_inputs(logits, targets, reduction)
    scale = check_float("scale", scale, min=0, min_open=True, fix="pass the cosine head's s (model.classifier.scale)")
    margin = check_float("margin", margin, min=0, max=1, max_open=True, fix="a cosine margin in [0, 1), e.g. 0.35")
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    shifted = z - float(scale) * float(margin) * F.one_hot(targets.long(), z.shape[1]).to(z.dtype)
    return F.cross_entropy(shifted, targets.long(), reduction=reduction)


def check_base_loss(name: str, params: Dict[str, Any]) -> None:
    """Validate a base-loss name and its parameters (``gce_q``, ``focal_gamma``, ``margin``) up front.

    Raises:
        ValueError: an unknown name or a parameter out of range. TypeError: a parameter that is not a number.
    """
    if name not in BASE_LOSSES:
        raise ValueError(f"unknown base loss {name!r}; choose one of {BASE_LOSSES}")
    check_float("gce_q", params.get("gce_q", 0.7), min=0, min_open=True, max=1, fix="gce_q lies in (0, 1]")
    check_float("focal_gamma", params.get("focal_gamma", 2.0), min=0, fix="focal_gamma is a number >= 0, e.g. 2")
    check_float("margin", params.get("margin", 0.35), min=0, max=1, max_open=True, fix="a cosine margin in [0, 1)")
