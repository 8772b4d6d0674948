"""Weakly supervised object localization (WSOL) metrics, as Choe et al. define them (CVPR 2020).

"Evaluating Weakly Supervised Object Localization Methods Right" (Choe, Oh, Lee, Chun, Akata, Shim), code
``clovaai/wsolevaluation``. A classifier trained with image labels only must also say *where* the object is:

1. The CAM of the **ground-truth** class is resized to the image (bicubic, as their ``cv2.INTER_CUBIC``) and
   min-max normalised to ``[0, 1]`` (a constant map becomes all zeros): :func:`prepare_cams`.
2. For every threshold ``tau`` of a grid in ``[0, 1)`` (step 0.01 here; they allow 0.001), the pixels with
   ``cam > tau`` (on the map quantised to 8 bits, as their ``cv2.threshold`` does) form connected regions
   (8-connectivity, ``scipy.ndimage.label``); each region gives its tight box ``(x0, y0, x1, y1)``:
   :func:`boxes_from_cam`.
3. A box is correct when its IoU with the ground-truth box reaches ``delta``. IoU uses their integer-pixel
   convention (a box ``(x0, y0, x1, y1)`` covers ``(x1 - x0 + 1) * (y1 - y0 + 1)`` pixels): :func:`box_iou_matrix`.

The numbers (each in %, over the images of the evaluation set):

* ``BoxAcc(tau, delta)``: the share of images whose box at threshold ``tau`` is correct at IoU ``delta``.
* **MaxBoxAcc** (their first version): ``max_tau BoxAcc(tau, 0.5)`` with the box of the *largest* region.
* **MaxBoxAccV2**: the mean over ``delta`` in ``{0.3, 0.5, 0.7}`` of ``max_tau BoxAcc(tau, delta)``, where an
  image counts as correct when *any* of its regions' boxes is (the best box over all connected regions).
* **GT-known localization** (GT-known Loc): the CAM of the true class gives a correct box at IoU 0.5 (largest
  region), at one threshold for the whole set: the optimal one by default (then it equals MaxBoxAcc), or a fixed
  one (the CAM paper used 0.2).
* **Top-1 localization** (Top-1 Loc): the same *and* the top-1 prediction is the true class, at the same threshold.

Differences from their code, none of which changes a box: connected regions come from ``scipy.ndimage.label``
instead of OpenCV's contours (OpenCV's ``RETR_TREE`` also lists holes, whose boxes lie inside their region's box;
the largest region is chosen by pixel count rather than contour area).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_float, check_int, check_module, check_tensor, show
from .cam import compute_cams

__all__ = [
    "IOU_THRESHOLDS",
    "cam_thresholds",
    "prepare_cams",
    "boxes_from_cam",
    "box_iou_matrix",
    "gt_box_pixels",
    "WSOLEvaluator",
    "WSOLResult",
    "evaluate_wsol",
]

IOU_THRESHOLDS: Tuple[float, ...] = (0.3, 0.5, 0.7)
_EIGHT = np.ones((3, 3), dtype=int)  # 8-connectivity, as OpenCV's contours


def cam_thresholds(step: float = 0.01) -> np.ndarray:
    """The CAM thresholds ``0, step, 2 step, ... < 1`` (Choe et al.'s ``cam_curve_interval``)."""
    step = check_float("step", step, min=0, max=1, min_open=True, max_open=True, fix="e.g. 0.01 (Choe et al.)")
    return np.arange(0, 1, step)


def _check_size(name: str, size: Any) -> Tuple[int, int]:
    """``(H, W)``, two ints >= 1 (a ``torch.Size`` such as ``images.shape[-2:]`` too)."""
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"{name} must be (H, W), a pair of ints, got {show(size)}; e.g. images.shape[-2:]")
    return (check_int(f"{name}[0]", size[0], min=1), check_int(f"{name}[1]", size[1], min=1))


def _as_boxes(name: str, boxes: Any) -> np.ndarray:
    """``boxes`` as a float64 array whose last dimension holds ``(x0, y0, x1, y1)``."""
    try:
        arr = np.asarray(boxes.detach().cpu() if isinstance(boxes, Tensor) else boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be boxes (x0, y0, x1, y1) as a tensor or array of numbers, got "
                        f"{show(boxes)}") from None
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), boxes (x0, y0, x1, y1), got shape {arr.shape}")
    return arr


