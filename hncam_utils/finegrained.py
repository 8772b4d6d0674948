"""Fine-grained recognition on CUB-200-2011: ResNet-50 fine-tuned with CE or CE + HNC, then accuracy,
negative-CAM statistics and weakly supervised localization (:mod:`hncam_utils.wsol`). Notebook 05 runs it.

Profiles (:data:`CUB_SETTINGS`):

* ``smoke``: a generated CUB fixture (:func:`hncam_utils.data.make_cub_fixture`, synthetic birds), 48 px,
  random weights when the ImageNet ones cannot be had: seconds; **a pipeline check, not a result**.
* ``cpu``: the first 10 classes of the real CUB at 160 px, ImageNet weights, 3 epochs, one seed: a laptop
  recipe (about 300 training images); it shows the pipeline on real birds, not the paper's setting.
* ``gpu``: all 200 classes at 224 px (train: resize 256, random crop 224, flip; test: resize 224), Choe et al.'s
  CAM ResNet-50 (stride-1 last stage, 14x14 CAMs), SGD momentum 0.9, lr 0.01 with 10x on the new head, weight
  decay 1e-4, batch 64, cosine, 15 epochs, CE and CE + HNC_mse with 3 paired seeds (add
  ``_specs(10)[2]``, HNC_kd, for the full comparison).

Run times were not measured (no CUB and no GPU on the machines that built the course). The WSOL evaluation runs
on the CPU: about 0.07 s per test image (224 px, 100 thresholds) measured on a busy 2-core machine, so about
7 minutes per run on CUB's 5,794 test images.

The HNC settings (k, lambda) are the course's defaults scaled to 200 classes, **not tuned on CUB**.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ._checks import check_bool, check_int, check_module, show
from .data import CUB200, cub_transforms, make_cub_fixture
from .experiments import LossSpec, RunResult
from .models import WeightsUnavailableError, check_k, check_num_classes, resnet50_cam
from .paths import data_home
from .train import TrainConfig, checkpoint_path, run_name, train_or_load
from .wsol import WSOLResult, evaluate_wsol

__all__ = [
    "CUBSetting", "CUB_SETTINGS", "CUBData", "load_cub", "build_cub_model", "run_cub", "CUB_METRICS", "most_changed",
    "example_maps",
]

#: The metrics :func:`run_cub` reports for each run (all in % except the peaks).
CUB_METRICS = ("top1", "neg_peak", "neg_ratio", "gt_known_loc", "top1_loc", "maxboxacc", "maxboxacc_v2")


@dataclass(frozen=True)
class CUBSetting:
    """One CUB recipe.

    Attributes:
        fixture: use the generated fixture instead of the real data (smoke profile).
        num_classes: keep the first ``num_classes`` classes (``None``: all 200).
        image_size: training crop / test resize side; ``resize``: the training resize (default ``size * 8/7``).
        last_stride: 1 for 14x14 CAMs at 224 px (Choe et al.), 2 for torchvision's 7x7.
        weights: torchvision weights name for the backbone (``None``: random).
        allow_random_weights: fall back to random weights when the pretrained ones cannot be had (smoke only).
        train: the training recipe (loss and seed are set per run).
        losses: the losses compared. seeds: paired seeds.
    """

    fixture: bool
    num_classes: Optional[int]
    image_size: int
    train: TrainConfig
    losses: Tuple[LossSpec, ...]
    seeds: Tuple[int, ...]
    resize: Optional[int] = None
    last_stride: int = 1
    weights: Optional[str] = "DEFAULT"
    allow_random_weights: bool = False

    def tag(self) -> str:
        """A short name for cached runs that changes whenever the data or model part of the setting does."""
        key = repr((self.fixture, self.num_classes, self.image_size, self.resize, self.last_stride, self.weights))
        return "cub-" + hashlib.sha1(key.encode()).hexdigest()[:8]


def _specs(k: int) -> Tuple[LossSpec, ...]:
    return (LossSpec("ce"), LossSpec("hnc_mse", hnc_lambda=0.07, k=k), LossSpec("hnc_kd", hnc_lambda=0.1, k=k))


CUB_SETTINGS: Dict[str, CUBSetting] = {
    "smoke": CUBSetting(
        fixture=True, num_classes=None, image_size=48, last_stride=1, weights="DEFAULT", allow_random_weights=True,
        train=TrainConfig(epochs=1, batch_size=12, optimizer="sgd", lr=0.003, head_lr_mult=10, weight_decay=1e-4,
                          schedule="cosine", eval_batch_size=12),
        losses=_specs(2)[:2], seeds=(0, 1),
    ),
    "cpu": CUBSetting(
        fixture=False, num_classes=10, image_size=160, last_stride=2, weights="DEFAULT",
        train=TrainConfig(epochs=3, batch_size=16, optimizer="sgd", lr=0.01, head_lr_mult=10, weight_decay=1e-4,
                          schedule="cosine", eval_batch_size=32, num_workers=2),
        losses=_specs(3)[:2], seeds=(0,),
    ),
    "gpu": CUBSetting(
        fixture=False, num_classes=None, image_size=224, last_stride=1, weights="DEFAULT",
        train=TrainConfig(epochs=15, batch_size=64, optimizer="sgd", lr=0.01, head_lr_mult=10, weight_decay=1e-4,
                          schedule="cosine", eval_batch_size=128, num_workers=4),
        losses=_specs(10)[:2], seeds=(0, 1, 2),
    ),
}


@dataclass
class CUBData:
    """The splits of one setting. ``train``: ``(image, label)``; ``test``: ``(image, label, box)``;
    ``test_raw``: the test split untransformed (PIL images, original boxes) for figures."""

    train: Any
    test: Any
    test_raw: CUB200
    classes: List[str]
    fixture: bool
    folder: Path


def _check_setting(setting: Any) -> "CUBSetting":
    if not isinstance(setting, CUBSetting):
        raise TypeError(f"setting must be a CUBSetting, got {show(setting)}; e.g. CUB_SETTINGS['smoke'] (or 'cpu', "
                        "'gpu')")
    return setting


def _check_data(data: Any) -> "CUBData":
    if not isinstance(data, CUBData):
        raise TypeError(f"data must be the CUBData of load_cub(setting), got {show(data)}")
    return data


def _first_classes(data: CUB200, n: Optional[int]):
    if n is None or n >= data.num_classes:
        return data
    return Subset(data, [i for i, t in enumerate(data.targets) if t < n])


def load_cub(setting: CUBSetting, root: Optional[Union[str, Path]] = None, download: bool = True) -> CUBData:
    """The data of ``setting``: the fixture (generated once under ``data_home()/fixtures``) or the real CUB.

    Raises:
        hncam_utils.data.DatasetNotFoundError, hncam_utils.download.DownloadError: the real data cannot be
            had (the message says how to get it).
        TypeError: ``setting`` is not a :class:`CUBSetting` (e.g. a profile name instead of
            ``CUB_SETTINGS[name]``), or ``download`` not a bool.
    """
    _check_setting(setting)
    check_bool("download", download)
    if setting.fixture:
        root = data_home() / "fixtures" / "cub"
        if not (root / "CUB_200_2011" / "classes.txt").exists():
            make_cub_fixture(root, num_classes=4, per_class=6, seed=0)
        download = False
    train_tf = cub_transforms(train=True, size=setting.image_size, resize=setting.resize)
    test_tf = cub_transforms(train=False, size=setting.image_size)
    train = CUB200(root, "train", transform=train_tf, download=download)
    test = CUB200(root, "test", transform=test_tf, return_box=True)
    raw = CUB200(root, "test", return_box=True)
    n = setting.num_classes
    classes = train.classes[:n] if n else train.classes
    return CUBData(_first_classes(train, n), _first_classes(test, n), raw, classes, setting.fixture, train.folder)


def build_cub_model(setting: CUBSetting, num_classes: int, progress: bool = False) -> Tuple[nn.Module, str]:
    """ResNet-50 for ``setting``; returns ``(model, weights_used)``.

    When the pretrained weights cannot be had, a setting with ``allow_random_weights`` (smoke) continues from
    random weights and says so in ``weights_used``; any other setting raises.

    Raises:
        WeightsUnavailableError: no pretrained weights and random ones not allowed.
        TypeError / ValueError: a setting that is not a :class:`CUBSetting`, ``num_classes`` not an int >= 2.
    """
    _check_setting(setting)
    num_classes = check_int("num_classes", num_classes, min=2, fix="the number of classes of the CUB split")
    try:
        return resnet50_cam(num_classes, weights=setting.weights, last_stride=setting.last_stride,
                            progress=progress), str(setting.weights)
    except WeightsUnavailableError:
        if not setting.allow_random_weights:
            raise
        return resnet50_cam(num_classes, weights=None, last_stride=setting.last_stride), "random (ImageNet weights unavailable)"


def run_cub(
    setting: CUBSetting,
    data: CUBData,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    cache_dir: Optional[Union[str, Path]] = None,
) -> List[RunResult]:
    """Train (or load from the cache) every loss x seed of ``setting`` and evaluate it on the test split.

    Each :class:`~hncam_utils.experiments.RunResult` has ``metrics`` with :data:`CUB_METRICS`; two added
    attributes: ``result.wsol``, the :class:`~hncam_utils.wsol.WSOLResult` with per-image IoUs (for the most
    improved / damaged figures), and ``result.weights``, which weights the run started from. The pretrained
    weights are fetched only when a run must be trained: cached runs load without them.

    Raises:
        TypeError: ``setting`` not a :class:`CUBSetting`, ``data`` not the :class:`CUBData` of :func:`load_cub`,
            ``progress`` not a bool.
    """
    _check_setting(setting)
    _check_data(data)
    check_bool("progress", progress)
    num_classes = len(data.classes)
    templates: Dict[bool, Tuple[nn.Module, str]] = {}

    def template(cached: bool) -> Tuple[nn.Module, str]:
        """The start of every run, built once: pretrained (fetched once), or bare when the run is cached."""
        if cached not in templates:
            if cached:
                templates[cached] = resnet50_cam(num_classes, weights=None, last_stride=setting.last_stride), "from the cached run"
            else:
                templates[cached] = build_cub_model(setting, num_classes, progress=progress)
            check_num_classes(templates[cached][0], num_classes, "this CUB split")
        return templates[cached]

    results: List[RunResult] = []
    for spec in setting.losses:
        if spec.loss != "ce":
            check_k(spec.k, num_classes, f"this CUB split ({num_classes} classes)")
        for seed in setting.seeds:
            config = spec.apply(setting.train.replace(seed=int(seed)))
            name = run_name(setting.tag(), "resnet50", config)
            if progress:
                print(f"[{spec.label} seed {seed}] {name}", flush=True)
            cached = checkpoint_path(name, cache_dir).exists()
            start, weights_used = template(cached)

            def build() -> nn.Module:  # called after seeding: shared backbone, a new head that depends on the seed
                model = copy.deepcopy(start)
                model.classifier.reset_parameters()
                return model

            model, history = train_or_load(build, data.train, config, name, test_data=data.test, cache_dir=cache_dir,
                                           device=device, progress=progress)
            loader = DataLoader(data.test, batch_size=config.eval_batch_size, num_workers=config.num_workers)
            out = evaluate_wsol(model, loader, k=min(3, num_classes - 1))
            w = out["wsol"]
            metrics = {"top1": out["top1"], "neg_peak": out["neg_peak"], "neg_ratio": out["neg_ratio"],
                       **{key: w.summary()[key] for key in ("gt_known_loc", "top1_loc", "maxboxacc", "maxboxacc_v2")}}
            metrics["sec_per_epoch"] = float(np.mean(history["seconds"])) if history.get("seconds") else math.nan
            result = RunResult(spec.label, int(seed), config, history, metrics, model)
            result.wsol = w  # type: ignore[attr-defined]
            result.weights = weights_used  # type: ignore[attr-defined]
            results.append(result)
    return results


def most_changed(base: "WSOLResult", other: "WSOLResult", n: int = 3) -> Dict[str, List[int]]:
    """Test images whose localization IoU changed most from ``base`` to ``other`` (each at its own threshold).

    Returns:
        ``{"improved": [...], "damaged": [...]}``: indices into the test split, largest change first. An image
        appears only if its IoU changed.

    Raises:
        TypeError: ``base`` or ``other`` not a :class:`~hncam_utils.wsol.WSOLResult` (``result.wsol`` of
            :func:`run_cub`), ``n`` not an int. ValueError: results of different test sets, ``n < 1``.
    """
    for name, value in (("base", base), ("other", other)):
        if not isinstance(value, WSOLResult):
            raise TypeError(f"{name} must be a WSOLResult (e.g. run_cub(...)[i].wsol), got {show(value)}")
    n = check_int("n", n, min=1)
    if base.iou.shape != other.iou.shape:
        raise ValueError(f"base and other were measured on different test sets ({len(base.iou)} and {len(other.iou)} "
                         "images); compare runs of the same setting")
    diff = other.iou - base.iou
    order = np.argsort(-diff, kind="stable")
    improved = [int(i) for i in order[:n] if diff[i] > 0]
    damaged = [int(i) for i in order[::-1][:n] if diff[i] < 0]
    return {"improved": improved, "damaged": damaged}


@torch.no_grad()
def example_maps(
    models: Mapping[str, nn.Module], data: CUBData, indices: Sequence[int], n_neg: int = 2
) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Tuple[torch.Tensor, torch.Tensor]], Dict[str, List[int]]]:
    """The inputs of :func:`hncam_utils.locplots.plot_cam_rows` for test images ``indices``.

    Returns:
        ``(images (N, 3, H, W) in [0, 1], boxes (N, 4), {label: (cams, classes)}, {label: predictions})``; each
        model's ground-truth CAM first, then its ``n_neg`` top negatives (ranked by its own logits).

    Raises:
        TypeError: ``models`` not a ``{label: model}`` dict of modules, ``data`` not a :class:`CUBData`, indices
            or ``n_neg`` not ints. ValueError: no index, an index outside the test split, ``n_neg < 0``.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty dict {{label: model}}, got {show(models)}")
    for label, model in models.items():
        check_module(f"models[{label!r}]", model)
    _check_data(data)
    if isinstance(indices, (np.ndarray, torch.Tensor)) and indices.ndim == 1:
        indices = indices.tolist()
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
        raise TypeError(f"indices must be a list of test-image indices, got {show(indices)}")
    if len(indices) == 0:
        raise ValueError("indices is empty: pass at least one test-image index, e.g. most_changed(...)['improved']")
    indices = [check_int(f"indices[{i}]", v, min=0, max=len(data.test) - 1,
                         fix=f"the test split has {len(data.test)} images") for i, v in enumerate(indices)]
    n_neg = check_int("n_neg", n_neg, min=0)
    from .data import IMAGENET_MEAN, IMAGENET_STD
    from .metrics import gt_and_top_negative_cams
    from .models import unwrap

    items = [data.test[i] for i in indices]
    x = torch.stack([it[0] for it in items])
    y = torch.tensor([int(it[1]) for it in items])
    boxes = torch.stack([it[2] for it in items])
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    images = (x * std + mean).clamp(0, 1)
    maps, preds = {}, {}
    for label, model in models.items():
        maps[label] = gt_and_top_negative_cams(model, x, y, n=n_neg)
        device = next(unwrap(model).parameters()).device
        preds[label] = model(x.to(device)).logits.argmax(1).cpu().tolist()
    return images, boxes, maps, preds
