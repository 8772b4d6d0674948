"""An independent, deliberately naive reference implementation of the HNC loss.

Written straight from the equations in ``shared/reference/hnc-method.md`` with explicit Python loops over
images, classes and pixels, in float64 (Python floats), and WITHOUT importing ``hncam_utils``, so that the
tests compare two independent implementations.

* negatives of an image: every class that is not a ground-truth label (single label ``y``: all classes but
  ``y``; multi-hot row: all absent labels), ranked by the spatial sum of their CAM, descending; keep the
  top ``k`` (``k=None``: all of them; fewer available in multi-label data: keep what exists).
* ``mse = sum_{(n,c) in S} sum_ij M_nc(i,j)^2 / (|S| * H * W)`` (0 when ``S`` is empty).
* ``kd  = (1/B) * sum_{(n,c) in S} -(1/HW) sum_ij log softmax_ij(M_nc / T)``.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

__all__ = ["reference_positives", "reference_selection", "reference_hnc"]


def _to_nested(x) -> list:
    """A torch tensor / numpy array / nested list -> nested Python lists of floats or ints."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.double()
        return x.tolist()
    if hasattr(x, "tolist"):
        return x.tolist()
    return list(x)


def reference_positives(targets, num_classes: int) -> List[List[bool]]:
    """``(B,)`` class indices or ``(B, C)`` multi-hot rows -> per-image list of C booleans."""
    t = _to_nested(targets)
    rows: List[List[bool]] = []
    for entry in t:
        if isinstance(entry, list):  # multi-hot row
            assert len(entry) == num_classes
            rows.append([bool(v == 1 or v is True) for v in entry])
        else:
            y = int(entry)
            rows.append([c == y for c in range(num_classes)])
    return rows


def reference_selection(cams, targets, k: Optional[int]) -> List[List[int]]:
    """Per image, the selected negative class ids, best (largest CAM sum) first."""
    m = _to_nested(cams)
    num_classes = len(m[0])
    positives = reference_positives(targets, num_classes)
    selection: List[List[int]] = []
    for n in range(len(m)):
        sums: List[Tuple[float, int]] = []
        for c in range(num_classes):
            if positives[n][c]:
                continue
            s = 0.0
            for row in m[n][c]:
                for v in row:
                    s += v
            sums.append((s, c))
        sums.sort(key=lambda sc: -sc[0])
        keep = len(sums) if k is None else min(k, len(sums))
        selection.append([c for _, c in sums[:keep]])
    return selection


def _log_softmax(values: Sequence[float]) -> List[float]:
    top = max(values)
    log_z = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - log_z for v in values]


def reference_hnc(cams, targets, k: Optional[int] = None, variant: str = "mse", temperature: float = 1.0) -> float:
    """The HNC loss of ``cams`` ``(B, C, H, W)`` (any nested sequence / tensor), as a Python float."""
    m = _to_nested(cams)
    batch = len(m)
    selection = reference_selection(cams, targets, k)
    height = len(m[0][0])
    width = len(m[0][0][0])
    hw = height * width
    if variant == "mse":
        total = 0.0
        pairs = 0
        for n in range(batch):
            for c in selection[n]:
                pairs += 1
                for i in range(height):
                    for j in range(width):
                        total += m[n][c][i][j] ** 2
        return 0.0 if pairs == 0 else total / (pairs * hw)
    if variant == "kd":
        total = 0.0
        for n in range(batch):
            for c in selection[n]:
                flat = [m[n][c][i][j] / temperature for i in range(height) for j in range(width)]
                log_p = _log_softmax(flat)
                total += -sum(log_p) / hw
        return total / batch
    raise ValueError(f"unknown variant {variant!r}")
