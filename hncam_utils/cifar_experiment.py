"""CE vs CE + HNC on CIFAR-10 and CIFAR-100 with the CIFAR ResNet-18 (notebook 04's GPU recipe).

Profiles (:data:`CIFAR_SETTINGS`):

* ``smoke``: generated CIFAR fixtures (:func:`hncam_utils.data.make_cifar_fixture`): seconds, **a pipeline
  check, not a result**;
* ``cpu``: the real data, 5,000 training images per data set, 3 epochs, one seed: shows the pipeline on real
  images on a laptop (far from converged);
* ``gpu``: the reference recipe, shortened: all 50,000 images, SGD lr 0.1 momentum 0.9 nesterov, weight decay
  5e-4, batch 256, cosine, 30 epochs, random crop (pad 4) and flip, 3 paired seeds.

``k`` is the number of negatives HNC penalises per image and must stay below the number of classes: each image
of CIFAR-10 has 9 negatives, of CIFAR-100 99. The course uses k = 3 for CIFAR-10 (the three most confusable of
nine) and k = 10 for CIFAR-100 (the same share of the negatives as the official k = 100 of ImageNet's 999).
The lambdas are the course's Cluttered Digits values, **not tuned on CIFAR**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from .data import load_cifar, make_cifar_fixture
from .experiments import LossSpec, RunResult
from .metrics import evaluate, predict
from .models import check_k, check_num_classes, cifar_resnet18
from .paths import data_home
from .train import TrainConfig, run_name, train_or_load

__all__ = ["CIFARSetting", "CIFAR_SETTINGS", "CIFAR_K", "load_cifar_pair", "run_cifar", "confusion_matrix",
           "CIFAR_MEAN", "CIFAR_STD"]

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
#: HNC's k per data set (k < number of classes).
CIFAR_K = {"cifar10": 3, "cifar100": 10}


@dataclass(frozen=True)
class CIFARSetting:
    """One CIFAR recipe: ``fixture`` (generated data), ``n_train`` (``None``: all 50,000), the training recipe,
    the losses (their ``k`` is set per data set from :data:`CIFAR_K`) and the paired seeds."""

    fixture: bool
    n_train: Optional[int]
    train: TrainConfig
    losses: Tuple[LossSpec, ...]
    seeds: Tuple[int, ...]


_LOSSES = (LossSpec("ce"), LossSpec("hnc_mse", hnc_lambda=0.07), LossSpec("hnc_kd", hnc_lambda=0.1))

CIFAR_SETTINGS: Dict[str, CIFARSetting] = {
    "smoke": CIFARSetting(True, None, TrainConfig(epochs=1, batch_size=50, optimizer="sgd", lr=0.05, nesterov=True,
                                                  schedule="cosine", eval_batch_size=100), _LOSSES[:2], (0,)),
    "cpu": CIFARSetting(False, 5000, TrainConfig(epochs=3, batch_size=128, optimizer="sgd", lr=0.05, nesterov=True,
                                                 weight_decay=5e-4, schedule="cosine", num_workers=2), _LOSSES[:2], (0,)),
    "gpu": CIFARSetting(False, None, TrainConfig(epochs=30, batch_size=256, optimizer="sgd", lr=0.1, nesterov=True,
                                                 weight_decay=5e-4, schedule="cosine", num_workers=4,
                                                 eval_batch_size=1000), _LOSSES, (0, 1, 2)),
}


def _transforms(name: str, train: bool):
    from torchvision import transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    return T.Compose(steps + [T.ToTensor(), T.Normalize(CIFAR_MEAN[name], CIFAR_STD[name])])


def load_cifar_pair(name: str, setting: CIFARSetting, root: Optional[Union[str, Path]] = None, timeout: float = 30):
    """``(train, test, classes)`` for ``name`` under ``setting``: the fixture, or the real data (downloaded
    through the registry when missing; ``timeout`` bounds each network wait).

    Raises:
        hncam_utils.data.DatasetNotFoundError, hncam_utils.download.DownloadError: the data cannot be had.
    """
    if setting.fixture:
        root = data_home() / "fixtures" / "cifar"
        folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
        if not folder.exists():
            make_cifar_fixture(root, name, per_batch=10, test_size=50)
    verify = not setting.fixture
    train = load_cifar(name, root, train=True, transform=_transforms(name, True), download=not setting.fixture,
                       verify=verify, timeout=timeout)
    test = load_cifar(name, root, train=False, transform=_transforms(name, False), verify=verify)
    classes = list(train.classes)
    if setting.n_train is not None and setting.n_train < len(train):
        train = Subset(train, torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: setting.n_train].tolist())
    return train, test, classes


def run_cifar(
    name: str,
    setting: CIFARSetting,
    train_data,
    test_data,
    num_classes: int,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
) -> List[RunResult]:
    """Train (or load from the cache) every loss x seed with the CIFAR ResNet-18, and evaluate on the test split.

    Metrics: ``top1`` (and ``top5``), ``neg_peak``, ``neg_ratio``, ``posi_frac`` (see :func:`hncam_utils.metrics.evaluate`).
    """
    k = CIFAR_K[name]
    check_k(k, num_classes, name.upper().replace("CIFAR", "CIFAR-"))
    tag = f"{name}{'-fixture' if setting.fixture else ''}-n{setting.n_train or 'all'}"
    results: List[RunResult] = []
    for spec in setting.losses:
        for seed in setting.seeds:
            config = LossSpec(spec.loss, spec.hnc_lambda, k, spec.temperature, spec.label_smoothing, spec.name).apply(
                setting.train.replace(seed=int(seed)))
            run = run_name(tag, "cifar_resnet18", config)
            if progress:
                print(f"[{name} {spec.label} seed {seed}] {run}", flush=True)

            def build():
                model = cifar_resnet18(num_classes)
                check_num_classes(model, num_classes, name)
                return model

            model, history = train_or_load(build, train_data, config, run, test_data=test_data, device=device,
                                           progress=progress)
            metrics = evaluate(model, DataLoader(test_data, batch_size=config.eval_batch_size), k=k)
            metrics["sec_per_epoch"] = float(np.mean(history["seconds"])) if history.get("seconds") else math.nan
            results.append(RunResult(spec.label, int(seed), config, history, metrics, model))
    return results


def confusion_matrix(model, test_data, num_classes: int, batch_size: int = 500) -> np.ndarray:
    """Rows: true class, columns: predicted class (counts over the test split)."""
    logits, targets = predict(model, DataLoader(test_data, batch_size=batch_size))
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets.numpy(), logits.argmax(1).numpy()), 1)
    return cm