def prepare_cams(cams: Tensor, size: Tuple[int, int]) -> Tensor:
    """Resize ``(B, h, w)`` CAMs to ``size = (H, W)`` (bicubic) and min-max normalise each to ``[0, 1]``.

    A map whose values are all equal becomes all zeros (their ``normalize_scoremap`` turns the NaN of 0 / 0
    into zeros).

    Raises:
        TypeError: ``cams`` not a tensor, ``size`` not a pair of ints. ValueError: ``cams`` not ``(B, h, w)``,
            a side of ``size`` below 1.
    """
    check_tensor("cams", cams, dims=(3,), shape_hint="(B, h, w) (one map per image: cams[:, class])")
    size = _check_size("size", size)
    x = cams.detach().float()
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x[:, None], size=size, mode="bicubic", align_corners=False)[:, 0]
    lo = x.amin(dim=(1, 2), keepdim=True)
    span = x.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), torch.zeros_like(x))


def boxes_from_cam(
    cam: np.ndarray, thresholds: Sequence[float], all_regions: bool = True
) -> List[np.ndarray]:
    """The boxes of the regions where a normalised CAM exceeds each threshold.

    Args:
        cam: ``(H, W)`` map in ``[0, 1]`` (see :func:`prepare_cams`).
        thresholds: CAM thresholds in ``[0, 1)``; a pixel is in when its 8-bit value exceeds
            ``int(tau * max)`` (their ``cv2.threshold`` on ``uint8(cam * 255)``).
        all_regions: one box per connected region (MaxBoxAccV2); else only the largest region's (MaxBoxAcc).

    Returns:
        One ``(n, 4)`` int array of boxes ``(x0, y0, x1, y1)`` per threshold (``x1 <= W - 1``,
        ``y1 <= H - 1`` as theirs); ``[[0, 0, 0, 0]]`` when no pixel passes.

    Raises:
        ValueError: a map that is not 2-D or not normalised to ``[0, 1]`` (its 8-bit quantisation would wrap
            around), thresholds outside ``[0, 1)``.
    """
    cam = np.asarray(cam.detach().cpu() if isinstance(cam, Tensor) else cam, dtype=np.float32)
    if cam.ndim == 2 and cam.size and not (np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1):
        raise ValueError(f"cam must be normalised to [0, 1], got values in [{np.nanmin(cam):.3g}, {np.nanmax(cam):.3g}]"
                         "; prepare it with prepare_cams(cams, size)")
    thresholds = _check_thresholds(thresholds)
    every, largest = _region_boxes(cam, thresholds)
    return every if all_regions else largest


def _region_boxes(cam: np.ndarray, thresholds: Sequence[float]) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Both box lists of :func:`boxes_from_cam` (all regions, largest region) from one labelling per threshold."""
    from scipy import ndimage

    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be (H, W), got shape {cam.shape}")
    h, w = cam.shape
    quantised = (cam * 255).astype(np.uint8)
    peak = int(quantised.max())
    empty = np.zeros((1, 4), dtype=np.int64)
    cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    every: List[np.ndarray] = []
    largest: List[np.ndarray] = []
    for tau in thresholds:
        cut = int(tau * peak)
        if cut not in cache:
            labels, n = ndimage.label(quantised > cut, structure=_EIGHT)
            if n == 0:
                cache[cut] = (empty, empty)
            else:
                slices = ndimage.find_objects(labels)
                boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.int64)
                boxes[:, 2] = np.minimum(boxes[:, 2], w - 1)
                boxes[:, 3] = np.minimum(boxes[:, 3], h - 1)
                sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
                cache[cut] = (boxes, boxes[[int(np.argmax(sizes))]])
        every.append(cache[cut][0])
        largest.append(cache[cut][1])
    return every, largest


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(n, 4)`` with every box in ``b`` ``(m, 4)``, integer-pixel convention.

    A box ``(x0, y0, x1, y1)`` covers ``(x1 - x0 + 1) * (y1 - y0 + 1)`` pixels (Choe et al.'s
    ``calculate_multiple_iou``); a degenerate union gives IoU 0.

    Raises:
        TypeError: not numbers. ValueError: a last dimension other than 4.
    """
    a = _as_boxes("a", a).reshape(-1, 4)[:, None, :]
    b = _as_boxes("b", b).reshape(-1, 4)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def gt_box_pixels(boxes: Tensor) -> np.ndarray:
    """Ground-truth boxes ``(..., 4)`` (float ``x0, y0, x1, y1`` in image pixels, e.g. from
    ``CUB200(..., return_box=True)``) as the integers Choe et al. compare against (``int()`` truncation, as their
    ``resize_bbox``).

    Raises:
        TypeError: not numbers. ValueError: a last dimension other than 4.
    """
    return _as_boxes("boxes", boxes).astype(np.int64)


