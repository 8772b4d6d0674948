"""CE vs CE + HNC on CIFAR-10 and CIFAR-100 with the CIFAR ResNet-18 (notebook 04's GPU recipe).

Profiles (:data:`CIFAR_SETTINGS`), every one built on ``RECIPES["cifar_resnet18"]`` (SGD, momentum 0.9,
weight decay 5e-4, cosine schedule; kuangliu/pytorch-cifar), shortened:

* ``smoke``: generated CIFAR fixtures (:func:`hncam_utils.data.make_cifar_fixture`), 20 training and 20 test
  images, one step: seconds, **a pipeline check, not a result**;
* ``cpu``: the real data, 2,000 training and 2,000 test images per data set, 2 epochs, one seed: shows the
  pipeline on real images on a laptop (far from converged, and one seed gives no verdict);
* ``gpu``: all 50,000 training and 10,000 test images, 15 epochs, Nesterov SGD lr 0.1, batch 256, random crop
  (pad 4) and flip done on the device, 3 paired seeds (:func:`gpu_time_estimate` says what it costs).

The data live on the training device as ``uint8`` (:func:`cifar_loaders`: a :class:`hncam_utils.data.DeviceLoader`
per split), so on a GPU the batches are cut, augmented and normalised there, with no worker processes.

``k`` is the number of negatives HNC penalises per image and must stay below the number of classes: each image
of CIFAR-10 has 9 negatives, of CIFAR-100 99. The course uses k = 3 for CIFAR-10 (the three most confusable of
nine) and k = 10 for CIFAR-100 (the same share of the negatives as the official k = 100 of ImageNet's 999).
The lambdas are the course's Cluttered Digits values, **not tuned on CIFAR**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from .data import DeviceLoader, load_cifar, make_cifar_fixture
from .experiments import LossSpec, RunResult, _balanced_subset
from .metrics import evaluate, predict
from .models import check_k, check_num_classes, cifar_resnet18
from .paths import data_home
from .runtime import get_device
from .train import TrainConfig, recipe, run_name, train_or_load

__all__ = ["CIFARSetting", "CIFAR_SETTINGS", "CIFAR_K", "cifar_loaders", "load_cifar_pair", "run_cifar",
           "confusion_matrix", "CIFAR_MEAN", "CIFAR_STD", "PEAK_TFLOPS", "training_flops", "gpu_time_estimate"]

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
#: HNC's k per data set (k < number of classes).
CIFAR_K = {"cifar10": 3, "cifar100": 10}
_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


@dataclass(frozen=True)
class CIFARSetting:
    """One CIFAR recipe: ``fixture`` (generated data), ``n_train`` / ``n_test`` (``None``: all 50,000 / 10,000),
    the training recipe, the losses (their ``k`` is set per data set from :data:`CIFAR_K`), the paired seeds,
    and ``curves`` (evaluate on the test split after every epoch, for learning curves)."""

    fixture: bool
    n_train: Optional[int]
    train: TrainConfig
    losses: Tuple[LossSpec, ...]
    seeds: Tuple[int, ...]
    n_test: Optional[int] = None
    curves: bool = False


_LOSSES = (LossSpec("ce"), LossSpec("hnc_mse", hnc_lambda=0.07), LossSpec("hnc_kd", hnc_lambda=0.1))

CIFAR_SETTINGS: Dict[str, CIFARSetting] = {
    "smoke": CIFARSetting(True, 10, recipe("cifar_resnet18", epochs=1, batch_size=10, lr=0.05, nesterov=True,
                                           eval_batch_size=10), _LOSSES, (0,), n_test=10),
    "cpu": CIFARSetting(False, 2000, recipe("cifar_resnet18", epochs=2, batch_size=64, lr=0.05, nesterov=True,
                                            eval_batch_size=500), _LOSSES, (0,), n_test=2000),
    "gpu": CIFARSetting(False, None, recipe("cifar_resnet18", epochs=15, batch_size=256, lr=0.1, nesterov=True,
                                            eval_batch_size=1000), _LOSSES, (0, 1, 2), curves=True),
}


def _transforms(name: str, train: bool):
    from torchvision import transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    return T.Compose(steps + [T.ToTensor(), T.Normalize(CIFAR_MEAN[name], CIFAR_STD[name])])


def _check_name(name: str) -> str:
    if name not in CIFAR_K:
        raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
    return name


def _fixture_root(name: str) -> Path:
    root = data_home() / "fixtures" / "cifar"
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    if not folder.exists():
        make_cifar_fixture(root, name, per_batch=10, test_size=50)
    return root


def load_cifar_pair(name: str, setting: CIFARSetting, root: Optional[Union[str, Path]] = None, timeout: float = 30):
    """``(train, test, classes)`` for ``name`` under ``setting`` as torchvision data sets with per-image
    transforms (the classic pipeline; :func:`cifar_loaders` keeps the data on the device instead): the fixture,
    or the real data (downloaded through the registry when missing; ``timeout`` bounds each network wait).

    Raises:
        hncam_utils.data.DatasetNotFoundError, hncam_utils.download.DownloadError: the data cannot be had.
    """
    _check_name(name)
    if setting.fixture:
        root = _fixture_root(name)
    verify = not setting.fixture
    train = load_cifar(name, root, train=True, transform=_transforms(name, True), download=not setting.fixture,
                       verify=verify, timeout=timeout)
    test = load_cifar(name, root, train=False, transform=_transforms(name, False), verify=verify)
    classes = list(train.classes)
    if setting.n_train is not None and setting.n_train < len(train):
        train = Subset(train, _balanced_subset(torch.as_tensor(train.targets), setting.n_train).tolist())
    if setting.n_test is not None and setting.n_test < len(test):
        test = Subset(test, list(range(setting.n_test)))
    return train, test, classes


def cifar_loaders(
    name: str,
    setting: CIFARSetting,
    root: Optional[Union[str, Path]] = None,
    device: Optional[Union[str, torch.device]] = None,
    timeout: float = 30,
) -> Tuple[DeviceLoader, DeviceLoader, List[str]]:
    """``(train, test, classes)``: the splits of ``name`` under ``setting`` held on ``device`` as ``uint8``.

    The training loader does the recipe's augmentation on the device (random crop with zero padding 4 and
    horizontal flips, the same as torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``);
    both normalise with the data set's mean and std. The training subset (``n_train``) is class-balanced and
    drawn with a fixed seed; the test subset (``n_test``) is the first images of the official test split.

    Raises:
        hncam_utils.data.DatasetNotFoundError, hncam_utils.download.DownloadError: the data cannot be had
            (the message says how to get it); ValueError: an unknown ``name``.
    """
    _check_name(name)
    if setting.fixture:
        root = _fixture_root(name)
    verify = not setting.fixture
    train = load_cifar(name, root, train=True, download=not setting.fixture, verify=verify, timeout=timeout)
    test = load_cifar(name, root, train=False, verify=verify)
    x, y = torch.from_numpy(train.data), torch.as_tensor(train.targets)
    if setting.n_train is not None and setting.n_train < len(y):
        keep = _balanced_subset(y, setting.n_train)
        x, y = x[keep], y[keep]
    tx, ty = torch.from_numpy(test.data), torch.as_tensor(test.targets)
    if setting.n_test is not None:
        tx, ty = tx[: setting.n_test], ty[: setting.n_test]
    dev = get_device(device)
    common = dict(mean=CIFAR_MEAN[name], std=CIFAR_STD[name], device=dev, classes=list(train.classes))
    train_loader = DeviceLoader(x, y, batch_size=setting.train.batch_size, crop=4, flip=True, **common)
    test_loader = DeviceLoader(tx, ty, batch_size=setting.train.eval_batch_size, shuffle=False, **common)
    return train_loader, test_loader, list(train.classes)


def _is_device_loader(data: Any) -> bool:
    return hasattr(data, "epoch_batches")


def run_cifar(
    name: str,
    setting: CIFARSetting,
    train_data,
    test_data,
    num_classes: int,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    cache_dir: Optional[Union[str, Path]] = None,
) -> List[RunResult]:
    """Train (or load from the cache) every loss x seed with the CIFAR ResNet-18, and evaluate on the test split.

    Args:
        train_data, test_data: the :class:`~hncam_utils.data.DeviceLoader` s of :func:`cifar_loaders`, or the
            data sets of :func:`load_cifar_pair`.

    Returns:
        One :class:`~hncam_utils.experiments.RunResult` per (loss, seed), with the metrics ``top1``, ``top5``,
        ``neg_peak``, ``neg_ratio``, ``posi_frac`` (see :func:`hncam_utils.metrics.evaluate`) and
        ``sec_per_epoch``, and the ``predictions`` on the test split.

    Raises:
        ValueError: ``k`` of :data:`CIFAR_K` too large for ``num_classes``, or a model / data mismatch.
    """
    _check_name(name)
    k = CIFAR_K[name]
    check_k(k, num_classes, _TITLES[name])
    n_tag = "all" if setting.n_train is None else setting.n_train
    tag = f"{name}{'-fixture' if setting.fixture else ''}-n{n_tag}"
    if setting.n_test is not None and not setting.fixture:
        tag += f"-test{setting.n_test}"
    eval_loader = test_data if _is_device_loader(test_data) else DataLoader(
        test_data, batch_size=setting.train.eval_batch_size)
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
                check_num_classes(model, num_classes, _TITLES[name])
                return model

            model, history = train_or_load(build, train_data, config, run,
                                           test_data=test_data if setting.curves else None,
                                           cache_dir=cache_dir, device=device, progress=progress)
            outputs: Dict[str, torch.Tensor] = {}
            metrics = evaluate(model, eval_loader, k=k, outputs=outputs)
            metrics["sec_per_epoch"] = float(np.mean(history["seconds"])) if history.get("seconds") else math.nan
            results.append(RunResult(spec.label, int(seed), config, history, metrics, model,
                                     predictions=outputs["logits"].argmax(dim=1)))
    return results


def confusion_matrix(model_or_predictions, test_data, num_classes: int, batch_size: int = 500) -> np.ndarray:
    """Rows: true class, columns: predicted class (counts over the test split).

    ``model_or_predictions``: a model (run over ``test_data``) or the predicted classes already at hand (e.g.
    :attr:`RunResult.predictions`, no second pass).
    """
    if isinstance(model_or_predictions, torch.Tensor):
        preds = model_or_predictions.cpu()
        targets = test_data.targets.cpu() if _is_device_loader(test_data) else torch.as_tensor(
            [int(test_data[i][1]) for i in range(len(test_data))])
    else:
        loader = test_data if _is_device_loader(test_data) else DataLoader(test_data, batch_size=batch_size)
        logits, targets = predict(model_or_predictions, loader)
        preds = logits.argmax(1)
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} test images")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets.numpy(), preds.numpy()), 1)
    return cm


#: Published dense peak throughput (TFLOPS) of the tensor cores at the precision ``fit`` uses there (NVIDIA's
#: data sheets): T4 (Turing, no bf16: fp16 with a loss scaler), A100 and H100 SXM (bf16, without sparsity).
PEAK_TFLOPS = {"Colab T4 (fp16)": 65.0, "A100 (bf16)": 312.0, "H100 SXM (bf16)": 989.0}


def training_flops(model_fn=None, image_size: int = 32, num_classes: int = 10, in_channels: int = 3) -> Tuple[float, float]:
    """``(train, eval)`` floating-point operations per image of a model (``model_fn()``; default: the CIFAR
    ResNet-18, counted once per shape), counted with ``torch.utils.flop_counter.FlopCounterMode`` on a CPU batch
    of 2 (train: forward + backward of the loss; eval: forward). The count depends on the network, not on the
    device or precision; it covers the convolutions and matrix products (element-wise work is not counted)."""
    if model_fn is None:
        return _resnet18_flops(image_size, num_classes, in_channels)
    return _count_flops(model_fn, image_size, num_classes, in_channels)


@lru_cache(maxsize=8)
def _resnet18_flops(image_size: int, num_classes: int, in_channels: int) -> Tuple[float, float]:
    return _count_flops(lambda: cifar_resnet18(num_classes), image_size, num_classes, in_channels)


def _count_flops(model_fn, image_size: int, num_classes: int, in_channels: int) -> Tuple[float, float]:
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    model = model_fn()
    x = torch.randn(2, in_channels, image_size, image_size)
    y = torch.arange(2) % num_classes
    model.train()
    with FlopCounterMode(display=False) as train_count:
        F.cross_entropy(model(x).logits, y).backward()
    model.eval()
    with FlopCounterMode(display=False) as eval_count, torch.no_grad():
        model(x)
    return train_count.get_total_flops() / 2, eval_count.get_total_flops() / 2


def gpu_time_estimate(
    setting: CIFARSetting,
    datasets: Sequence[str] = ("cifar10", "cifar100"),
    utilization: Tuple[float, float] = (0.1, 0.4),
    peaks: Optional[Dict[str, float]] = None,
) -> List[Dict[str, Any]]:
    """An **estimate** (not a measurement) of the time ``setting`` takes on GPUs: counted FLOPs / (published peak
    x an assumed utilization).

    The FLOPs are counted (:func:`training_flops`): per run, ``epochs x n_train`` training images, plus a pass
    over the ``n_test`` test images after every epoch when ``curves`` is on, plus the final evaluation. The peak
    is NVIDIA's published dense tensor-core figure (:data:`PEAK_TFLOPS`). The utilization (the share of that peak
    a small-image ResNet-18 really gets) is an **assumption**, given as a range; at 100 % the time is a hard
    lower bound.

    Returns:
        One dict per GPU: ``gpu``, ``peak_tflops``, ``pflop`` (the counted total, in 1e15 FLOPs), ``runs``, and
        the minutes ``at_peak``, ``optimistic`` (at the higher utilization) and ``pessimistic`` (the lower).
    """
    lo, hi = utilization
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"utilization must be (low, high) with 0 < low <= high <= 1, got {utilization}")
    n_train = setting.n_train or 50000
    n_test = setting.n_test or 10000
    total, runs = 0.0, 0
    for name in datasets:
        train_f, eval_f = training_flops(num_classes=100 if _check_name(name) == "cifar100" else 10)
        per_run = setting.train.epochs * n_train * train_f + (setting.train.epochs * setting.curves + 1) * n_test * eval_f
        n = len(setting.losses) * len(setting.seeds)
        total += n * per_run
        runs += n
    rows = []
    for gpu, tflops in (peaks or PEAK_TFLOPS).items():
        at_peak = total / (tflops * 1e12) / 60
        rows.append({"gpu": gpu, "peak_tflops": tflops, "pflop": total / 1e15, "runs": runs,
                     "at_peak": at_peak, "optimistic": at_peak / hi, "pessimistic": at_peak / lo})
    return rows
