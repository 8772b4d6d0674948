"""Class Activation Maps (Zhou et al., CVPR 2016) for networks that end in GAP + a linear classifier.

Depends on torch alone.

For a last feature map ``f`` (D x H x W) and a classifier with weights ``W`` (C x D) and bias ``b`` (C):

.. math::  M_c(i, j) = W_c \\cdot f(i, j) + b_c, \\qquad
           \\frac{1}{HW}\\sum_{ij} M_c(i, j) = W_c \\cdot \\bar f + b_c = \\mathrm{logit}_c

No ReLU and no normalisation: these are the raw maps the HNC loss works on. For display use
:func:`upsample_cams` and :func:`normalize_cams` (or :func:`shared_scale` to compare models on one scale).

**NaN and infinity.** :func:`compute_cams` and :func:`upsample_cams` propagate them, like any torch operation
(a NaN feature gives NaN maps). The display helpers work on the *finite* values: :func:`shared_scale` and
:func:`normalize_cams` compute their ranges from the finite values only and return NaN where a map is not
finite (matplotlib draws NaN in the colour map's "bad" colour), so one bad pixel neither hides the others nor
collapses the scale; maps with no finite value at all raise ``ValueError``.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_choice, check_float, check_tensor

__all__ = ["compute_cams", "check_features", "unpack_classifier", "upsample_cams", "normalize_cams", "shared_scale"]

Classifier = Union[nn.Linear, Tuple[Tensor, Optional[Tensor]]]


def unpack_classifier(classifier: Classifier) -> Tuple[Tensor, Optional[Tensor]]:
    """Return ``(weight (C, D), bias (C,) or None)`` of an ``nn.Linear`` head or a ``(weight, bias)`` pair.

    Raises:
        TypeError: anything else.
        ValueError: a weight that is not 2-D or a bias of the wrong shape.
    """
    if isinstance(classifier, nn.Linear):
        return classifier.weight, classifier.bias
    if isinstance(classifier, (tuple, list)) and len(classifier) == 2 and isinstance(classifier[0], Tensor):
        weight, bias = classifier
        if bias is not None and not isinstance(bias, Tensor):
            raise TypeError(f"classifier bias must be a (C,) tensor or None, got {type(bias).__name__}")
        if weight.dim() != 2:
            raise ValueError(f"classifier weight must be (C, D), got shape {tuple(weight.shape)}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"classifier bias must be (C,) = ({weight.shape[0]},), got {tuple(bias.shape)}")
        return weight, bias
    raise TypeError(
        "classifier must be the model's nn.Linear head (e.g. model.fc) or a (weight, bias) pair, "
        f"got {type(classifier).__name__}"
    )


def check_features(features: Tensor, weight: Tensor) -> None:
    """Check that ``features`` is a ``(B, D, H, W)`` map matching a ``(C, D)`` classifier weight.

    Looks at shape, dtype and device only (no GPU synchronisation).

    Raises:
        ValueError: not a 4-D tensor, ``D`` differs from the classifier's input width, or features and
            classifier on different devices.
        TypeError: features that are not floating point.
    """
    if not isinstance(features, Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must have shape (B, D, H, W) (the last feature map), got {shape}")
    check_tensor("features", features, floating=True)
    if features.shape[1] != weight.shape[1]:
        raise ValueError(
            f"features have D = {features.shape[1]} channels but the classifier expects {weight.shape[1]} "
            "inputs; pass the feature map that feeds the global average pooling"
        )
    if features.device != weight.device:
        raise ValueError(
            f"features are on {features.device} but the classifier is on {weight.device}; "
            "move them to one device (e.g. model.to(features.device))"
        )


def compute_cams(
    features: Tensor,
    classifier: Classifier,
    classes: Optional[Union[Tensor, Sequence[int], int]] = None,
) -> Tensor:
    """CAMs ``M_c = W_c . f + b_c`` for all classes or only for chosen ones.

    Building only the classes you need costs ``B * k * D * H * W`` instead of ``B * C * D * H * W``
    multiply-adds, which matters for 1000-class heads.

    Args:
        features: ``(B, D, H, W)`` last feature map, before global average pooling.
        classifier: the ``nn.Linear(D, C)`` head, or a ``(weight, bias)`` pair (``bias`` may be ``None``).
        classes: ``None`` for all ``C`` classes; an int or a sequence / 1-D tensor of ``k`` class ids shared
            by every image; or a ``(B, k)`` integer tensor of per-image class ids (e.g. the ground truth
            and the top negatives of each image).

    Returns:
        ``(B, C, H, W)`` for ``classes=None``, else ``(B, k, H, W)`` in the order given.

    Raises:
        ValueError: features that are not 4-D, a width that does not match the classifier, class ids out of
            range, or per-image ids whose batch size differs from the features'.
    """
    weight, bias = unpack_classifier(classifier)
    check_features(features, weight)
    num_classes = weight.shape[0]
    if classes is None:
        cams = torch.einsum("cd,bdhw->bchw", weight, features)
        return cams if bias is None else cams + bias[None, :, None, None]
    index = torch.as_tensor(classes, device=weight.device)
    if index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ValueError(f"classes must be integer class ids, got dtype {index.dtype}")
    index = index.long()
    if index.dim() == 0:
        index = index[None]
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_classes):
        raise ValueError(
            f"class ids must lie in [0, {num_classes - 1}], got values in [{int(index.min())}, {int(index.max())}]"
        )
    if index.dim() == 1:
        cams = torch.einsum("kd,bdhw->bkhw", weight[index], features)
        return cams if bias is None else cams + bias[index][None, :, None, None]
    if index.dim() == 2:
        if index.shape[0] != features.shape[0]:
            raise ValueError(
                f"per-image class ids must have shape (B, k) with B = {features.shape[0]}, got {tuple(index.shape)}"
            )
        return cams_for_classes(features, weight, bias, index)
    raise ValueError(f"classes must be None, an int, a (k,) or a (B, k) tensor, got shape {tuple(index.shape)}")


def cams_for_classes(features: Tensor, weight: Tensor, bias: Optional[Tensor], index: Tensor) -> Tensor:
    """``(B, k, H, W)`` CAMs of per-image classes ``index`` ``(B, k)``, without input checks.

    The unchecked core of :func:`compute_cams` for callers that built ``index`` themselves (e.g. the top-k
    path of the HNC loss): it reads nothing back from the device, so it never stalls a GPU pipeline.
    """
    cams = torch.einsum("bkd,bdhw->bkhw", weight[index], features)
    return cams if bias is None else cams + bias[index][:, :, None, None]


def upsample_cams(cams: Tensor, size: Union[int, Tuple[int, int]], mode: str = "bilinear") -> Tensor:
    """Resize ``(B, K, h, w)`` (or ``(K, h, w)`` / ``(h, w)``) maps to the image size for display or
    localization. Bilinear with ``align_corners=False`` keeps the mean of the map (up to edge effects).

    Args:
        cams: the maps (any dtype; integers and half precision are computed in float32).
        size: the output side, or ``(height, width)``, in pixels (>= 1).
        mode: ``"bilinear"``, ``"bicubic"``, ``"nearest"`` or ``"area"``.

    Raises:
        TypeError: ``cams`` not a tensor, ``size`` not an int or a pair of ints.
        ValueError: ``cams`` with the wrong number of dimensions, a size < 1, an unknown ``mode``.
    """
    check_tensor("cams", cams)
    check_choice("mode", mode, ("bilinear", "bicubic", "nearest", "area"))
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise TypeError(f"size must be an int or a (height, width) pair of ints, got {size!r}; e.g. images.shape[-2:]")
    if min(size) < 1:
        raise ValueError(f"size must be at least 1 pixel a side, got {tuple(size)}")
    size = (int(size[0]), int(size[1]))
    dims = cams.dim()
    if dims not in (2, 3, 4):
        raise ValueError(f"cams must be (h, w), (K, h, w) or (B, K, h, w), got shape {tuple(cams.shape)}")
    x = cams
    while x.dim() < 4:
        x = x.unsqueeze(0)
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    if x.dtype in (torch.float16, torch.bfloat16) or not x.dtype.is_floating_point:
        x = x.float()
    out = F.interpolate(x, size=size, mode=mode, **kwargs)
    while out.dim() > dims:
        out = out.squeeze(0)
    return out


def shared_scale(maps: Iterable[Tensor], symmetric: bool = True, quantile: Optional[float] = None) -> Tuple[float, float]:
    """One ``(vmin, vmax)`` for several sets of maps, so that figures comparing models use one colour scale.

    Args:
        maps: tensors of any shape (e.g. the CAMs of a CE model and of an HNC model).
        symmetric: centre the scale on zero (``-m, m`` with ``m`` the largest absolute value): negative
            evidence and positive evidence get the same colour depth.
        quantile: use this quantile of the absolute values (e.g. 0.99) instead of the maximum, to keep one
            outlier from washing out the rest; in ``(0, 1]``.

    NaN and infinite values are left out: the scale comes from the finite values (matplotlib draws the others
    in the colour map's "bad" colour).

    Raises:
        TypeError: ``maps`` is not an iterable of tensors.
        ValueError: no map, only empty maps, no finite value at all, or ``quantile`` outside ``(0, 1]``.
    """
    if isinstance(maps, Tensor):
        maps = [maps]
    try:
        maps = list(maps)
    except TypeError:
        raise TypeError(f"maps must be an iterable of tensors (e.g. [cams_ce, cams_hnc]), got {type(maps).__name__}") from None
    for i, m in enumerate(maps):
        check_tensor(f"maps[{i}]", m)
    check_float("quantile", quantile, min=0, max=1, min_open=True, none_ok=True, fix="e.g. 0.99")
    if not maps:
        raise ValueError("shared_scale needs at least one non-empty map; maps is empty")
    flat = torch.cat([m.detach().float().flatten().cpu() for m in maps])
    if flat.numel() == 0:
        raise ValueError("shared_scale needs at least one non-empty map")
    flat = flat[torch.isfinite(flat)]
    if flat.numel() == 0:
        raise ValueError("maps hold no finite value (all NaN or infinite); check the model or features that produced them")
    if symmetric:
        a = flat.abs()
        m = float(a.quantile(quantile)) if quantile is not None else float(a.max())
        m = m if m > 0 else 1.0
        return -m, m
    if quantile is not None:
        lo, hi = float(flat.quantile(1 - quantile)), float(flat.quantile(quantile))
    else:
        lo, hi = float(flat.min()), float(flat.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def normalize_cams(
    cams: Tensor,
    mode: str = "per_map",
    scale: Optional[Tuple[float, float]] = None,
    eps: float = 1e-8,
) -> Tensor:
    """Map CAMs to ``[0, 1]`` for display.

    Args:
        cams: ``(..., H, W)`` maps.
        mode: ``"per_map"`` stretches each map to ``[0, 1]`` on its own (hides magnitude differences: an
            almost flat negative CAM looks as bright as a peaked one); ``"shared"`` uses one scale for
            all maps, ``scale`` if given, else the min and max over ``cams``. An all-constant map gives 0
            instead of dividing by zero.
        scale: ``(vmin, vmax)`` for ``"shared"``, e.g. from :func:`shared_scale` over several models; finite,
            with ``vmin < vmax``.
        eps: the smallest range divided by (> 0).

    NaN and infinite pixels come out as NaN and are left out of every range, so the finite pixels are
    normalised as if they were alone (matplotlib draws NaN in the colour map's "bad" colour).

    Raises:
        TypeError: ``cams`` not a tensor, ``scale`` not a pair of numbers.
        ValueError: fewer than 2 dimensions, an unknown ``mode``, a reversed, empty or non-finite ``scale``,
            ``eps <= 0``; in ``"shared"`` mode without ``scale``, maps with no finite value.
    """
    check_tensor("cams", cams, dims=tuple(range(2, 9)), shape_hint="(..., H, W)")
    check_choice("mode", mode, ("per_map", "shared"))
    eps = check_float("eps", eps, min=0, min_open=True)
    x = cams.detach().float()
    finite = torch.isfinite(x)
    x = x.masked_fill(~finite, float("nan"))
    if mode == "per_map":
        lo = x.masked_fill(~finite, float("inf")).amin(dim=(-2, -1), keepdim=True)
        hi = x.masked_fill(~finite, float("-inf")).amax(dim=(-2, -1), keepdim=True)
        out = (x - lo) / (hi - lo).clamp_min(eps)
        return out.masked_fill(~finite, float("nan"))  # a map without finite pixels stays NaN
    if scale is not None:
        if isinstance(scale, (str, bytes)) or not isinstance(scale, (tuple, list)) or len(scale) != 2:
            raise TypeError(f"scale must be a (vmin, vmax) pair, e.g. from shared_scale(...), got {scale!r}")
        lo = check_float("scale[0] (vmin)", scale[0])
        hi = check_float("scale[1] (vmax)", scale[1])
        if not lo < hi:
            raise ValueError(
                f"scale must be (vmin, vmax) with vmin < vmax, got {tuple(scale)}; "
                + ("swap the two values" if lo > hi else "widen the range")
            )
    else:
        if not bool(finite.any()):
            raise ValueError("cams hold no finite value (all NaN or infinite); nothing to normalise")
        lo, hi = float(x[finite].min()), float(x[finite].max())
    return ((x - lo) / max(hi - lo, eps)).clamp(0.0, 1.0)