def _check_thresholds(thresholds: Any) -> np.ndarray:
    try:
        grid = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"thresholds must be a sequence of numbers in [0, 1), got {show(thresholds)}; "
                        "e.g. cam_thresholds(0.01)") from None
    if grid.ndim != 1 or len(grid) == 0 or not np.isfinite(grid).all() or (grid < 0).any() or (grid >= 1).any():
        raise ValueError(f"thresholds must be a non-empty 1-D grid in [0, 1), got {show(thresholds)}; "
                         "e.g. cam_thresholds(0.01)")
    return grid


@dataclass
class WSOLResult:
    """What :meth:`WSOLEvaluator.compute` returns (accuracies in %).

    Attributes:
        maxboxacc: MaxBoxAcc (IoU 0.5, largest region, best threshold).
        maxboxacc_v2: MaxBoxAccV2 (mean over IoU 0.3 / 0.5 / 0.7, best box over all regions, best threshold each).
        maxboxacc_at: ``{delta: max_tau BoxAcc(tau, delta)}`` over all regions (the three terms of V2).
        gt_known_loc, top1_loc: at IoU 0.5 with the largest region, at ``loc_threshold``.
        loc_threshold: the CAM threshold used for the two above (the optimal one unless fixed).
        thresholds: the grid. box_acc: ``{delta: (T,) curve}`` over all regions; box_acc_largest: ``(T,)`` at 0.5.
        iou: per image, the IoU of the largest region's box at ``loc_threshold``.
        correct: per image, whether the top-1 prediction was right.
        n: images evaluated.
    """

    maxboxacc: float
    maxboxacc_v2: float
    maxboxacc_at: Dict[float, float]
    gt_known_loc: float
    top1_loc: float
    loc_threshold: float
    thresholds: np.ndarray
    box_acc: Dict[float, np.ndarray]
    box_acc_largest: np.ndarray
    iou: np.ndarray
    correct: np.ndarray
    n: int = field(default=0)

    def summary(self) -> Dict[str, float]:
        """The headline numbers as a flat dict (for tables and result files)."""
        out = {"maxboxacc": self.maxboxacc, "maxboxacc_v2": self.maxboxacc_v2,
               "gt_known_loc": self.gt_known_loc, "top1_loc": self.top1_loc, "loc_threshold": self.loc_threshold}
        out.update({f"maxboxacc_iou{int(round(d * 100))}": v for d, v in self.maxboxacc_at.items()})
        return out


