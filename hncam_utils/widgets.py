"""The CAM explorer: ground-truth and negative CAMs of several models, side by side, interactively.

Top layer: nothing in the package imports this module. Built from core ``ipywidgets`` and matplotlib only
(no custom front-end code), so it works in JupyterLab, the classic Notebook and Colab (there after
``google.colab.output.enable_custom_widget_manager()``).

What it shows, for one image and one class:

* the image, and for every chosen model the class's map over it, all on **one** symmetric colour scale
  (:func:`hncam_utils.cam.shared_scale`), so a flat HNC map looks as flat as it is;
* the scores: each model's logit and probability for the class, the class's rank among that model's
  classes, its prediction, and the peak of the map.

Methods (:data:`METHODS`), for a model with last feature map ``f`` (D x h x w) and head ``(W, b)``:

* ``cam``: the class activation map :math:`M_c = W_c \\cdot f + b_c` (exact, signed, bias included);
* ``gradcam`` / ``gradcam_relu``: Captum's ``LayerGradCam`` on the last convolutional block, signed (Captum's
  default) or with ``relu_attributions=True`` (the original Grad-CAM). On a GAP + linear network the
  gradient of a logit with respect to ``f`` depends on the head only, so it is computed from the cached
  ``f`` through the head: the same numbers as ``LayerGradCam`` on the whole model, namely
  :math:`(M_c - b_c) / (hw)` before the ReLU;
* ``ig``: Integrated Gradients (Captum) at pixel level, from an all-zero baseline.

Caching: when an image is first shown, every model's backbone runs once on it; the features and logits are
kept (a bounded LRU cache), so changing the class, the opacity, the method between CAM and Grad-CAM, or the
models shown for an image already seen does not run a backbone again. A pixel method needs gradients through the whole
network: its map is computed on first request for an (image, model, class) and cached too.

Choosing the class: by rank under the **reference model** (the first model passed: ground truth, 1st
negative, 2nd negative, ... where negatives are ranked by logit, i.e. by CAM sum), or by name. Every model
then shows the same class, so the panels compare like with like.

Example::

    from hncam_utils.widgets import CAMExplorer
    explorer = CAMExplorer({"ce": ce_model, "hnc_kd": kd_model}, test_set)
    explorer            # in a notebook: the widget
    explorer.update(index=12, rank=1, method="gradcam")    # the same from Python
    explorer.static_grid([0, 1, 2])                       # a figure for places where widgets do not render
"""

from __future__ import annotations

import html
import io
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_float, check_int, show
from .cam import compute_cams, shared_scale, upsample_cams
from .models import LogitsOnly, unwrap
from .plots import CAM_CMAP, plot_cam_grid, to_display_image

__all__ = ["CAMExplorer", "ExplorerView", "METHODS", "rank_label"]

#: Attribution methods of the explorer: key -> label shown in the widget.
METHODS: Dict[str, str] = {
    "cam": "CAM",
    "gradcam": "Grad-CAM (signed)",
    "gradcam_relu": "Grad-CAM + ReLU",
    "ig": "Integrated Gradients (pixels)",
}
_SCALE_LABEL = {"cam": "CAM value", "gradcam": "Grad-CAM value", "gradcam_relu": "Grad-CAM value",
                "ig": "IG attribution"}
_SOURCES = ("by index", "most confused", "most improved")


def rank_label(rank: int) -> str:
    """``0`` -> ``"ground truth"``, ``1`` -> ``"1st negative"``, ``2`` -> ``"2nd negative"``, ..."""
    if rank == 0:
        return "ground truth"
    suffix = "th" if 10 <= rank % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return f"{rank}{suffix} negative"


@dataclass
class ExplorerView:
    """What the explorer computed for one selection (returned by :meth:`CAMExplorer.compute`).

    Attributes:
        index: the image's index in the data.
        target: its ground-truth class id.
        class_id, class_name: the class whose maps are shown.
        rank: the class's rank under the reference model (0 = ground truth, k = k-th negative).
        method: a key of :data:`METHODS`.
        models: the labels of the models shown, in order.
        raw: ``{label: map}`` at the method's own resolution (``h x w`` for CAM and Grad-CAM, the image size
            for a pixel method), float32 on the CPU.
        maps: ``{label: map}`` upsampled (bilinear) to the image size: what is drawn.
        scale: the ``(vmin, vmax)`` shared by every map shown (symmetric around 0).
        scores: ``{label: {"logit", "prob", "rank", "pred", "pred_prob", "peak"}}``: the model's logit and
            softmax probability for the class, the class's rank among that model's classes (1 = its top
            class), its predicted class and that class's probability, and the peak of the raw map.
        image: the image as ``(C, H, W)`` on the CPU.
    """

    index: int
    target: int
    class_id: int
    class_name: str
    rank: int
    method: str
    models: List[str]
    raw: Dict[str, Tensor] = field(repr=False)
    maps: Dict[str, np.ndarray] = field(repr=False)
    scale: Tuple[float, float]
    scores: Dict[str, Dict[str, float]]
    image: Tensor = field(repr=False)


