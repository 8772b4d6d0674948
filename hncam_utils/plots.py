"""Figures. Nothing below this module imports it.

Convention: figures that compare models draw every CAM on **one** symmetric colour scale
(:func:`hncam_utils.cam.shared_scale`) with a diverging colour map (red positive, blue negative), so a
flat HNC map and a peaked CE map look as different as they are. Per-map normalisation would hide that.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .cam import shared_scale, upsample_cams
from .train import History

__all__ = ["plot_history", "plot_cam_grid", "plot_canvases", "to_display_image", "visualize_attr", "CAM_CMAP",
           "LOSS_COLORS"]

CAM_CMAP = "RdBu_r"
LOSS_COLORS: Dict[str, str] = {"ce": "tab:gray", "hnc_mse": "tab:blue", "hnc_kd": "tab:orange"}


def to_display_image(image: Tensor) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` tensor -> an array ``imshow`` understands, stretched to ``[0, 1]``."""
    x = image.detach().float().cpu()
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 3:
        x = x.permute(1, 2, 0)
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo if hi > lo else 1.0)).numpy()


def plot_history(
    histories: Mapping[str, Sequence[History]],
    keys: Sequence[str] = ("train_loss", "test_acc"),
    colors: Optional[Mapping[str, str]] = None,
    figsize: Optional[Tuple[float, float]] = None,
) -> Figure:
    """Training curves: for each label (e.g. a loss), the mean over seeds and a +- 1 std band.

    Args:
        histories: ``{label: [history of seed 0, history of seed 1, ...]}`` from :func:`hncam_utils.train.fit`.
        keys: history entries to draw, one panel each (missing ones are skipped).
        colors: ``{label: colour}``; defaults to :data:`LOSS_COLORS`, then matplotlib's cycle.
    """
    if not isinstance(histories, Mapping) or not all(isinstance(r, (list, tuple)) for r in histories.values()):
        raise TypeError("histories must be {label: [history, ...]} (a list of histories per label, e.g. one per "
                        f"seed), got {type(histories).__name__}; wrap a single history: {{'ce': [history]}}")
    if isinstance(keys, str):
        keys = (keys,)
    colors = {**LOSS_COLORS, **(colors or {})}
    wanted = list(keys)
    keys = [k for k in keys if any(k in h for runs in histories.values() for h in runs)]
    if not keys:
        found = sorted({k for runs in histories.values() for h in runs for k in h})
        raise ValueError(f"none of keys={wanted} is in the histories; they hold {found}")
    fig, axes = plt.subplots(1, len(keys), figsize=figsize or (4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, (label, runs) in enumerate(histories.items()):
            runs = [h for h in runs if key in h]
            if not runs:
                continue
            n = min(len(h[key]) for h in runs)
            vals = np.array([h[key][:n] for h in runs])
            epochs = np.arange(1, n + 1)
            mean, std = vals.mean(0), vals.std(0)
            color = colors.get(label, f"C{i}")
            ax.plot(epochs, mean, color=color, label=f"{label} (n={len(runs)})", marker="o", ms=3)
            if len(runs) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cam_grid(
    images: Tensor,
    cams: Mapping[str, Tensor],
    classes: Mapping[str, Tensor],
    class_names: Optional[Sequence[str]] = None,
    scale: Optional[Tuple[float, float]] = None,
    overlay: bool = True,
    cell: float = 1.35,
) -> Figure:
    """Image, ground-truth CAM and top negative CAMs, for each model, on one shared colour scale.

    Args:
        images: ``(N, C, H, W)`` images (one row each).
        cams: ``{model label: (N, 1 + n, h, w)}``: column 0 the ground-truth CAM, then the top-n negatives
            (e.g. from :func:`hncam_utils.metrics.gt_and_top_negative_cams`).
        classes: ``{model label: (N, 1 + n)}`` the class of each map, for the titles.
        class_names: names for class ids (default: the ids).
        scale: ``(vmin, vmax)``; default: symmetric, from every map of every model.
        overlay: draw maps over a faint copy of the image.
    """
    labels = list(cams)
    if not labels:
        raise ValueError("cams is empty")
    if set(classes) != set(labels):
        raise ValueError(f"classes must have the same labels as cams: cams has {labels}, classes has {list(classes)}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be an (N, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    n_img = images.shape[0]
    per_model = cams[labels[0]].shape[1]
    for lab in labels:
        if cams[lab].shape[:2] != (n_img, per_model) or classes[lab].shape != (n_img, per_model):
            raise ValueError(f"cams[{lab!r}] and classes[{lab!r}] must be ({n_img}, {per_model}, ...) like the others")
    vmin, vmax = scale if scale is not None else shared_scale(cams.values())
    size = tuple(images.shape[-2:])
    ncols = 1 + per_model * len(labels)
    fig, axes = plt.subplots(n_img, ncols, figsize=(cell * ncols + 0.8, cell * n_img + 0.5), squeeze=False)
    name = (lambda c: class_names[c]) if class_names is not None else str
    im = None
    for r in range(n_img):
        img = to_display_image(images[r])
        axes[r][0].imshow(img, cmap="gray")
        axes[r][0].set_title(f"y = {name(int(classes[labels[0]][r, 0]))}", fontsize=8)
        for m, lab in enumerate(labels):
            up = upsample_cams(cams[lab][r].float().cpu(), size)
            for j in range(per_model):
                ax = axes[r][1 + m * per_model + j]
                if overlay:
                    ax.imshow(img, cmap="gray", alpha=0.35)
                im = ax.imshow(up[j].numpy(), cmap=CAM_CMAP, vmin=vmin, vmax=vmax, alpha=0.75 if overlay else 1.0)
                kind = "GT" if j == 0 else f"neg {j}"
                ax.set_title(f"{lab}\n{kind}: {name(int(classes[lab][r, j]))}" if r == 0 else f"{kind}: {name(int(classes[lab][r, j]))}",
                             fontsize=7)
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    cax = fig.add_axes((0.945, 0.15, 0.012, 0.7))
    fig.colorbar(im, cax=cax, label="CAM value (shared scale)")
    return fig


def plot_canvases(
    images: Tensor,
    targets: Tensor,
    boxes: Optional[Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    ncols: int = 8,
    cell: float = 1.5,
    titles: Optional[Sequence[str]] = None,
) -> Figure:
    """Images with their labels and boxes: ``(N, C, H, W)`` images; ``(N,)`` class ids or ``(N, K)`` multi-hot
    targets; boxes ``(N, 4)`` or ``(N, K, 4)`` as ``(x0, y0, x1, y1)`` with exclusive ``x1``/``y1`` (rows of
    ``-1`` are skipped)."""
    from matplotlib.patches import Rectangle

    n = images.shape[0]
    if n == 0:
        raise ValueError("images is empty; pass at least one image")
    if len(targets) != n:
        raise ValueError(f"targets has {len(targets)} entries for {n} images")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries for {n} images")
    if boxes is not None and len(boxes) != n:
        raise ValueError(f"boxes has {len(boxes)} entries for {n} images")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + 0.3), squeeze=False)
    name = (lambda c: class_names[c]) if class_names is not None else str
    for i, ax in enumerate(np.ravel(axes)):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(to_display_image(images[i]), cmap="gray")
        t = targets[i]
        label = name(int(t)) if t.dim() == 0 else ",".join(name(int(c)) for c in torch.nonzero(t).flatten())
        ax.set_title(titles[i] if titles is not None else f"y = {label}", fontsize=8)
        if boxes is not None:
            for x0, y0, x1, y1 in boxes[i].reshape(-1, 4).tolist():
                if x0 < 0:
                    continue
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="tab:red", lw=1.2))
    fig.tight_layout()
    return fig