class WSOLEvaluator:
    """Accumulate ground-truth-class CAMs batch by batch, then compute the WSOL metrics.

    Args:
        thresholds: the CAM threshold grid (default :func:`cam_thresholds` with step 0.01).
        iou_thresholds: the ``delta`` values MaxBoxAccV2 averages over (default 0.3, 0.5, 0.7).
        loc_threshold: a fixed CAM threshold for GT-known / Top-1 Loc (``None``: the optimal one, so that
            GT-known Loc = MaxBoxAcc).

    Example::

        ev = WSOLEvaluator()
        for images, labels, boxes in loader:              # CUB200(..., return_box=True)
            logits, features = model(images)
            gt = compute_cams(features, model.classifier, labels)[:, 0]
            ev.accumulate(gt, boxes, images.shape[-2:], logits.argmax(1) == labels)
        print(ev.compute().summary())
    """

    def __init__(
        self,
        thresholds: Optional[Sequence[float]] = None,
        iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
        loc_threshold: Optional[float] = None,
    ) -> None:
        self.thresholds = cam_thresholds() if thresholds is None else _check_thresholds(thresholds)
        if isinstance(iou_thresholds, (str, bytes)) or not isinstance(iou_thresholds, Sequence):
            raise TypeError(f"iou_thresholds must be a sequence of IoUs in (0, 1], got {show(iou_thresholds)}; "
                            "e.g. (0.3, 0.5, 0.7), or (0.5,) for one")
        self.iou_thresholds = tuple(check_float(f"iou_thresholds[{i}]", d, min=0, min_open=True, max=1)
                                    for i, d in enumerate(iou_thresholds))
        if not self.iou_thresholds:
            raise ValueError("iou_thresholds is empty; pass at least one IoU, e.g. (0.5,)")
        self.loc_threshold = check_float("loc_threshold", loc_threshold, min=0, max=1, max_open=True, none_ok=True,
                                         fix="e.g. 0.2 (the CAM paper), or None for the optimal threshold")
        self._iou_all: List[np.ndarray] = []
        self._iou_largest: List[np.ndarray] = []
        self._correct: List[np.ndarray] = []

    def accumulate(
        self,
        cams: Tensor,
        boxes: Tensor,
        image_size: Optional[Tuple[int, int]] = None,
        correct: Optional[Tensor] = None,
    ) -> None:
        """Add a batch.

        Args:
            cams: ``(B, h, w)`` raw CAMs of the ground-truth class (any scale: they are prepared here).
            boxes: ``(B, 4)`` ground-truth boxes ``(x0, y0, x1, y1)`` in image pixels, or ``(B, K, 4)`` with
                several boxes per image (rows of ``-1`` ignored); the best match counts, as theirs.
            image_size: ``(H, W)`` of the images (default: the CAMs' own size).
            correct: ``(B,)`` bools, top-1 prediction right (needed for Top-1 Loc; default all False).

        Raises:
            TypeError / ValueError: ``cams`` not ``(B, h, w)``, boxes not ``(B, 4)`` or ``(B, K, 4)``, a bad
                ``image_size``, counts that differ, an image without a box.
        """
        check_tensor("cams", cams, dims=(3,), shape_hint="(B, h, w) (the ground-truth class's CAM per image)")
        size = _check_size("image_size", image_size) if image_size is not None else tuple(cams.shape[-2:])
        maps = prepare_cams(cams, size).cpu().numpy()
        gts = gt_box_pixels(boxes)
        if gts.ndim == 2:
            gts = gts[:, None, :]
        if gts.ndim != 3:
            raise ValueError(f"boxes must be (B, 4) or (B, K, 4), got shape {gts.shape}")
        if gts.shape[0] != maps.shape[0]:
            raise ValueError(f"{maps.shape[0]} CAMs but {gts.shape[0]} box rows")
        for cam, gt in zip(maps, gts):
            gt = gt[(gt >= 0).all(axis=1)]
            if len(gt) == 0:
                raise ValueError("an image without a ground-truth box: WSOL metrics need one per image")
            all_boxes, largest = _region_boxes(cam, self.thresholds)
            self._iou_all.append(np.array([box_iou_matrix(b, gt).max() for b in all_boxes]))
            self._iou_largest.append(np.array([box_iou_matrix(b, gt).max() for b in largest]))
        flags = np.zeros(len(maps), dtype=bool) if correct is None else torch.as_tensor(correct).cpu().numpy().astype(bool)
        if flags.shape != (len(maps),):
            raise ValueError(f"correct must have shape ({len(maps)},), got {flags.shape}")
        self._correct.append(flags)

    def compute(self) -> WSOLResult:
        """The metrics over everything accumulated.

        Raises:
            ValueError: nothing was accumulated.
        """
        if not self._iou_all:
            raise ValueError("no CAMs were accumulated")
        iou_all, iou_largest = np.stack(self._iou_all), np.stack(self._iou_largest)  # (N, T)
        correct = np.concatenate(self._correct)
        box_acc = {d: 100.0 * (iou_all >= d).mean(axis=0) for d in self.iou_thresholds}
        largest = 100.0 * (iou_largest >= 0.5).mean(axis=0)
        if self.loc_threshold is None:
            t = int(np.argmax(largest))
        else:
            t = int(np.argmin(np.abs(self.thresholds - self.loc_threshold)))
        hit = iou_largest[:, t] >= 0.5
        at = {d: float(curve.max()) for d, curve in box_acc.items()}
        return WSOLResult(
            maxboxacc=float(largest.max()),
            maxboxacc_v2=float(np.mean(list(at.values()))),
            maxboxacc_at=at,
            gt_known_loc=100.0 * float(hit.mean()),
            top1_loc=100.0 * float((hit & correct).mean()),
            loc_threshold=float(self.thresholds[t]),
            thresholds=self.thresholds,
            box_acc=box_acc,
            box_acc_largest=largest,
            iou=iou_largest[:, t],
            correct=correct,
            n=len(correct),
        )


