"""The Homogeneous Negative CAM (HNC) loss (Sun et al., ECCV 2020), with the official code's semantics.

This module depends on torch alone, so it can be copied into any project.

Notation: a network that ends in global average pooling (GAP) and a linear classifier ``W`` (C x D),
``b`` (C) has, for its last feature map ``f`` (D x H x W), the class activation maps (CAMs)

.. math::  M_c(i, j) = W_c \\cdot f(i, j) + b_c, \\qquad \\mathrm{logit}_c = \\tfrac{1}{HW} \\sum_{ij} M_c(i, j).

For each image the *negative* classes (every class that is not a ground-truth label) are ranked by the
spatial sum of their CAM and the top ``k`` are kept: the set ``S`` of selected (image, class) pairs.

* ``variant="mse"``:  :math:`\\mathcal{L} = \\frac{1}{|S|\\,HW} \\sum_{(n,c) \\in S} \\sum_{ij} M_{nc}(i,j)^2`
* ``variant="kd"``:   :math:`\\mathcal{L} = \\frac{1}{B} \\sum_{(n,c) \\in S} -\\frac{1}{HW}
  \\sum_{ij} \\log \\mathrm{softmax}_{ij}(M_{nc} / T)`

Inputs in float16/bfloat16 (autocast) are computed in float32; float64 stays float64.

The training objective is ``CE(logits, y) + lambda * HNC``.

**NaN and infinity** propagate, as in torch's own losses: the loss reads no values back from the device (that
would stall a GPU), so a NaN or infinite CAM (or feature) yields a NaN or infinite loss, which
:func:`hncam_utils.train.fit` stops on with a clear message. Ranking follows ``torch.topk``: a NaN score counts
as larger than every number, so a negative class whose map holds a NaN is always among the selected ``k`` and
its NaN reaches the loss; it is never silently skipped. Ground-truth classes are excluded whatever their
values. Hyper-parameters (``k``, ``variant``, ``temperature``) and shapes, dtypes and devices are checked at
the call; NaN or infinite hyper-parameters are refused.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_int, check_tensor
from .cam import Classifier, cams_for_classes, check_features, unpack_classifier

__all__ = ["HNCLoss", "hnc_loss", "positive_mask", "select_negatives", "VARIANTS"]

VARIANTS = ("mse", "kd")


def positive_mask(targets: Tensor, num_classes: int) -> Tensor:
    """Turn class indices ``(B,)`` or multi-hot labels ``(B, C)`` into a boolean ``(B, C)`` mask of positives.

    Args:
        targets: ``(B,)`` integer class indices in ``[0, C)``, or ``(B, C)`` multi-hot labels whose entries
            are 0 or 1 (bool, integer or floating dtype).
        num_classes: ``C``.

    Returns:
        A ``(B, C)`` boolean tensor, ``True`` where the class is a ground-truth label of the image.

    Raises:
        TypeError: class indices that are not integers.
        ValueError: a class index out of range, multi-hot labels of the wrong width or with values other
            than 0 and 1, or targets with more than two dimensions.
    """
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    num_classes = check_int("num_classes", num_classes, min=1)
    if targets.dim() == 1:
        if targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.is_complex():
            raise TypeError(
                f"class-index targets of shape (B,) must be integers, got dtype {targets.dtype}; "
                "pass labels as a LongTensor (e.g. targets.long()), or multi-hot labels of shape (B, C)"
            )
        if targets.numel() > 0:
            out_of_range = (targets < 0) | (targets >= num_classes)
            if targets.device.type in _READBACK_FREE:  # reading back is free on the CPU: a clear error at once
                if bool(out_of_range.any()):
                    lo, hi = int(targets.min()), int(targets.max())
                    raise ValueError(
                        f"class indices must lie in [0, {num_classes - 1}] for {num_classes} classes, "
                        f"got values in [{lo}, {hi}]; check the data set's labels and the model's number of classes"
                    )
            else:  # on an accelerator, check without a read-back (a device-side assert; fit checks on the host)
                _assert_on_device(~out_of_range.any(), f"class indices must lie in [0, {num_classes - 1}]")
        return F.one_hot(targets.long(), num_classes).bool()
    if targets.dim() == 2:
        if targets.shape[1] != num_classes:
            raise ValueError(
                f"multi-hot targets must have shape (B, {num_classes}) to match the {num_classes} classes, "
                f"got {tuple(targets.shape)}"
            )
        if targets.dtype == torch.bool:
            return targets
        valid = (targets == 0) | (targets == 1)
        if not bool(valid.all()):
            raise ValueError(
                "multi-hot targets must contain only 0 and 1; for soft labels threshold them first "
                "(targets > 0.5)"
            )
        return targets.bool()
    raise ValueError(
        f"targets must be (B,) class indices or (B, C) multi-hot labels, got {targets.dim()} dimensions "
        f"with shape {tuple(targets.shape)}"
    )


#: Devices where reading a value back to the host costs no pipeline stall.
_READBACK_FREE = ("cpu",)


def _assert_on_device(condition: Tensor, message: str) -> None:
    """Assert a boolean scalar tensor without reading it back (``torch._assert_async``); a no-op where this
    torch build or device has no asynchronous assert."""
    try:
        torch._assert_async(condition, message)
    except (AttributeError, NotImplementedError, TypeError):  # pragma: no cover - older builds / devices
        pass


def _at_least_float32(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32; float32 and float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def select_negatives(scores: Tensor, positives: Tensor, k: Optional[int]) -> Tuple[Tensor, Tensor]:
    """Pick, per image, the ``k`` highest-scoring classes that are not ground truth.

    Args:
        scores: ``(B, C)`` ranking scores: CAM spatial sums, or logits (the same order, see
            :meth:`HNCLoss.from_features`). Not differentiated through.
        positives: ``(B, C)`` boolean mask of ground-truth labels.
        k: how many negatives per image; ``None`` keeps every negative.

    Returns:
        ``(index, valid)``, both ``(B, k')`` with ``k' = min(k, C)`` (``C - 1`` for ``k=None`` on
        single-label data): the selected class indices in decreasing score order, and a mask that is
        ``False`` where an image has fewer than ``k`` negatives (multi-label only), so that slot is unused.

    A NaN score ranks above every number (``torch.topk``'s order), so a negative class with a NaN score is
    selected first; a positive class is never selected, whatever its score.

    Raises:
        TypeError: ``scores`` not a floating-point tensor, ``positives`` not a bool tensor, ``k`` not an int.
        ValueError: ``scores`` not ``(B, C)``, ``positives`` of another shape, ``k < 1``.
    """
    check_tensor("scores", scores, dims=(2,), shape_hint="(B, C)", floating=True)
    if not isinstance(positives, Tensor) or positives.dtype != torch.bool:
        raise TypeError(f"positives must be a boolean (B, C) tensor (e.g. from positive_mask(targets, C)), got "
                        f"{positives.dtype if isinstance(positives, Tensor) else type(positives).__name__}")
    if positives.shape != scores.shape:
        raise ValueError(f"positives must have the shape of scores {tuple(scores.shape)}, got {tuple(positives.shape)}")
    k = check_int("k", k, min=1, none_ok=True, fix="k is how many negatives to keep per image (None: all)")
    num_classes = scores.shape[1]
    if k is None:
        max_pos = int(positives.sum(dim=1).min()) if positives.numel() else 0
        k_eff = num_classes - max_pos
    else:
        k_eff = min(int(k), num_classes)
    masked = _at_least_float32(scores.detach()).masked_fill(positives, float("-inf"))
    index = masked.topk(k_eff, dim=1).indices
    valid = ~positives.gather(1, index)
    return index, valid


def _reduce(selected: Tensor, valid: Tensor, variant: str, temperature: float) -> Tensor:
    """The HNC value of ``(B, k', H, W)`` selected CAMs; float32 whatever the input dtype."""
    batch = selected.shape[0]
    hw = selected.shape[-1] * selected.shape[-2]
    maps = _at_least_float32(selected).flatten(2)  # (B, k', HW): float32 (or float64) even under autocast
    weight = valid.to(maps.dtype)
    if variant == "mse":
        per_pair = maps.pow(2).sum(dim=2)  # (B, k')
        count = weight.sum() * hw
        return (per_pair * weight).sum() / count.clamp_min(1.0)
    # kd: cross-entropy between the uniform distribution over pixels and softmax(M / T)
    log_p = torch.log_softmax(maps / temperature, dim=2)
    per_pair = -log_p.mean(dim=2)  # (B, k')
    return (per_pair * weight).sum() / batch


def _check_hparams(k: Optional[int], variant: str, temperature: float) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown HNC variant {variant!r}; choose one of {VARIANTS}")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"k must be a positive int or None (all negatives), got {k!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1 (or None for all negatives), got {k}")
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool):
        raise TypeError(f"temperature must be a number, got {temperature!r}")
    if not temperature > 0 or math.isinf(temperature):
        raise ValueError(
            f"temperature must be > 0 and finite, got {temperature}; an infinite T flattens every softmax, so kd "
            "would be a constant that trains nothing (the official code uses T = 1)"
        )


def _check_k_against_classes(k: Optional[int], num_classes: int) -> None:
    if num_classes < 2:
        raise ValueError(f"HNC needs at least 2 classes (one negative), got C = {num_classes}")
    if k is not None and k > num_classes - 1:
        raise ValueError(
            f"k = {k} is larger than the number of negative classes per image (C - 1 = {num_classes - 1}); "
            f"use k <= {num_classes - 1}, or k=None for all negatives"
        )


class HNCLoss(nn.Module):
    """Homogeneous Negative CAM loss: penalise the peaks of the top-``k`` negative CAMs.

    ``loss_fn(cams, targets)`` with ``cams`` the CAMs of **all** classes, shape ``(B, C, H, W)``,
    classifier bias included (see :func:`hncam_utils.cam.compute_cams`), returns a scalar:

    * ``mse``: the mean of ``M^2`` over all selected (image, class, pixel) entries
      (:math:`\\sum_{S}\\sum_{ij} M^2 / (|S| HW)`). Per class this is ``logit^2 + spatial variance``,
      so it also pulls negative logits toward zero, from below as well as from above.
    * ``kd``: for each selected pair the cross-entropy :math:`-\\frac{1}{HW}\\sum_{ij}\\log p_{ij}` between
      the uniform distribution and :math:`p = \\mathrm{softmax}_{ij}(M/T)`, summed over pairs and divided by
      the batch size ``B`` (not by ``k``). It equals ``KL(U || p) + log(HW)`` (minimum ``log HW`` per pair),
      ignores a constant added to a map (it only flattens peaks) and its gradient is
      :math:`(p - 1/HW) / (B T)`.

    Negatives are ranked per image by the spatial sum of their CAM; every ground-truth label is excluded.

    Multi-label targets (``(B, C)`` multi-hot): negatives are the absent labels. An image with fewer than
    ``k`` absent labels contributes all of them (nothing if it has none); ``mse`` averages over the pairs
    actually selected and ``kd`` still divides by ``B``. ``k`` is checked against ``C - 1``.

    Under autocast (fp16/bf16) the selected maps are cast to float32 before the softmax, the squares and
    every reduction, so the loss is float32 (float64 inputs stay float64).

    Args:
        k: negatives per image; ``None`` means all of them. The official ImageNet code uses ``k=100`` of
            1000 classes; it must be tuned per data set (``1 <= k <= C - 1``).
        variant: ``"mse"`` or ``"kd"``.
        temperature: ``T`` of the spatial softmax (``kd`` only); the official code uses 1.

    NaN / infinity: propagate (see the module docstring): a non-finite CAM gives a non-finite loss, and a
    negative class whose CAM holds a NaN is always selected. Values are not inspected on the top-k path
    (:meth:`from_features`), so no GPU synchronisation is added; the all-class call checks the class indices
    of ``targets`` (one read-back).

    Raises:
        ValueError: unknown variant, ``k < 1``, ``temperature <= 0`` or infinite (at construction); wrong
            number of dimensions, batch mismatch, class indices out of range, multi-hot labels of the wrong
            width, ``k > C - 1``, features and classifier of different widths or on different devices (at
            call time).
        TypeError: ``k`` not an int, non-integer class indices, CAMs or features that are not floating
            point, a classifier that is not ``nn.Linear``.

    Example:
        >>> loss_fn = HNCLoss(k=3, variant="kd")
        >>> logits, features = model(images)          # features: (B, D, H, W)
        >>> loss = F.cross_entropy(logits, y) + 0.1 * loss_fn.from_features(features, model.fc, y)
    """

    def __init__(self, k: Optional[int] = None, variant: str = "mse", temperature: float = 1.0) -> None:
        super().__init__()
        _check_hparams(k, variant, temperature)
        self.k = None if k is None else int(k)
        self.variant = variant
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"k={self.k}, variant={self.variant!r}, temperature={self.temperature}"

    def forward(self, cams: Tensor, targets: Tensor) -> Tensor:
        """HNC on the CAMs of all classes.

        Args:
            cams: ``(B, C, H, W)`` CAMs of every class, bias included.
            targets: ``(B,)`` class indices or ``(B, C)`` multi-hot labels.

        Returns:
            A scalar, float32 for half-precision or float32 inputs.
        """
        if not isinstance(cams, Tensor) or cams.dim() != 4:
            shape = tuple(cams.shape) if isinstance(cams, Tensor) else type(cams).__name__
            raise ValueError(
                f"cams must have shape (B, C, H, W) (the CAMs of all classes), got {shape}; "
                "to pass the last feature map instead use HNCLoss.from_features(features, classifier, targets)"
            )
        check_tensor("cams", cams, floating=True)
        _check_batch(cams.shape[0], targets)
        num_classes = cams.shape[1]
        _check_k_against_classes(self.k, num_classes)
        positives = positive_mask(targets.to(cams.device), num_classes)
        scores = _at_least_float32(cams.detach()).sum(dim=(2, 3))
        index, valid = select_negatives(scores, positives, self.k)
        b, k_sel = index.shape
        selected = cams.gather(1, index.view(b, k_sel, 1, 1).expand(-1, -1, *cams.shape[2:]))
        return _reduce(selected, valid, self.variant, self.temperature)

    def from_features(
        self,
        features: Tensor,
        classifier: Classifier,
        targets: Tensor,
        logits: Optional[Tensor] = None,
    ) -> Tensor:
        """HNC from the last feature map, building only the ``k`` selected CAMs.

        Same value and gradients as ``self(compute_cams(features, W, b), targets)``, at the cost of
        ``B * k`` CAMs instead of ``B * C``: the logits rank the negatives, the ``k`` selected weight rows
        are gathered, and only their CAMs are built.

        Why the ranking is the same: GAP and the linear layer commute, so
        :math:`\\sum_{ij} M_c(i,j) = \\sum_{ij} (W_c \\cdot f(i,j) + b_c) = HW \\cdot \\mathrm{logit}_c`.
        Multiplying every score by the same positive constant ``HW`` does not change their order. And
        unselected CAMs receive no gradient in the all-class path, so skipping them changes no gradient.

        Args:
            features: ``(B, D, H, W)`` last feature map (before pooling).
            classifier: the model's ``nn.Linear(D, C)`` head, or a ``(weight, bias)`` pair.
            targets: ``(B,)`` class indices or ``(B, C)`` multi-hot labels.
            logits: optional ``(B, C)`` logits already computed by the model (used for ranking only);
                computed from the pooled features when omitted.

        Returns:
            A scalar, float32 for half-precision or float32 inputs.
        """
        weight, bias = unpack_classifier(classifier)
        check_features(features, weight)
        _check_batch(features.shape[0], targets)
        num_classes = weight.shape[0]
        _check_k_against_classes(self.k, num_classes)
        positives = positive_mask(targets.to(features.device), num_classes)
        # rank at full precision: autocast would run F.linear in half precision and could swap near-ties
        with torch.no_grad(), _full_precision(features.device.type):
            if logits is None:
                f32 = _at_least_float32
                scores = F.linear(f32(features).mean(dim=(2, 3)), f32(weight), None if bias is None else f32(bias))
            else:
                check_tensor("logits", logits, floating=True)
                if logits.shape != (features.shape[0], num_classes):
                    raise ValueError(
                        f"logits must have shape ({features.shape[0]}, {num_classes}), got {tuple(logits.shape)}"
                    )
                scores = _at_least_float32(logits)
        index, valid = select_negatives(scores, positives, self.k)
        selected = cams_for_classes(features, weight, bias, index)  # (B, k', H, W)
        return _reduce(selected, valid, self.variant, self.temperature)


def _full_precision(device_type: str):
    """Autocast switched off where it is on; a null context where this torch build has no autocast for
    ``device_type`` (entering ``torch.autocast("mps", enabled=False)`` raises on older builds)."""
    try:
        return torch.autocast(device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def hnc_loss(
    cams: Tensor,
    targets: Tensor,
    k: Optional[int] = None,
    variant: str = "mse",
    temperature: float = 1.0,
) -> Tensor:
    """Functional form of :class:`HNCLoss`: ``HNCLoss(k, variant, temperature)(cams, targets)``."""
    return HNCLoss(k=k, variant=variant, temperature=temperature)(cams, targets)


def _check_batch(batch: int, targets: Tensor) -> None:
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.dim() == 0 or targets.shape[0] != batch:
        raise ValueError(
            f"batch mismatch: {batch} maps but targets of shape {tuple(targets.shape)}; "
            "targets need one entry (or one multi-hot row) per image"
        )
