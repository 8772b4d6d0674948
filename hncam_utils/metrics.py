"""Metrics: accuracy, negative-CAM statistics and CAM-based localization.

Negative-CAM statistics (per image, then averaged):

* ``neg_peak``: the maximum of the top-1 negative CAM (the non-ground-truth class with the highest logit).
  ``neg_peak_topk``: the mean over the top-k negatives of their maxima.
* ``neg_ratio``: ``neg_peak / max(gt_peak, eps)`` with ``gt_peak`` the ground-truth CAM's maximum
  (per image in :func:`negative_cam_stats`; :func:`evaluate` reports the ratio of the data-set means,
  which stays finite when an untrained model's ground-truth peak is near zero).
* ``num_posi``: the official code's statistic, the number of positive CAM pixels over **all** negative
  classes of the image; ``posi_frac`` is the same as a share of those pixels. Beware: under HNC_mse it can
  *rise* while peaks fall, because the loss pulls values toward zero from both sides and they crowd around
  it. Peak statistics tell the story better.

Localization (single-label, boxes ``(x0, y0, x1, y1)`` in image pixels, ``x1``/``y1`` exclusive), on the
ground-truth CAM upsampled (bilinear) to the image:

* ``pointing``: 1 if the CAM's maximum lies inside the box (pointing game).
* ``energy_in_box``: share of the CAM's positive part (``relu(M)``) that lies inside the box.
* ``box_iou``: IoU between the box and the tight box of the largest connected region where the CAM
  exceeds ``threshold`` times its maximum (the usual CAM box recipe, Zhou et al. 2016).
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_bool, check_float, check_int, check_tensor
from .cam import compute_cams, upsample_cams
from .losses import positive_mask, select_negatives

__all__ = [
    "topk_accuracy",
    "mean_average_precision",
    "negative_cam_stats",
    "pointing_game",
    "PEAK_REGIONS",
    "peak_regions",
    "energy_in_box",
    "cam_to_box",
    "box_iou",
    "localization_stats",
    "evaluate",
    "predict",
    "gt_and_top_negative_cams",
    "collect_outputs",
    "most_confused_pairs",
]


def topk_accuracy(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1,)) -> Dict[int, float]:
    """Share (in %) of images whose label is among the ``k`` highest logits, for each ``k`` in ``ks``.

    Raises:
        ValueError: mismatched batch sizes, or ``k`` larger than the number of classes.
        TypeError: non-tensor inputs, float targets, a ``k`` that is not an int.
    """
    check_tensor("logits", logits)
    check_tensor("targets", targets, integer=True)
    if isinstance(ks, int):
        ks = (ks,)
    for k in ks:
        check_int("ks", k, fix="ks lists the k of each top-k accuracy, e.g. (1, 5)")
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"need logits (B, C) and targets (B,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    out: Dict[int, float] = {}
    for k in ks:
        if not 1 <= k <= logits.shape[1]:
            raise ValueError(f"k = {k} must lie in [1, {logits.shape[1]}] (the number of classes)")
        top = logits.topk(k, dim=1).indices
        out[k] = 100.0 * float((top == targets[:, None]).any(dim=1).float().mean()) if len(targets) else float("nan")
    return out


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """Multi-label mAP (in %): the mean over classes with at least one positive of the average precision."""
    from sklearn.metrics import average_precision_score

    check_tensor("scores", scores, dims=(2,), shape_hint="(N, C)")
    check_tensor("targets", targets, dims=(2,), shape_hint="(N, C) multi-hot")
    if scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must have the same shape")
    y, s = targets.detach().cpu().numpy(), scores.detach().float().cpu().numpy()
    keep = y.sum(axis=0) > 0
    if not keep.any():
        return float("nan")
    return 100.0 * float(average_precision_score(y[:, keep], s[:, keep], average="macro"))


def negative_cam_stats(cams: Tensor, targets: Tensor, k: int = 3, eps: float = 1e-6) -> Dict[str, Tensor]:
    """Per-image statistics of the negative CAMs of all-class ``cams`` ``(B, C, H, W)``.

    Returns a dict of ``(B,)`` tensors: ``neg_peak`` (top-1 negative), ``neg_peak_topk`` (mean of the top-k
    negatives' maxima), ``gt_peak`` (the largest ground-truth CAM maximum), ``neg_ratio``, ``num_posi`` and
    ``posi_frac`` (see the module docstring). NaN maps propagate into their statistics; a NaN negative map
    ranks first (see :func:`hncam_utils.losses.select_negatives`).
    """
    check_tensor("cams", cams, dims=(4,), shape_hint="(B, C, H, W) (the CAMs of all classes)", floating=True)
    check_int("k", k, min=1)
    check_float("eps", eps, min=0, min_open=True)
    if cams.shape[1] < 2:
        raise ValueError(f"cams must hold at least 2 classes (one negative), got C = {cams.shape[1]}")
    b, c, h, w = cams.shape
    positives = positive_mask(targets, c)
    maps = cams.detach().float()
    scores = maps.sum(dim=(2, 3))
    index, valid = select_negatives(scores, positives, min(k, c - 1))
    peaks = maps.amax(dim=(2, 3))  # (B, C)
    sel_peaks = peaks.gather(1, index)
    neg_peak = sel_peaks[:, 0]
    neg_peak_topk = (sel_peaks * valid).sum(1) / valid.sum(1).clamp_min(1)
    gt_peak = peaks.masked_fill(~positives, float("-inf")).amax(dim=1)
    negatives = ~positives
    posi = ((maps > 0) & negatives[:, :, None, None]).sum(dim=(1, 2, 3)).float()
    return {
        "neg_peak": neg_peak,
        "neg_peak_topk": neg_peak_topk,
        "gt_peak": gt_peak,
        "neg_ratio": neg_peak / gt_peak.clamp_min(eps),
        "num_posi": posi,
        "posi_frac": posi / (negatives.sum(1).float() * h * w).clamp_min(1),
    }


def _check_map_and_box(cam: Tensor, box) -> None:
    check_tensor("cam", cam, dims=(2,), shape_hint="(H, W) (one map at image resolution)")
    if len(box) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {len(box)} values")


def _box_mask(box: Tensor, h: int, w: int) -> Tensor:
    x0, y0, x1, y1 = (int(v) for v in box)
    m = torch.zeros(h, w, dtype=torch.bool)
    m[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return m


def pointing_game(cam: Tensor, box: Tensor) -> float:
    """1.0 if the maximum of the ``(H, W)`` map (image resolution) falls inside ``box``, else 0.0."""
    _check_map_and_box(cam, box)
    h, w = cam.shape
    flat = int(cam.argmax())
    y, x = divmod(flat, w)
    x0, y0, x1, y1 = (int(v) for v in box)
    return float(x0 <= x < x1 and y0 <= y < y1)


def energy_in_box(cam: Tensor, box: Tensor) -> float:
    """Share of ``relu(cam)`` (an ``(H, W)`` map at image resolution) that lies inside ``box``."""
    _check_map_and_box(cam, box)
    pos = cam.clamp_min(0)
    total = float(pos.sum())
    if total <= 0:
        return 0.0
    return float(pos[_box_mask(box, *cam.shape)].sum()) / total


def cam_to_box(cam: Tensor, threshold: float = 0.5) -> Tuple[int, int, int, int]:
    """Tight box ``(x0, y0, x1, y1)`` of the largest connected region with ``cam >= threshold * max(cam)``."""
    from scipy import ndimage

    check_tensor("cam", cam, dims=(2,), shape_hint="(H, W)")
    check_float("threshold", threshold, min=0, max=1, fix="a share of the map's maximum, e.g. 0.5")
    arr = cam.detach().float().cpu().numpy()
    peak = arr.max()
    mask = arr >= threshold * peak if peak > 0 else arr >= peak
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0, 0, arr.shape[1], arr.shape[0]
    sizes = ndimage.sum(mask, labels, index=range(1, n + 1))
    ys, xs = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes (``x1``, ``y1`` exclusive)."""
    for name, box in (("a", a), ("b", b)):
        if len(box) != 4:
            raise ValueError(f"box {name} must be (x0, y0, x1, y1), got {len(box)} values")
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


#: The regions :func:`peak_regions` sorts a map's maximum into, by code 0, 1, 2.
PEAK_REGIONS = ("target", "other ink", "background")


def peak_regions(cams: Tensor, boxes: Tensor, ink: Tensor, margin: int = 2) -> Tensor:
    """Where the maximum of each map lies: 0 inside the target box, 1 on other ink (outside the box, within
    ``margin`` pixels of an ink pixel, e.g. a distractor fragment), 2 on background.

    Args:
        cams: ``(B, h, w)`` maps, upsampled (bilinear) to the image size of ``ink`` for the test.
        boxes: ``(B, 4)`` target boxes ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive, in image pixels.
        ink: ``(B, H, W)`` boolean ink masks of the images (e.g. clean canvases ``> 0.1``).
        margin: a maximum this close (Chebyshev distance, pixels) to ink outside the box counts as on it;
            maps are coarser than images (12x12 for 48x48 in the course), so an exact pixel hit is too strict.

    Returns:
        ``(B,)`` int64 codes indexing :data:`PEAK_REGIONS`.
    """
    if ink.dim() != 3 or cams.dim() != 3 or boxes.shape != (cams.shape[0], 4) or ink.shape[0] != cams.shape[0]:
        raise ValueError(f"expected cams (B, h, w), boxes (B, 4) and ink (B, H, W); got {tuple(cams.shape)}, "
                         f"{tuple(boxes.shape)}, {tuple(ink.shape)}")
    b, hh, ww = ink.shape
    up = upsample_cams(cams[:, None].float(), (hh, ww))[:, 0].cpu()
    flat = up.flatten(1).argmax(dim=1)
    ys, xs = flat // ww, flat % ww
    bx = boxes.cpu().long()
    in_box = (bx[:, 0] <= xs) & (xs < bx[:, 2]) & (bx[:, 1] <= ys) & (ys < bx[:, 3])
    near = F.max_pool2d(ink.cpu().float()[:, None], 2 * margin + 1, stride=1, padding=margin)[:, 0] > 0
    on_ink = near[torch.arange(b), ys, xs]
    return torch.where(in_box, 0, torch.where(on_ink, 1, 2)).long()


def localization_stats(gt_cams: Tensor, boxes: Tensor, image_size: Tuple[int, int], threshold: float = 0.5) -> Dict[str, Tensor]:
    """Pointing game, energy in box and box IoU for ``(B, h, w)`` ground-truth CAMs and ``(B, 4)`` boxes."""
    check_tensor("gt_cams", gt_cams, dims=(3,), shape_hint="(B, h, w)")
    check_tensor("boxes", boxes, dims=(2,), shape_hint="(B, 4)")
    if boxes.shape != (gt_cams.shape[0], 4):
        raise ValueError(f"boxes must have shape ({gt_cams.shape[0]}, 4), one box per map, got {tuple(boxes.shape)}")
    check_float("threshold", threshold, min=0, max=1)
    up = upsample_cams(gt_cams[:, None], image_size)[:, 0].cpu()
    pts, eng, iou = [], [], []
    for cam, box in zip(up, boxes.cpu()):
        pts.append(pointing_game(cam, box))
        eng.append(energy_in_box(cam, box))
        iou.append(box_iou(cam_to_box(cam, threshold), box.tolist()))
    return {"pointing": torch.tensor(pts), "energy_in_box": torch.tensor(eng), "box_iou": torch.tensor(iou)}


@torch.no_grad()
def gt_and_top_negative_cams(model: nn.Module, images: Tensor, targets: Tensor, n: int = 3) -> Tuple[Tensor, Tensor]:
    """The ground-truth CAM and the ``n`` top negative CAMs of each image, built for those classes only.

    Args:
        model: a CAM model (forward returns ``(logits, features)``).
        images: ``(B, ...)`` images on the model's device or the CPU.
        targets: ``(B,)`` class indices.
        n: negatives per image, ranked by logit (= by CAM sum).

    Returns:
        ``(cams (B, 1 + n, h, w), classes (B, 1 + n))`` on the CPU, ground truth first.
    """
    from .models import unwrap

    check_tensor("images", images, floating=True)
    check_tensor("targets", targets, dims=(1,), shape_hint="(B,) class indices", integer=True)
    if targets.shape[0] != images.shape[0]:
        raise ValueError(f"targets has {targets.shape[0]} labels for {images.shape[0]} images")
    check_int("n", n, min=1)
    net = unwrap(model)
    device = next(net.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = model(images.to(device))
    finally:
        model.train(was_training)
    y = targets.to(device)
    positives = positive_mask(y, out.logits.shape[1])
    index, _ = select_negatives(out.logits, positives, n)
    classes = torch.cat([y[:, None], index], dim=1)
    cams = compute_cams(out.features, net.classifier, classes)
    return cams.float().cpu(), classes.cpu()


@torch.no_grad()
def collect_outputs(
    model: nn.Module,
    loader: Iterable,
    device: Optional[torch.device] = None,
    cams: bool = True,
) -> Dict[str, Tensor]:
    """Run a loader through a CAM model batch by batch and gather everything on the CPU.

    Args:
        model: a CAM model (forward returns ``(logits, features)``).
        loader: yields ``(images, targets)`` or ``(images, targets, boxes)``.
        cams: also gather the all-class CAMs ``(N, C, h, w)`` (float32; ``N * C * h * w`` floats: for large
            data sets or heads prefer :func:`evaluate`, which keeps only statistics).

    Returns:
        ``{"logits": (N, C), "targets": (N,) or (N, C), "cams": (N, C, h, w), "boxes": ...}`` (``cams`` and
        ``boxes`` only when asked for / present).
    """
    from .models import unwrap

    device = device or next(model.parameters()).device
    net = unwrap(model)
    was_training = model.training
    model.eval()
    parts: Dict[str, list] = {"logits": [], "targets": [], "cams": [], "boxes": []}
    try:
        for batch in loader:
            out = model(batch[0].to(device))
            parts["logits"].append(out.logits.float().cpu())
            parts["targets"].append(batch[1])
            if cams:
                parts["cams"].append(compute_cams(out.features, net.classifier).float().cpu())
            if len(batch) > 2:
                parts["boxes"].append(batch[2])
    finally:
        model.train(was_training)
    return {key: torch.cat(val) for key, val in parts.items() if val}


def most_confused_pairs(confusion: "np.ndarray", n: int = 5) -> list:
    """The ``n`` largest off-diagonal entries of a confusion matrix (rows: true class, columns: predicted),
    as ``(true, predicted, count)`` tuples, largest first (ties: lower class ids first)."""
    check_int("n", n, min=0)
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {cm.shape}")
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.lexsort((np.arange(off.size), -off.ravel()))[:n]
    return [(int(i // cm.shape[1]), int(i % cm.shape[1]), int(off.ravel()[i])) for i in order if off.ravel()[i] > 0]


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor]:
    """All logits and targets of a loader (``(x, y)`` or ``(x, y, box)`` batches), on the CPU."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, targets = [], []
    try:
        for batch in loader:
            x, y = batch[0], batch[1]
            logits.append(model(x.to(device)).logits.float().cpu())
            targets.append(y)
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(targets)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: Optional[torch.device] = None,
    k: int = 3,
    localization: bool = True,
    threshold: float = 0.5,
    outputs: Optional[Dict[str, Tensor]] = None,
) -> Dict[str, float]:
    """Accuracy, negative-CAM statistics and (when batches carry boxes) localization over a loader.

    Args:
        model: a CAM model (forward returns ``(logits, features)``), e.g. from :mod:`hncam_utils.models`.
        loader: yields ``(images, targets)`` or ``(images, targets, boxes)``.
        k: how many top negatives ``neg_peak_topk`` averages over.
        localization: compute pointing game / energy in box / box IoU when boxes are given (single-label).
        threshold: the CAM box threshold (share of the maximum).
        outputs: a dict to receive the pass's ``"logits"`` ``(N, C)`` and ``"targets"`` (on the CPU), so that
            a confusion matrix needs no second pass over the data.

    Returns:
        Means over the data set: ``top1`` (and ``top5`` with >= 5 classes) or ``map`` for multi-label,
        ``loss`` (CE or BCE), the keys of :func:`negative_cam_stats` and of :func:`localization_stats`.
    """
    from .models import unwrap

    check_int("k", k, min=1)
    check_bool("localization", localization)
    check_float("threshold", threshold, min=0, max=1, fix="a share of the CAM's maximum, e.g. 0.5")
    if outputs is not None and not isinstance(outputs, dict):
        raise TypeError(f"outputs must be a dict to fill (or None), got {type(outputs).__name__}")
    device = device or next(model.parameters()).device
    net = unwrap(model)
    was_training = model.training
    model.eval()
    sums: Dict[str, float] = {}
    all_logits, all_targets = [], []
    n = 0
    try:
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            out = model(x)
            cams = compute_cams(out.features, net.classifier).float()
            stats = negative_cam_stats(cams, y, k=k)
            if localization and len(batch) > 2 and y.dim() == 1:
                gt = cams[torch.arange(len(y), device=cams.device), y]
                stats.update(localization_stats(gt, batch[2], tuple(x.shape[-2:]), threshold))
            for key, val in stats.items():
                sums[key] = sums.get(key, 0.0) + float(val.float().sum())
            all_logits.append(out.logits.float().cpu())
            all_targets.append(y.cpu())
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader yielded no data")
    logits, targets = torch.cat(all_logits), torch.cat(all_targets)
    if outputs is not None:
        outputs.update(logits=logits, targets=targets)
    result = {key: val / n for key, val in sums.items()}
    # ratio of means: per-image ratios explode where an untrained model's GT peak is near zero
    result["neg_ratio"] = sums["neg_peak"] / sums["gt_peak"] if sums["gt_peak"] > 0 else float("nan")
    if targets.dim() == 1:
        ks = (1, 5) if logits.shape[1] >= 5 else (1,)
        acc = topk_accuracy(logits, targets, ks)
        result.update({f"top{k_}": v for k_, v in acc.items()})
        result["loss"] = float(F.cross_entropy(logits, targets))
    else:
        result["map"] = mean_average_precision(logits, targets)
        result["loss"] = float(F.binary_cross_entropy_with_logits(logits, targets.float()))
    return result