@torch.no_grad()
def evaluate_wsol(
    model: nn.Module,
    loader: Iterable,
    device: Optional[torch.device] = None,
    k: int = 3,
    thresholds: Optional[Sequence[float]] = None,
    loc_threshold: Optional[float] = None,
) -> Dict[str, object]:
    """Accuracy, negative-CAM statistics and WSOL metrics of a CAM model over a loader with boxes.

    Args:
        model: a CAM model (forward returns ``(logits, features)``).
        loader: yields ``(images, labels, boxes)``, e.g. ``CUB200(..., transform=cub_transforms(False),
            return_box=True)`` in a ``DataLoader``.
        k: the negatives ``neg_peak_topk`` averages over.
        thresholds, loc_threshold: see :class:`WSOLEvaluator`.

    Returns:
        ``{"top1": %, "neg_peak": mean, "neg_peak_topk": mean, "gt_peak": mean, "neg_ratio": ratio of means,
        "wsol": WSOLResult, "per_image": {"label", "pred", "neg_peak", "neg_peak_topk", "gt_peak"} arrays}``.
        For figures of single images, :func:`hncam_utils.metrics.gt_and_top_negative_cams` recomputes their maps.

    Raises:
        TypeError: ``model`` not a module, a loader whose batches are not ``(images, labels, boxes)``.
        ValueError: ``k < 1``, labels the model has no output for, a loader that yields nothing.
    """
    from .metrics import negative_cam_stats
    from .models import unwrap

    check_module("model", model, fix="a CAM model from hncam_utils.models")
    k = check_int("k", k, min=1)
    net = unwrap(model)
    device = device or next(net.parameters()).device
    was_training = model.training
    model.eval()
    ev = WSOLEvaluator(thresholds=thresholds, loc_threshold=loc_threshold)
    per: Dict[str, List[Tensor]] = {"label": [], "pred": [], "neg_peak": [], "neg_peak_topk": [], "gt_peak": []}
    try:
        for batch in loader:
            if not isinstance(batch, (tuple, list)) or len(batch) != 3:
                raise TypeError("the loader must yield (images, labels, boxes) batches, e.g. a DataLoader over "
                                "CUB200(..., return_box=True); got "
                                f"{len(batch) if isinstance(batch, (tuple, list)) else type(batch).__name__} item(s)")
            images, labels, boxes = batch
            x, y = images.to(device), labels.to(device)
            out = model(x)
            c = out.logits.shape[1]
            if int(y.max()) >= c:
                raise ValueError(
                    f"the data has label {int(y.max())} but the model has {c} outputs: build the model with "
                    "num_classes equal to the data set's number of classes"
                )
            cams = compute_cams(out.features, net.classifier).float()
            stats = negative_cam_stats(cams, y, k=min(k, c - 1))
            pred = out.logits.argmax(1)
            gt = cams[torch.arange(len(y), device=cams.device), y]
            ev.accumulate(gt, boxes, tuple(x.shape[-2:]), pred == y)
            per["label"].append(y.cpu())
            per["pred"].append(pred.cpu())
            for key in ("neg_peak", "neg_peak_topk", "gt_peak"):
                per[key].append(stats[key].cpu())
    finally:
        model.train(was_training)
    arrays = {key: torch.cat(v).numpy() for key, v in per.items() if v}
    if not arrays:
        raise ValueError("the loader yielded no data")
    result: Dict[str, object] = {
        "top1": 100.0 * float((arrays["label"] == arrays["pred"]).mean()),
        "neg_peak": float(arrays["neg_peak"].mean()),
        "neg_peak_topk": float(arrays["neg_peak_topk"].mean()),
        "gt_peak": float(arrays["gt_peak"].mean()),
        "wsol": ev.compute(),
        "per_image": arrays,
    }
    gt_mean = float(arrays["gt_peak"].mean())
    result["neg_ratio"] = float(arrays["neg_peak"].mean()) / gt_mean if gt_mean > 0 else float("nan")
    return result