def visualize_attr(
    attr,
    image: Optional[Tensor] = None,
    ax=None,
    scale: Optional[Tuple[float, float]] = None,
    sign: str = "all",
    alpha: float = 0.6,
    outlier_perc: float = 2,
    cmap: Optional[str] = None,
    title: Optional[str] = None,
):
    """Draw one attribution map: Captum's ``visualize_image_attr`` without its two traps.

    * ``scale=None``: Captum's own view. ``captum.attr.visualization.visualize_image_attr`` stretches the
      map by its own scale (the ``100 - outlier_perc`` percentile of the chosen ``sign``), so every map looks
      equally strong. It raises ``AssertionError`` ("Cannot normalize by scale factor = 0") on an all-zero map,
      or when nothing of the chosen sign is left (``sign="positive"`` on an all-negative map): exactly the flat
      negative CAMs that HNC aims for. Here such a map is drawn flat (the colour of 0) with the note
      "all zero", instead of raising.
    * ``scale=(vmin, vmax)``: one colour scale shared with other maps (e.g. from
      :func:`hncam_utils.cam.shared_scale`), drawn with ``imshow``; this is what comparisons between models use.

    Args:
        attr: ``(H, W)`` or ``(C, H, W)`` map (tensor or array; channels are summed), at the image's size.
        image: ``(C, H, W)`` or ``(H, W)`` image to blend under the map (stretched to ``[0, 1]``).
        ax: the axes to draw into (default: a new figure).
        scale: ``None`` (per-map, Captum) or ``(vmin, vmax)`` (shared).
        sign: Captum's ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute_value"`` (per-map view only).
        alpha: opacity of the map over the image.
        outlier_perc: Captum's outlier clipping (per-map view only).
        cmap: colour map (default :data:`CAM_CMAP` for signed maps, Captum's default otherwise).
        title: the panel's title.

    Returns:
        the matplotlib ``Axes``.

    Raises:
        ValueError: an unknown ``sign``, or a map whose size differs from the image's.
    """
    if sign not in ("all", "positive", "negative", "absolute_value"):
        raise ValueError(f"sign must be 'all', 'positive', 'negative' or 'absolute_value', got {sign!r}")
    a = attr.detach().float().cpu().numpy() if isinstance(attr, Tensor) else np.asarray(attr, dtype=np.float32)
    if a.ndim == 3:
        a = a.sum(axis=0)
    if a.ndim != 2:
        raise ValueError(f"attr must be (H, W) or (C, H, W), got shape {a.shape}")
    img = to_display_image(image) if image is not None else None
    if img is not None and img.shape[:2] != a.shape:
        raise ValueError(f"map {a.shape} and image {img.shape[:2]} differ in size; upsample the map first "
                         "(e.g. LayerAttribution.interpolate(attr, size, 'bilinear'))")
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)
    signed_cmap = cmap or CAM_CMAP
    if scale is not None:
        if img is not None:
            ax.imshow(img, cmap="gray")
        ax.imshow(a, cmap=signed_cmap, vmin=scale[0], vmax=scale[1], alpha=alpha if img is not None else 1.0)
        return ax
    kept = {"all": a, "positive": np.maximum(a, 0), "negative": np.minimum(a, 0), "absolute_value": np.abs(a)}[sign]
    if not np.any(kept):  # Captum would divide by a zero scale and raise
        if img is not None:
            ax.imshow(img, cmap="gray")
        ax.imshow(np.zeros_like(a), cmap=signed_cmap, vmin=-1, vmax=1, alpha=alpha if img is not None else 1.0)
        ax.text(0.03, 0.97, "all zero" if not np.any(a) else f"no {sign} values", transform=ax.transAxes,
                va="top", fontsize=7, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        return ax
    from captum.attr import visualization as viz

    viz.visualize_image_attr(
        a[:, :, None], img[:, :, None] if img is not None and img.ndim == 2 else img,
        method="blended_heat_map" if img is not None else "heat_map", sign=sign,
        plt_fig_axis=(ax.figure, ax), outlier_perc=outlier_perc, alpha_overlay=alpha,
        cmap=signed_cmap if sign == "all" else cmap, use_pyplot=False,
    )
    return ax