class _GAPHead(nn.Module):
    """GAP + the model's linear head, behind an identity layer: Grad-CAM on the identity's output is
    Grad-CAM on the last convolutional block, computed from cached features."""

    def __init__(self, classifier: nn.Linear) -> None:
        super().__init__()
        self.block = nn.Identity()
        self.classifier = classifier

    def forward(self, features: Tensor) -> Tensor:
        return self.classifier(self.block(features).mean(dim=(2, 3)))


def _model_labels(models: Any) -> List[str]:
    """A selection of model labels as a list (a single label as a string is refused: it would read as letters)."""
    if isinstance(models, str) or not isinstance(models, (list, tuple)):
        raise TypeError(f"models must be a list of model labels, e.g. [{models!r}], got {show(models)}")
    if not models:
        raise ValueError("no model selected: select at least one model to show its maps")
    return list(models)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class CAMExplorer:
    """Interactive CAM / Grad-CAM / Integrated Gradients explorer for CAM models (see the module docstring).

    Args:
        models: ``{label: model}``, ordered; the first is the reference (it ranks the classes and defines
            "most confused" and "most improved"). A model's forward must return ``(logits, features)`` and
            it must have an ``nn.Linear`` ``classifier`` (every model of :mod:`hncam_utils.models`; wrap your
            own with ``CAMNet`` or ``TorchvisionCAM``).
        data: a data set whose items are ``(image, class id)`` or ``(image, class id, box)`` (any data set of
            the package, or a torchvision one with a tensor transform), or an ``(N, C, H, W)`` tensor of
            images together with ``targets``.
        class_names: a name per class; default ``data.class_names`` or ``data.classes`` when present, else
            the class ids.
        targets: ``(N,)`` class ids, only with a tensor ``data``.
        n_ranks: how many ranks the class menu offers (ground truth + ``n_ranks - 1`` negatives).
        pool: how many images (the first ``pool``) are scored for "most confused" / "most improved".
        n_list: how many images those lists offer.
        ig_steps: integration steps of Integrated Gradients.
        cache_size: (image, model) feature entries kept (least recently used are dropped).
        panel_px: size in pixels of the longer side of a drawn panel.

    Raises:
        ValueError: no models, models with different numbers of classes, empty data, targets that do not
            match the images or lie outside ``[0, C)``, ``class_names`` of the wrong length, a setting
            (``n_ranks``, ``pool``...) below its minimum.
        TypeError: a model that is not a CAM model, data that is neither a tensor nor a data set, non-integer
            targets, a setting that is not an int.
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        data: Any,
        class_names: Optional[Sequence[str]] = None,
        *,
        targets: Optional[Union[Tensor, Sequence[int]]] = None,
        n_ranks: int = 4,
        pool: int = 1000,
        n_list: int = 20,
        ig_steps: int = 32,
        cache_size: int = 256,
        panel_px: int = 180,
    ) -> None:
        if not isinstance(models, Mapping):
            raise TypeError(f"models must be a dict {{label: model}}, got {type(models).__name__}")
        if len(models) == 0:
            raise ValueError("no models to show: pass at least one, e.g. CAMExplorer({'ce': model}, data)")
        self.models: Dict[str, nn.Module] = {}
        counts: Dict[str, int] = {}
        for label, model in models.items():
            net = unwrap(model) if isinstance(model, nn.Module) else None
            head = getattr(net, "classifier", None)
            if not isinstance(head, nn.Linear):
                raise TypeError(
                    f"model {label!r} is not a CAM model (it needs an nn.Linear `classifier` and a forward that "
                    "returns (logits, features)); wrap it with hncam_utils.models.CAMNet or TorchvisionCAM"
                )
            self.models[str(label)] = model
            counts[str(label)] = head.out_features
        if len(set(counts.values())) != 1:
            listed = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise ValueError(
                f"the models have different numbers of classes ({listed}); compare models trained on the same "
                "data set"
            )
        self.num_classes = next(iter(counts.values()))
        self.reference = next(iter(self.models))
        self._heads = {label: _GAPHead(unwrap(m).classifier) for label, m in self.models.items()}

        self._images: Optional[Tensor] = None
        self._targets: Optional[Tensor] = None
        self._data = None
        if isinstance(data, Tensor):
            if data.dim() != 4:
                raise ValueError(f"images must be (N, C, H, W), got shape {tuple(data.shape)}")
            if targets is None:
                raise ValueError("with a tensor of images, pass targets=(N,) class ids as well")
            try:
                t = torch.as_tensor(targets).flatten().cpu()
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"targets must be (N,) class ids (a tensor or a list of ints), got {show(targets)}") from None
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TypeError(f"targets must be integer class ids, got dtype {t.dtype}; convert them with .long()")
            t = t.long()
            if t.numel() != data.shape[0]:
                raise ValueError(f"{data.shape[0]} images but {t.numel()} targets; pass one class id per image")
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
                raise ValueError(f"targets must be class ids in [0, {self.num_classes - 1}] for models with "
                                 f"{self.num_classes} classes, got values in [{int(t.min())}, {int(t.max())}]")
            self._images, self._targets = data.detach().cpu(), t
            self.n_images = int(data.shape[0])
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            if targets is not None:
                raise ValueError("targets= is only for a tensor of images; a data set brings its own labels")
            self._data = data
            self.n_images = len(data)
        else:
            raise TypeError(f"data must be a data set or an (N, C, H, W) tensor, got {type(data).__name__}")
        if self.n_images == 0:
            raise ValueError("the data is empty: nothing to explore")

        if class_names is None:
            class_names = getattr(data, "class_names", None) or getattr(data, "classes", None)
        names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for models with {self.num_classes} classes")
        self.class_names = names
        self._name_to_id = {n.strip().lower(): i for i, n in enumerate(names)}

        self.n_ranks = min(check_int("n_ranks", n_ranks, min=1, fix="1 shows the ground truth only"), self.num_classes)
        self.pool = check_int("pool", pool, min=1)
        self.n_list = check_int("n_list", n_list, min=1)
        self.ig_steps = check_int("ig_steps", ig_steps, min=1, fix="e.g. 32")
        self.cache_size = check_int("cache_size", cache_size, min=1)
        self.panel_px = check_int("panel_px", panel_px, min=16, fix="e.g. 180")

        self._features: "OrderedDict[Tuple[str, int], Tuple[Tensor, Tensor]]" = OrderedDict()
        self._pixel_maps: "OrderedDict[Tuple[str, int, int, str], Tensor]" = OrderedDict()
        self._pool_scores: Optional[Tuple[Dict[str, Tensor], Tensor]] = None
        #: how often a model's backbone ran for the explorer's CAMs (one per new image and model)
        self.backbone_runs = 0
        #: how often a pixel method ran (gradients through the whole network)
        self.pixel_runs = 0
        #: milliseconds spent by the last :meth:`update`: ``compute_ms`` (maps and scores), ``draw_ms`` (colouring
        #: and PNG encoding), ``widgets_ms`` (pushing them into the widgets) and ``total_ms``
        self.last_timings: Dict[str, float] = {}

        self.state: Dict[str, Any] = {"index": 0, "rank": 0, "class_name": None, "models": list(self.models),
                                      "method": "cam", "opacity": 0.7}
        self._display: "OrderedDict[Tuple[str, int], np.ndarray]" = OrderedDict()
        self._widget = None
        self._syncing = False

    # ------------------------------------------------------------------------------------------------------
    # data and cached forward passes
    # ------------------------------------------------------------------------------------------------------

    def _check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"the image index must be an integer, got {index!r}")
        if not 0 <= int(index) < self.n_images:
            raise IndexError(f"image index {int(index)} is out of range: choose 0 to {self.n_images - 1}")
        return int(index)

    def item(self, index: int) -> Tuple[Tensor, int]:
        """``(image (C, H, W), class id)`` of image ``index``.

        Raises:
            IndexError: an index out of range.
        """
        index = self._check_index(index)
        if self._images is not None:
            return self._images[index], int(self._targets[index])
        sample = self._data[index]
        image, target = sample[0], sample[1]
        target = torch.as_tensor(target)
        if target.numel() != 1:
            raise ValueError("the explorer shows single-label data (one class id per image); "
                             f"image {index} has a target of shape {tuple(target.shape)}")
        image = torch.as_tensor(image)
        if image.dim() == 2:
            image = image[None]
        return image, int(target)

    def _device(self, label: str) -> torch.device:
        try:
            return next(unwrap(self.models[label]).parameters()).device
        except StopIteration:  # pragma: no cover - parameter-free model
            return torch.device("cpu")

    def features(self, label: str, index: int) -> Tuple[Tensor, Tensor]:
        """``(features (1, D, h, w), logits (C,))`` of a model for image ``index``: from the cache, or from one
        forward pass (counted in :attr:`backbone_runs`)."""
        key = (label, self._check_index(index))
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        model = self.models[label]
        image, _ = self.item(index)
        with torch.no_grad(), _eval_mode(model):
            out = model(image[None].to(self._device(label)))
        self.backbone_runs += 1
        entry = (out[1].detach(), out[0][0].detach().float().cpu())
        self._features[key] = entry
        while len(self._features) > self.cache_size:
            self._features.popitem(last=False)
        return entry

    def ranking(self, index: int, label: Optional[str] = None) -> List[int]:
        """Class ids of image ``index``: the ground truth first, then the negatives by decreasing logit under
        model ``label`` (default: the reference model)."""
        _, target = self.item(index)
        logits = self.features(label or self.reference, index)[1]
        order = [int(c) for c in torch.argsort(logits, descending=True, stable=True) if int(c) != target]
        return [target] + order

    def class_id(self, index: int, rank: Optional[int] = None, class_name: Optional[str] = None) -> int:
        """The class shown: by ``class_name`` if given, else by ``rank`` under the reference model.

        Raises:
            ValueError: an unknown class name or a rank outside ``[0, C - 1]``.
        """
        if class_name is not None and str(class_name).strip():
            key = str(class_name).strip().lower()
            if key not in self._name_to_id:
                shown = ", ".join(self.class_names[:12]) + (", ..." if self.num_classes > 12 else "")
                raise ValueError(f"unknown class name {class_name!r}; choose one of: {shown}")
            return self._name_to_id[key]
        rank = 0 if rank is None else rank
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < self.num_classes:
            raise ValueError(f"rank must be an integer from 0 (ground truth) to {self.num_classes - 1}, got {rank!r}")
        return self.ranking(index)[int(rank)]

    # ------------------------------------------------------------------------------------------------------
    # attributions
    # ------------------------------------------------------------------------------------------------------

    def attribution(self, label: str, index: int, class_id: int, method: str = "cam") -> Tensor:
        """The raw map of one model, image and class: ``(h, w)`` for CAM / Grad-CAM, ``(H, W)`` for a pixel
        method; float32 on the CPU.

        Raises:
            ValueError: an unknown method or model label.
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        if label not in self.models:
            raise ValueError(f"unknown model {label!r}; choose among {list(self.models)}")
        if method == "ig":
            return self._integrated_gradients(label, index, class_id)
        feats, _ = self.features(label, index)
        head = self._heads[label]
        if method == "cam":
            with torch.no_grad():
                return compute_cams(feats, head.classifier, [class_id])[0, 0].float().cpu()
        from captum.attr import LayerGradCam

        attr = LayerGradCam(head, head.block).attribute(feats, target=class_id,
                                                       relu_attributions=method == "gradcam_relu")
        return attr[0, 0].detach().float().cpu()

    def _integrated_gradients(self, label: str, index: int, class_id: int) -> Tensor:
        key = (label, index, class_id, "ig")
        if key in self._pixel_maps:
            self._pixel_maps.move_to_end(key)
            return self._pixel_maps[key]
        from captum.attr import IntegratedGradients

        model = self.models[label]
        image, _ = self.item(index)
        x = image[None].to(self._device(label)).float()
        with _eval_mode(model):
            attr = IntegratedGradients(LogitsOnly(model)).attribute(
                x, baselines=torch.zeros_like(x), target=class_id, n_steps=self.ig_steps,
                internal_batch_size=self.ig_steps)
        self.pixel_runs += 1
        out = attr[0].sum(dim=0).detach().float().cpu()
        self._pixel_maps[key] = out
        while len(self._pixel_maps) > self.cache_size:
            self._pixel_maps.popitem(last=False)
        return out

    def compute(
        self,
        index: Optional[int] = None,
        rank: Optional[int] = None,
        class_name: Optional[str] = None,
        models: Optional[Sequence[str]] = None,
        method: Optional[str] = None,
    ) -> ExplorerView:
        """Everything shown for a selection (arguments left out come from the current :attr:`state`).

        Raises:
            IndexError: an image index out of range.
            ValueError: an unknown class name, rank, method or model label, or no model selected.
        """
        s = self.state
        index = self._check_index(s["index"] if index is None else index)
        method = s["method"] if method is None else method
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        labels = _model_labels(s["models"] if models is None else models)
        unknown = [m for m in labels if m not in self.models]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose among {list(self.models)}")
        if rank is None and class_name is None:
            rank, class_name = s["rank"], s["class_name"]
        for label in self.models:  # every model once per image, so that showing a hidden model costs nothing
            self.features(label, index)
        cid = self.class_id(index, rank, class_name)
        image, target = self.item(index)
        ref_rank = self.ranking(index).index(cid)
        raw = {m: self.attribution(m, index, cid, method) for m in labels}
        size = tuple(image.shape[-2:])
        maps = {m: (r if tuple(r.shape) == size else upsample_cams(r, size)).numpy() for m, r in raw.items()}
        scale = shared_scale(raw.values())
        scores = {}
        for m in labels:
            logits = self.features(m, index)[1]
            probs = logits.softmax(0)
            pred = int(logits.argmax())
            scores[m] = {
                "logit": float(logits[cid]),
                "prob": float(probs[cid]),
                "rank": int((logits > logits[cid]).sum()) + 1,
                "pred": pred,
                "pred_prob": float(probs[pred]),
                "peak": float(raw[m].max()),
            }
        return ExplorerView(index, target, cid, self.class_names[cid], ref_rank, method, labels, raw, maps,
                            scale, scores, image)

    # ------------------------------------------------------------------------------------------------------
    # image lists
    # ------------------------------------------------------------------------------------------------------

    def pool_scores(self) -> Tuple[Dict[str, Tensor], Tensor]:
        """Logits ``{label: (P, C)}`` and targets ``(P,)`` of the first ``pool`` images (computed once)."""
        if self._pool_scores is None:
            n = min(self.pool, self.n_images)
            targets = torch.tensor([self.item(i)[1] for i in range(n)])
            logits = {}
            for label, model in self.models.items():
                parts = []
                with torch.no_grad(), _eval_mode(model):
                    for start in range(0, n, 128):
                        batch = torch.stack([self.item(i)[0] for i in range(start, min(n, start + 128))])
                        parts.append(model(batch.to(self._device(label)))[0].float().cpu())
                logits[label] = torch.cat(parts)
            self._pool_scores = (logits, targets)
        return self._pool_scores

    def most_confused(self, n: Optional[int] = None) -> List[Tuple[int, str]]:
        """Images the reference model gets most wrong: largest margin of its top negative's probability over
        the ground truth's. ``[(index, description), ...]``, most confused first."""
        n = check_int("n", n, min=1, none_ok=True)
        logits, targets = self.pool_scores()
        probs = logits[self.reference].softmax(1)
        gt = probs.gather(1, targets[:, None])[:, 0]
        neg = probs.scatter(1, targets[:, None], -1.0)
        top_p, top_c = neg.max(1)
        order = torch.argsort(top_p - gt, descending=True, stable=True)[: n or self.n_list]
        name = self.class_names
        return [(int(i), f"#{int(i)}: y={name[int(targets[i])]}, {self.reference} says {name[int(top_c[i])]} "
                         f"({top_p[i]:.2f} vs {gt[i]:.2f})") for i in order]

    def most_improved(self, n: Optional[int] = None) -> List[Tuple[int, str]]:
        """Images where the other models raise the ground truth's probability most over the reference model
        (mean over the other models). ``[(index, description), ...]``, most improved first.

        Raises:
            ValueError: fewer than two models.
        """
        n = check_int("n", n, min=1, none_ok=True)
        if len(self.models) < 2:
            raise ValueError("'most improved' compares models with the reference model: pass at least two models")
        logits, targets = self.pool_scores()
        gt = {m: l.softmax(1).gather(1, targets[:, None])[:, 0] for m, l in logits.items()}
        others = [m for m in self.models if m != self.reference]
        gain = torch.stack([gt[m] for m in others]).mean(0) - gt[self.reference]
        order = torch.argsort(gain, descending=True, stable=True)[: n or self.n_list]
        return [(int(i), f"#{int(i)}: y={self.class_names[int(targets[i])]}, p(y) {self.reference} "
                         f"{gt[self.reference][i]:.2f} -> others {gt[self.reference][i] + gain[i]:.2f}") for i in order]

    # ------------------------------------------------------------------------------------------------------
    # drawing
    # ------------------------------------------------------------------------------------------------------

    def _display_image(self, index: int, image: Tensor) -> np.ndarray:
        """The image at display size, ``(S, S', 3)`` floats in ``[0, 1]`` (cached per index)."""
        key = ("display", index)
        if key not in self._display:
            x = torch.as_tensor(to_display_image(image), dtype=torch.float32)
            x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
            x = F.interpolate(x, size=self._display_size(tuple(image.shape[-2:])), mode="bilinear",
                              align_corners=False)[0].clamp(0, 1)
            rgb = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
            self._display[key] = rgb.permute(1, 2, 0).numpy()
            while len(self._display) > self.cache_size:
                self._display.popitem(last=False)
        return self._display[key]

    def _display_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        h, w = size
        scale = self.panel_px / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))

    def panels(self, view: ExplorerView, opacity: Optional[float] = None) -> Dict[str, np.ndarray]:
        """The drawn panels as ``(S, S', 3)`` uint8 arrays: ``"image"``, then one per model: the map in the
        shared colour scale (:data:`hncam_utils.plots.CAM_CMAP`) blended over the image with ``opacity``
        (0: only the image, 1: only the map). Bilinear upsampling throughout."""
        from matplotlib import colormaps

        opacity = check_float("opacity", self.state["opacity"] if opacity is None else opacity, min=0, max=1,
                              fix="0 shows only the image, 1 only the map")
        img = self._display_image(view.index, view.image)
        size = img.shape[:2]
        cmap = colormaps[CAM_CMAP]
        vmin, vmax = view.scale
        out = {"image": (img * 255).round().astype(np.uint8)}
        for label in view.models:
            m = upsample_cams(view.raw[label], size).numpy()
            rgb = cmap(np.clip((m - vmin) / (vmax - vmin), 0.0, 1.0))[..., :3]
            out[label] = ((opacity * rgb + (1.0 - opacity) * img) * 255).round().astype(np.uint8)
        return out

    @staticmethod
    def _png(array: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def render(self, view: ExplorerView, opacity: Optional[float] = None) -> Dict[str, bytes]:
        """The panels of :meth:`panels` as PNG bytes: ``{"image": ..., label: ...}``."""
        return {key: self._png(arr) for key, arr in self.panels(view, opacity).items()}

    def colorbar_png(self, height: Optional[int] = None) -> bytes:
        """A vertical strip of the shared colour map (top: the scale's maximum, bottom: its minimum)."""
        from matplotlib import colormaps

        h = height or self.panel_px
        ramp = colormaps[CAM_CMAP](np.linspace(1.0, 0.0, h))[:, None, :3]
        return self._png((np.repeat(ramp, 14, axis=1) * 255).round().astype(np.uint8))

    def scores_html(self, view: ExplorerView) -> str:
        """The scores of a view as an HTML table."""
        name = self.class_names
        rows = []
        for m in view.models:
            sc = view.scores[m]
            rows.append(
                f"<tr><td>{html.escape(m)}</td><td>{sc['logit']:+.3f}</td><td>{sc['prob']:.3f}</td>"
                f"<td>{sc['rank']}</td><td>{html.escape(name[int(sc['pred'])])} ({sc['pred_prob']:.2f})</td>"
                f"<td>{sc['peak']:.4g}</td></tr>")
        kind = "the ground truth" if view.class_id == view.target else rank_label(view.rank) + f" of {self.reference}"
        head = (f"<b>class {html.escape(view.class_name)}</b> ({html.escape(kind)}), "
                f"{html.escape(METHODS[view.method])}, scale [{view.scale[0]:.3g}, {view.scale[1]:.3g}]")
        return (f"<div class='hncam-scores'>{head}<table><tr><th>model</th><th>logit</th><th>p(class)</th>"
                f"<th>rank</th><th>prediction</th><th>map peak</th></tr>{''.join(rows)}</table></div>")

    def update(self, **changes: Any) -> ExplorerView:
        """Change the selection (``index``, ``rank``, ``class_name``, ``models``, ``method``, ``opacity``),
        recompute and redraw; returns the new view. ``rank`` clears ``class_name`` and vice versa.

        Raises:
            IndexError, ValueError, TypeError: bad input (the state is left unchanged).
        """
        allowed = {"index", "rank", "class_name", "models", "method", "opacity"}
        wrong = set(changes) - allowed
        if wrong:
            raise TypeError(f"update() got unknown argument(s) {sorted(wrong)}; use {sorted(allowed)}")
        state = dict(self.state)
        if "rank" in changes and "class_name" not in changes:
            state["class_name"] = None
        if changes.get("class_name"):
            state["rank"] = None
        state.update(changes)
        if state["models"] is not None:
            state["models"] = _model_labels(state["models"])
        t0 = time.perf_counter()
        view = self.compute(state["index"], state["rank"], state["class_name"], state["models"], state["method"])
        t1 = time.perf_counter()
        pngs = self.render(view, state["opacity"])
        t2 = time.perf_counter()
        self.state = state
        self.last_view, self.last_pngs = view, pngs
        if self._widget is not None:
            self._show(view, pngs)
        t3 = time.perf_counter()
        self.last_timings = {"compute_ms": 1e3 * (t1 - t0), "draw_ms": 1e3 * (t2 - t1), "widgets_ms": 1e3 * (t3 - t2),
                             "total_ms": 1e3 * (t3 - t0)}
        return view

    def captions(self, view: ExplorerView) -> Dict[str, str]:
        """The caption above each panel (plain text): ``{"image": ..., label: ...}``."""
        short = METHODS[view.method].split(" (")[0]
        out = {"image": f"image #{view.index}, y = {self.class_names[view.target]}"}
        for label in view.models:
            sc = view.scores[label]
            out[label] = f"{label}: {short} of {view.class_name} (peak {sc['peak']:.3g}, p = {sc['prob']:.2f})"
        return out

    def _show(self, view: ExplorerView, pngs: Dict[str, bytes]) -> None:
        import ipywidgets as W

        c = self._controls
        panels = c["panels"]
        keys = ["image"] + list(view.models)
        if [getattr(b, "_hncam_key", None) for b in panels.children[:-1]] != keys:
            boxes = []
            for key in keys:
                box = W.VBox([W.HTML(), W.Image(format="png", layout=W.Layout(object_fit="contain"))],
                             layout=W.Layout(margin="0 6px 0 0", align_items="flex-start"))
                box._hncam_key = key
                box.add_class("hncam-panel")
                boxes.append(box)
            old = panels.children[:-1]
            panels.children = tuple(boxes) + (c["colorbar"],)
            for box in old:  # free the front end's copies of panels no longer shown
                for child in box.children:
                    child.close()
                box.close()
        caps = self.captions(view)
        for box, key in zip(panels.children[:-1], keys):
            box.children[0].value = f"<div style='font-size:12px;max-width:{self.panel_px + 20}px'>{html.escape(caps[key])}</div>"
            box.children[1].value = pngs[key]
        lo, hi = view.scale
        top, bottom = c["colorbar"].children[0], c["colorbar"].children[2]
        top.value = f"<div style='font-size:11px'>{hi:+.3g}</div>"
        bottom.value = f"<div style='font-size:11px'>{lo:+.3g}<br>{html.escape(_SCALE_LABEL[view.method])}<br>(shared)</div>"
        c["scores"].value = self.scores_html(view)
        c["message"].value = ""
        self._sync_controls(view)

    def _sync_controls(self, view: ExplorerView) -> None:
        """Make the controls show the state (after an update from Python or from another control)."""
        c, s = self._controls, self.state
        self._syncing = True
        try:
            if self._options_index != view.index:
                c["rank"].options = self._rank_options(view.index)
                self._options_index = view.index
            c["rank"].value = view.rank if view.rank < self.n_ranks else None
            c["name"].value = s["class_name"] or ""
            c["index"].value = view.index
            c["models"].value = tuple(view.models)
            c["method"].value = view.method
            c["opacity"].value = float(s["opacity"])
        finally:
            self._syncing = False

    # ------------------------------------------------------------------------------------------------------
    # the widget
    # ------------------------------------------------------------------------------------------------------

    def _rank_options(self, index: int) -> List[Tuple[str, int]]:
        ranking = self.ranking(index)
        return [(f"{rank_label(r)}: {self.class_names[ranking[r]]}", r) for r in range(self.n_ranks)]

    def show_message(self, text: str) -> None:
        """Show a message (bad input, or a hint) in the widget instead of a traceback."""
        if self._widget is not None:
            self._controls["message"].value = (
                f"<span style='color:#b00020'>{html.escape(text)}</span>" if text else "")

    def _safe(self, fn, *args: Any, **kwargs: Any) -> None:
        """Run a widget callback; bad input becomes a message in the widget, never a traceback."""
        try:
            fn(*args, **kwargs)
        except (IndexError, ValueError, TypeError, KeyError) as exc:
            self.show_message(str(exc).strip("'\""))
        except Exception as exc:  # anything else: still no traceback in the output area
            self.show_message(f"{type(exc).__name__}: {exc}")

    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._widget is None:
            self._build_widget()
        return self._widget

    def _build_widget(self) -> None:
        import ipywidgets as W

        s = self.state
        index = W.IntText(value=s["index"], description="image #", layout=W.Layout(width="170px"))
        source = W.Dropdown(options=list(_SOURCES), value="by index", description="choose",
                            layout=W.Layout(width="230px"))
        pick = W.Dropdown(options=[], description="", layout=W.Layout(width="440px", display="none"))
        rank = W.Dropdown(options=[], description="class", layout=W.Layout(width="300px"))
        name = W.Combobox(value="", options=list(self.class_names), placeholder="or type a class name",
                          ensure_option=False, continuous_update=False, layout=W.Layout(width="210px"))
        models = W.SelectMultiple(options=list(self.models), value=tuple(s["models"]), description="models",
                                  rows=min(4, len(self.models)), layout=W.Layout(width="230px"))
        method = W.Dropdown(options=[(v, k) for k, v in METHODS.items()], value=s["method"], description="method",
                            layout=W.Layout(width="300px"))
        opacity = W.FloatSlider(value=s["opacity"], min=0.0, max=1.0, step=0.05, description="opacity",
                                continuous_update=False, layout=W.Layout(width="300px"))
        message = W.HTML(value="")
        strip = W.Image(value=self.colorbar_png(), format="png",
                        layout=W.Layout(width="14px", height=f"{self.panel_px}px", object_fit="fill"))
        colorbar = W.VBox([W.HTML(), strip, W.HTML()], layout=W.Layout(align_items="flex-start"))
        panels = W.HBox([colorbar], layout=W.Layout(flex_flow="row wrap"))
        scores = W.HTML(value="")
        controls = dict(index=index, source=source, pick=pick, rank=rank, name=name, models=models, method=method,
                        opacity=opacity, message=message, colorbar=colorbar, panels=panels, scores=scores)
        for key, w in controls.items():
            w.add_class(f"hncam-{key}")
        self._controls = controls
        self._options_index = None

        def on(widget, handler):
            def callback(change):
                if not self._syncing:
                    self._safe(handler, change["new"])
            widget.observe(callback, names="value")

        def on_method(value):
            if value == "ig":
                self.show_message("computing Integrated Gradients (it runs each network a few dozen times) ...")
            self.update(method=value)

        on(index, lambda v: self.update(index=v))
        on(source, self._select_source)
        on(pick, lambda v: v is not None and self.update(index=int(v)))
        on(rank, lambda v: v is not None and self.update(rank=int(v)))
        on(name, lambda v: v.strip() and self.update(class_name=v))
        on(models, lambda v: self.update(models=list(v)))
        on(method, on_method)
        on(opacity, lambda v: self.update(opacity=float(v)))

        rows = [W.HBox([index, source, pick]), W.HBox([rank, name, method]), W.HBox([models, opacity]),
                message, panels, scores]
        self._widget = W.VBox(rows)
        self._widget.add_class("hncam-explorer")
        self._safe(self.update)

    def _select_source(self, value: str) -> None:
        c = self._controls
        if value == "by index":
            c["pick"].layout.display = "none"
            self.show_message("")
            return
        entries = self.most_confused() if value == "most confused" else self.most_improved()
        self._syncing = True
        try:
            c["pick"].options = [(text, i) for i, text in entries]
            c["pick"].value = None
        finally:
            self._syncing = False
        c["pick"].layout.display = None
        if entries:
            c["pick"].value = entries[0][0]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------------------------------------------
    # static fallback
    # ------------------------------------------------------------------------------------------------------

    def static_grid(
        self,
        indices: Sequence[int],
        n_negatives: int = 2,
        method: str = "cam",
        models: Optional[Sequence[str]] = None,
        cell: float = 1.3,
    ):
        """A matplotlib figure (for GitHub and other places where widgets do not render): one row per image,
        the ground-truth map and the top ``n_negatives`` negative maps (ranked by the reference model) of
        every model, on one colour scale shared by the whole grid.

        Raises:
            IndexError, ValueError: a bad index, method or model label, or no images.
        """
        indices = [self._check_index(i) for i in indices]
        if not indices:
            raise ValueError("static_grid needs at least one image index")
        labels = _model_labels(models) if models is not None else list(self.models)
        unknown = [m for m in labels if m not in self.models]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose among {list(self.models)}")
        n_negatives = check_int("n_negatives", n_negatives, min=0)
        cell = check_float("cell", cell, min=0, min_open=True, fix="the size of a panel in inches, e.g. 1.3")
        n = min(n_negatives, self.num_classes - 1)
        cams: Dict[str, List[Tensor]] = {m: [] for m in labels}
        classes: Dict[str, List[Tensor]] = {m: [] for m in labels}
        for i in indices:
            chosen = self.ranking(i)[: n + 1]
            for m in labels:
                cams[m].append(torch.stack([self.attribution(m, i, c, method) for c in chosen]))
                classes[m].append(torch.tensor(chosen))
        images = torch.stack([self.item(i)[0] for i in indices])
        return plot_cam_grid(images, {m: torch.stack(v) for m, v in cams.items()},
                             {m: torch.stack(v) for m, v in classes.items()}, class_names=self.class_names,
                             cell=cell)
