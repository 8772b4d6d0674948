"""Figures for weakly supervised localization: threshold curves and CAM rows on one shared colour scale."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

from torch import Tensor

from .cam import upsample_cams
from .wsol import WSOLResult

__all__ = ["plot_box_acc_curves", "plot_cam_rows", "draw_box"]


def draw_box(ax, box: Sequence[float], colour: str = "lime", label: Optional[str] = None, **kwargs) -> None:
    """Draw an ``(x0, y0, x1, y1)`` box on a matplotlib axis."""
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2, label=label, **kwargs))


def plot_box_acc_curves(results: Mapping[str, WSOLResult], figsize: Tuple[float, float] = (10, 3.4)):
    """BoxAcc against the CAM threshold, one panel per IoU threshold, one line per model.

    The maximum of each line is that model's MaxBoxAcc at that IoU (best box over all regions); where it lies
    tells how sensitive the localization is to the threshold.
    """
    import matplotlib.pyplot as plt

    deltas = sorted(next(iter(results.values())).box_acc)
    fig, axes = plt.subplots(1, len(deltas), figsize=figsize, sharey=True, squeeze=False)
    for ax, d in zip(axes[0], deltas):
        for label, r in results.items():
            ax.plot(r.thresholds, r.box_acc[d], label=f"{label} (max {r.box_acc[d].max():.1f}%)")
        ax.set_title(f"IoU >= {d:g}")
        ax.set_xlabel("CAM threshold (share of the map's range)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("BoxAcc (% of test images)")
    fig.tight_layout()
    return fig


def plot_cam_rows(
    images: Tensor,
    boxes: Tensor,
    maps: Mapping[str, Tuple[Tensor, Tensor]],
    class_names: Sequence[str],
    row_titles: Optional[Sequence[str]] = None,
    ious: Optional[Mapping[str, Sequence[float]]] = None,
    preds: Optional[Mapping[str, Sequence[int]]] = None,
    alpha: float = 0.6,
    show_image: bool = True,
):
    """One row per image: the image with its box, then for each model the ground-truth CAM and its top negative
    CAMs over the image.

    All maps in a row share one symmetric colour scale (blue negative, red positive, a colour bar per row), so
    a CE model's and an HNC model's maps are compared by their real values, not each normalised on its own.

    Args:
        images: ``(N, 3, H, W)`` images in ``[0, 1]``.
        boxes: ``(N, 4)`` ground-truth boxes ``(x0, y0, x1, y1)`` in those images' pixels.
        maps: ``{model label: (cams (N, 1 + n, h, w), classes (N, 1 + n))}``, ground truth first (as
            :func:`hncam_utils.metrics.gt_and_top_negative_cams` returns them).
        class_names: names of the classes.
        row_titles: a label per row (e.g. "improved by +0.45 IoU").
        ious: ``{model label: per-image IoU}`` shown in the ground-truth panel's title.
        preds: ``{model label: per-image top-1 prediction}``; a wrong one is marked in the title.
        show_image: a first column with the image in colour and its box.
    """
    import matplotlib.pyplot as plt

    n = images.shape[0]
    size = tuple(images.shape[-2:])
    labels = list(maps)
    per_model = next(iter(maps.values()))[0].shape[1]
    first = 1 if show_image else 0
    cols = first + len(labels) * per_model
    fig, axes = plt.subplots(n, cols, figsize=(2.0 * cols + 0.8, 2.3 * n), squeeze=False)
    for i in range(n):
        up = {lab: upsample_cams(maps[lab][0][i : i + 1].float(), size)[0] for lab in labels}
        limit = max(float(u.abs().max()) for u in up.values()) or 1.0
        img = images[i].permute(1, 2, 0).clamp(0, 1).numpy()
        shown = None
        if show_image:
            ax = axes[i][0]
            ax.imshow(img)
            draw_box(ax, boxes[i].tolist())
            gt = int(next(iter(maps.values()))[1][i, 0])
            ax.set_title(f"image · {(class_names[gt] if gt < len(class_names) else str(gt))[:20]}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        for m, lab in enumerate(labels):
            cams, classes = maps[lab]
            for j in range(per_model):
                ax = axes[i][first + m * per_model + j]
                ax.imshow(img.mean(axis=2), cmap="gray", vmin=0, vmax=1)
                shown = ax.imshow(up[lab][j].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha)
                draw_box(ax, boxes[i].tolist())
                c = int(classes[i, j])
                name = class_names[c] if c < len(class_names) else str(c)
                peak = float(cams[i, j].max())
                if j == 0:
                    title = f"{lab} · GT: {name[:18]}\npeak {peak:.2f}"
                    if ious is not None:
                        title += f", IoU {float(ious[lab][i]):.2f}"
                    if preds is not None and int(preds[lab][i]) != c:
                        title += " ✗"
                else:
                    title = f"{lab} · neg {j}: {name[:16]}\npeak {peak:.2f}"
                ax.set_title(title, fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
        if row_titles is not None:
            axes[i][0].set_ylabel(row_titles[i], fontsize=8)
        fig.colorbar(shown, ax=list(axes[i][first:]), fraction=0.015, pad=0.01)
    return fig
