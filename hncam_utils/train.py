"""One training engine for the notebooks and the command line.

``loss = base(logits, y) + hnc_lambda * HNC(features, classifier, y)`` with ``base`` the cross-entropy
(class indices) or binary cross-entropy (multi-hot targets), and HNC computed through the cheap top-k path
(:meth:`hncam_utils.losses.HNCLoss.from_features`).

* Device auto-detection (cuda, mps, cpu); AMP on CUDA (bf16 where supported, else fp16 with a GradScaler),
  ``channels_last`` and ``cudnn.benchmark`` on CUDA, optional ``torch.compile``.
* No host synchronisation per step off the CPU: the running sums of loss, CE, HNC term and correct
  predictions stay on the device and are read once per epoch; a non-finite loss is caught at the latest at
  the end of its epoch (on the CPU, where reading a value costs nothing, at once), before that epoch's
  checkpoint is written. Training logits never leave the device.
* ``train_data`` may be a map-style data set (batched by a ``DataLoader``) or a
  :class:`hncam_utils.data.DeviceLoader` (the whole split on the device, augmented there).
* Recipes from the references (:data:`RECIPES`, :func:`recipe`): CIFAR ResNet-18 with SGD, ResNet-50
  fine-tuning with a 10x learning rate on the new head (parameter groups), label smoothing and test-time
  flip as options.
* Reproducible: ``seed`` fixes the batch order of every epoch (one generator per epoch), and
  :func:`train_or_load` also seeds the model's initialisation.
* A checkpoint is written atomically at the end of every epoch (``state_dict``s + plain metadata, read back
  with ``torch.load(..., weights_only=True)``). Calling :func:`fit` again with the same checkpoint resumes
  after the last finished epoch and ends exactly where an uninterrupted run ends; a finished checkpoint is
  just loaded ("load if cached, else train").
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ._checks import (check_bool, check_callable, check_choice, check_file_stem, check_float, check_int,
                      check_module, show)
from .base_losses import check_base_loss, cosface_loss, focal_loss, generalized_cross_entropy
from .losses import HNCLoss
from .metrics import mean_average_precision, predict, topk_accuracy
from .models import unwrap
from .runtime import get_device, seed_everything

__all__ = [
    "TrainConfig",
    "History",
    "LOSSES",
    "fit",
    "train_or_load",
    "run_name",
    "checkpoint_path",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointMismatchError",
    "data_fingerprint",
    "RECIPES",
    "recipe",
]

LOSSES = ("ce", "hnc_mse", "hnc_kd")
History = Dict[str, List[float]]
PathLike = Union[str, os.PathLike]


class CheckpointMismatchError(ValueError):
    """A checkpoint was written with other settings than the ones asked for now."""


@dataclass
class TrainConfig:
    """Every setting of a training run (stored in the checkpoint as plain data).

    Attributes:
        epochs, batch_size: the budget.
        optimizer: ``"adamw"`` or ``"sgd"`` (``momentum``, ``nesterov``).
        lr, weight_decay: optimizer settings.
        schedule: ``"onecycle"`` (``pct_start``), ``"cosine"``, ``"step"`` (``step_size`` epochs, ``gamma``)
            or ``"constant"``. Schedules advance every batch except ``"step"``.
        loss: ``"ce"``, ``"hnc_mse"`` or ``"hnc_kd"`` (the base loss is CE, or BCE for multi-hot targets).
        hnc_lambda: weight of the HNC term (ignored for ``"ce"``); an HNC loss needs ``hnc_lambda > 0``
            (with 0 it would train plain CE under an HNC name, so that is refused).
        k: negatives per image for HNC (``None``: all).
        temperature: ``T`` of the kd variant.
        label_smoothing: for the CE base loss (a generic regulariser to compare HNC against).
        base_loss: the classification term: ``"ce"`` (cross-entropy, or BCE for multi-hot targets),
            ``"gce"`` (generalized CE, ``gce_q``), ``"focal"`` (``focal_gamma``) or ``"cosface"`` (additive
            cosine margin ``margin``; needs a cosine head, e.g. model ``digits_cnn_cosine``). See
            :mod:`hncam_utils.base_losses`. ``loss`` still says whether HNC is added.
        seed: batch order (and, through :func:`train_or_load`, initialisation).
        amp: mixed precision on CUDA (ignored elsewhere).
        num_workers: DataLoader workers.
        eval_batch_size: batch size for the per-epoch evaluation.
        head_lr_mult: learning-rate multiplier of the classifier head (its own parameter group), e.g. 10 when
            fine-tuning a pretrained backbone with a new head.
        tta_flip: evaluate on the average of the logits of each test image and its horizontal mirror.
        channels_last: ``channels_last`` memory format for model and inputs on CUDA (ignored elsewhere).
        compile: run the training forward pass through ``torch.compile``.

    ``channels_last`` and ``compile`` change how a run computes, not what it is: a checkpoint written with
    other values of these two is still resumed.

    Raises:
        ValueError: an unknown ``loss``, ``optimizer`` or ``schedule``; a number out of range, NaN or infinite
            (``lr <= 0``, ``epochs < 1``, ``label_smoothing`` outside [0, 1), ...); an HNC loss with
            ``hnc_lambda == 0``; ``nesterov`` without SGD momentum.
        TypeError: a field of the wrong kind (``epochs=2.5``, ``amp="no"``, ``k="3"``).
    """

    epochs: int = 4
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "onecycle"
    pct_start: float = 0.15
    step_size: int = 30
    gamma: float = 0.1
    loss: str = "ce"
    hnc_lambda: float = 0.0
    k: Optional[int] = 3
    temperature: float = 1.0
    label_smoothing: float = 0.0
    base_loss: str = "ce"
    gce_q: float = 0.7
    focal_gamma: float = 2.0
    margin: float = 0.35
    seed: int = 0
    amp: bool = True
    num_workers: int = 0
    eval_batch_size: int = 256
    head_lr_mult: float = 1.0
    tta_flip: bool = False
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.loss, str) or self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {LOSSES}")
        check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
        check_choice("schedule", self.schedule, ("onecycle", "cosine", "step", "constant"))
        for name in ("epochs", "batch_size", "step_size", "eval_batch_size"):
            check_int(name, getattr(self, name), min=1)
        check_int("seed", self.seed, min=0)
        check_int("num_workers", self.num_workers, min=0)
        check_float("lr", self.lr, min=0, min_open=True, fix="e.g. lr=2e-3 for AdamW, 0.1 for SGD")
        check_float("weight_decay", self.weight_decay, min=0)
        check_float("momentum", self.momentum, min=0, max=1, max_open=True)
        check_float("pct_start", self.pct_start, min=0, max=1, min_open=True, max_open=True)
        check_float("gamma", self.gamma, min=0, min_open=True)
        check_float("label_smoothing", self.label_smoothing, min=0, max=1, max_open=True)
        check_float("hnc_lambda", self.hnc_lambda, min=0)
        check_float("head_lr_mult", self.head_lr_mult, min=0, min_open=True, fix="e.g. 10 for a new head on a "
                    "pretrained backbone, 1 for one learning rate")
        check_bool("nesterov", self.nesterov)
        check_base_loss(self.base_loss, {"gce_q": self.gce_q, "focal_gamma": self.focal_gamma, "margin": self.margin})
        if self.label_smoothing and self.base_loss != "ce":
            raise ValueError(f"label_smoothing applies to the 'ce' base loss only, not base_loss={self.base_loss!r}; "
                             "set label_smoothing=0 or base_loss='ce'")
        check_bool("amp", self.amp)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError(f"nesterov=True needs optimizer='sgd' with momentum > 0, got optimizer={self.optimizer!r}, "
                             f"momentum={self.momentum}; set nesterov=False or use SGD with momentum")
        # k and T are checked for every loss (HNCLoss's own messages), so a typo never hides in a CE config
        HNCLoss(k=self.k, variant=self.variant or "mse", temperature=self.temperature)
        if self.loss != "ce" and self.hnc_lambda == 0:
            raise ValueError(
                f"loss={self.loss!r} with hnc_lambda=0 would train plain CE under an HNC name; set hnc_lambda > 0 "
                "(e.g. 0.1 for kd, 0.07 for mse) or use loss='ce'"
            )

    @property
    def variant(self) -> Optional[str]:
        """``"mse"``, ``"kd"`` or ``None`` for plain CE."""
        return None if self.loss == "ce" else self.loss.split("_", 1)[1]

    def hnc(self) -> Optional[HNCLoss]:
        """The configured :class:`HNCLoss`, or ``None`` when HNC is off."""
        if self.loss == "ce" or self.hnc_lambda == 0:
            return None
        return HNCLoss(k=self.k, variant=self.variant, temperature=self.temperature)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def run_name(dataset: str, model: str, config: TrainConfig) -> str:
    """A cache name that says data set, model, loss, k, lambda and seed, e.g.
    ``digits-easy_digits_cnn_hnc_kd_k3_lam0.1_s0``."""
    _check_name("dataset", dataset)
    _check_name("model", model)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if config.loss == "ce":
        loss = "ce"
    else:
        loss = f"{config.loss}_k{'all' if config.k is None else config.k}_lam{config.hnc_lambda:g}"
        if config.variant == "kd" and config.temperature != 1.0:
            loss += f"_T{config.temperature:g}"
    if config.label_smoothing:
        loss += f"_ls{config.label_smoothing:g}"
    if config.base_loss != "ce":  # the default base loss adds nothing: older run names stay valid
        param = {"gce": config.gce_q, "focal": config.focal_gamma, "cosface": config.margin}[config.base_loss]
        loss += f"_{config.base_loss}{param:g}"
    return f"{dataset}_{model}_{loss}_e{config.epochs}_s{config.seed}"


def _check_name(arg: str, name: Any) -> str:
    """A run name (or one of its parts) must be a plain file name: it becomes ``runs/<name>.pt``."""
    return check_file_stem(arg, name, fix="e.g. run_name('digits-easy', 'digits_cnn', config)")


def checkpoint_path(name: str, cache_dir: Optional[PathLike] = None) -> Path:
    """Where :func:`train_or_load` keeps the run ``name``: ``cache_dir / "runs" / f"{name}.pt"``, with
    ``cache_dir`` defaulting to :func:`hncam_utils.paths.data_home`. ``checkpoint_path(name).exists()`` tells
    whether the run is cached (finished or not: :func:`load_checkpoint` gives its ``epoch``)."""
    from .paths import data_home

    _check_name("name", name)
    root = Path(cache_dir) if cache_dir is not None else data_home()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"cache_dir={str(root)!r} is a file, not a folder; pass a folder")
    return root / "runs" / f"{name}.pt"


def save_checkpoint(state: Dict[str, Any], path: PathLike) -> None:
    """Write ``state`` atomically: to a temporary file in the same folder, then ``os.replace``.

    An interruption while saving leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: a corrupt or foreign file (the message says to delete it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder; pass the path of a .pt file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise RuntimeError(f"could not read checkpoint {path} ({exc}); delete it to train again") from exc


#: Devices where reading a value back to the host costs no pipeline stall (checked every step there).
_READBACK_FREE = ("cpu",)

#: Settings that change how a run computes, not what it is: not compared when resuming a checkpoint.
_EXECUTION_FIELDS = ("channels_last", "compile")

#: Training recipes from the references (``../shared/reference/real-data-and-scale.md``), to start from with
#: :func:`recipe`. Budgets are the references'; the notebooks' profiles shorten them.
RECIPES: Dict[str, TrainConfig] = {
    # kuangliu/pytorch-cifar: SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, cosine, 200 epochs
    "cifar_resnet18": TrainConfig(epochs=200, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                                  weight_decay=5e-4, schedule="cosine", eval_batch_size=1000),
    # CUB fine-tuning of an ImageNet ResNet-50: Nesterov SGD lr 0.01, 10x on the new head, wd 1e-4, cosine
    "resnet50_finetune": TrainConfig(epochs=50, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9,
                                     nesterov=True, weight_decay=1e-4, schedule="cosine", head_lr_mult=10.0,
                                     eval_batch_size=128),
    # Choe et al. (wsolevaluation) CAM training: SGD lr 0.01 (10x head), wd 1e-4, batch 64, 40 epochs, x0.1 at 30
    "resnet50_wsol": TrainConfig(epochs=40, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9,
                                 weight_decay=1e-4, schedule="step", step_size=30, gamma=0.1, head_lr_mult=10.0,
                                 eval_batch_size=128),
}


def recipe(name: str, **changes: Any) -> TrainConfig:
    """A copy of ``RECIPES[name]`` with ``changes`` (e.g. ``recipe("cifar_resnet18", epochs=30, loss="hnc_kd",
    hnc_lambda=0.1)``).

    Raises:
        ValueError: an unknown recipe name (the message lists them).
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name].replace(**changes)


def _param_groups(model: nn.Module, cfg: TrainConfig):
    """All parameters in one group, or, with ``head_lr_mult != 1``, the backbone at ``lr`` and the classifier
    head at ``lr * head_lr_mult``."""
    if cfg.head_lr_mult == 1.0:
        return model.parameters()
    head = list(unwrap(model).classifier.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = _param_groups(model, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        max_lr = [g["lr"] for g in opt.param_groups] if len(opt.param_groups) > 1 else cfg.lr
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, pct_start=cfg.pct_start)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _loader(data: Dataset, batch_size: int, shuffle: bool, generator: Optional[torch.Generator], workers: int, device) -> DataLoader:
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def _base_loss(logits: Tensor, y: Tensor, cfg: TrainConfig, net: Optional[nn.Module] = None) -> Tensor:
    if y.dim() == 2:
        if cfg.base_loss != "ce":
            raise ValueError(f"base_loss {cfg.base_loss!r} is for class indices; multi-hot targets train with 'ce' (BCE)")
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())
    # int32 / uint8 class indices are fine (fit checked them once): the losses want int64
    y = y.long()
    if cfg.base_loss == "gce":
        return generalized_cross_entropy(logits.float(), y, q=cfg.gce_q)
    if cfg.base_loss == "focal":
        return focal_loss(logits.float(), y, gamma=cfg.focal_gamma)
    if cfg.base_loss == "cosface":
        scale = getattr(getattr(net, "classifier", None), "scale", None)
        if scale is None:
            raise ValueError("base_loss 'cosface' needs a cosine head (logits s*cos); use model 'digits_cnn_cosine'")
        return cosface_loss(logits.float(), y, scale=scale, margin=cfg.margin)
    return F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)


# ------------------------------------------------------------------------------------ up-front data checks


def _dataset_labels(data: Any) -> Optional[Tensor]:
    """All labels of a data set that keeps them (a ``targets`` tensor, array or list; through ``Subset``),
    on the CPU; ``None`` when it does not (then only the first sample is checked)."""
    from torch.utils.data import Subset

    if isinstance(data, Subset):
        base = _dataset_labels(data.dataset)
        return None if base is None else base[torch.as_tensor(list(data.indices), dtype=torch.long)]
    targets = getattr(data, "targets", None)
    if targets is None:
        return None
    try:
        labels = targets.detach().cpu() if isinstance(targets, Tensor) else torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        return None
    return labels if labels.dim() >= 1 and labels.shape[0] == len(data) else None


def _check_labels(labels: Tensor, arg: str, num_classes: Optional[int], whole: bool) -> None:
    """Class indices ``(N,)`` (any integer dtype) in ``[0, C)``, or multi-hot ``(N, C)`` of 0 and 1."""
    where = f"{arg}'s labels" if whole else f"{arg}[0]'s label"
    head = f"model.classifier has {num_classes} outputs" if num_classes is not None else ""
    if labels.dim() == 1:
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"{where} must be integer class indices, got dtype {labels.dtype}; convert them with "
                            ".long() (multi-label targets must be multi-hot vectors of shape (C,))")
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or (num_classes is not None and hi >= num_classes):
                fix = (f"build the model with num_classes={hi + 1} or fix the labels" if lo >= 0
                       else "class indices start at 0")
                got = f"{where} lie in [{lo}, {hi}]" if whole else f"{where} is {lo}"
                need = f"{head}, so class indices must lie in [0, {num_classes - 1}]" if num_classes else \
                    "class indices must be >= 0"
                raise ValueError(f"{got} but {need}; {fix}")
    elif labels.dim() == 2:
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(f"{where} are multi-hot vectors of width {labels.shape[1]} but {head}; "
                             "build the model with that many classes")
        if labels.dtype != torch.bool and not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError(f"{where} (multi-hot) must contain only 0 and 1; threshold soft labels first")
    else:
        raise ValueError(f"{where} must be class indices (N,) or multi-hot vectors (N, C), got shape "
                         f"{tuple(labels.shape)}")


def _check_data(data: Any, arg: str, num_classes: Optional[int]) -> Optional[Tensor]:
    """Fail early on data ``fit`` cannot train on; return the whole label tensor when the data set has one."""
    if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise TypeError(f"{arg} must be a map-style Dataset (with __len__ and __getitem__) of (image, target) pairs, "
                        f"got {type(data).__name__}; pass the data set itself, not a DataLoader")
    if len(data) == 0:
        raise ValueError(f"{arg} is empty (len({arg}) == 0); check the data set's size options (e.g. n_train)")
    labels = _dataset_labels(data)
    if labels is not None:
        _check_labels(labels, arg, num_classes, whole=True)
        return labels
    sample = data[0]
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise TypeError(f"{arg}[0] must be an (image, target) or (image, target, box) tuple, got {show(sample)}")
    label = torch.as_tensor(sample[1])
    if label.dim() > 1:
        raise ValueError(f"{arg}[0]'s target must be a class index or a multi-hot vector, got shape {tuple(label.shape)}")
    _check_labels(label[None], arg, num_classes, whole=False)
    return None


def data_fingerprint(data: Any, labels: Optional[Tensor] = None) -> Dict[str, Any]:
    """What :func:`fit` stores in a checkpoint to recognise its training data: ``length``, ``num_classes``
    (the data set's ``num_classes`` or ``len(classes)``, or the width of multi-hot labels; -1 if unknown) and
    ``labels_sha1`` (a SHA-1 of all labels; ``""`` when the data set keeps no ``targets``)."""
    import hashlib

    if labels is None:
        labels = _dataset_labels(data)
    base = data.dataset if hasattr(data, "dataset") and hasattr(data, "indices") else data
    num_classes = getattr(base, "num_classes", None)
    if not isinstance(num_classes, int) and hasattr(base, "classes"):
        try:
            num_classes = len(base.classes)
        except TypeError:
            num_classes = None
    if not isinstance(num_classes, int) and labels is not None and labels.dim() == 2:
        num_classes = int(labels.shape[1])
    digest = ""
    if labels is not None:
        plain = labels.to(torch.int64 if labels.dim() == 1 else torch.float32).contiguous()
        digest = hashlib.sha1(plain.numpy().tobytes() + str(tuple(plain.shape)).encode()).hexdigest()
    length = int(data.num_samples) if _is_device_loader(data) else int(len(data))
    return {"length": length, "num_classes": int(num_classes) if isinstance(num_classes, int) else -1,
            "labels_sha1": digest}


def _check_fingerprint(saved: Optional[Dict[str, Any]], now: Dict[str, Any], checkpoint: PathLike) -> None:
    if not isinstance(saved, dict):  # written before fingerprints existed: trust it, as before
        return
    names = {"length": "samples", "num_classes": "classes", "labels_sha1": "labels (SHA-1)"}
    diff = [f"{names[k]}: {saved.get(k)!r} saved, {now[k]!r} now" for k in names
            if k in saved and saved[k] not in (None, -1, "") and now[k] not in (None, -1, "") and saved[k] != now[k]]
    if diff:
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint} was trained on other data ({'; '.join(diff)}); delete it, or choose another "
            "checkpoint name (run_name + data_tag give each data set its own)"
        )


def _score(logits: Tensor, targets: Tensor) -> Tuple[str, float]:
    if targets.dim() == 2:
        return "map", mean_average_precision(logits, targets)
    return "acc", topk_accuracy(logits, targets, (1,))[1]


def _amp_dtype(device: torch.device, enabled: bool) -> Optional[torch.dtype]:
    if not enabled or device.type != "cuda":
        return None
    # bf16 only where the tensor cores do it (Ampere, compute capability 8, and later). Older GPUs such as
    # Colab's T4 (7.5) report bf16 as "supported" through emulation, which is slow: use fp16 + a loss scaler.
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.bfloat16 if torch.cuda.get_device_capability(index)[0] >= 8 else torch.float16


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` where AMP is on (CUDA only), a null context elsewhere.

    Entering ``torch.autocast(device.type, enabled=False)`` is not harmless: torch builds inside our floor
    raise for device types their autocast does not know (``mps`` in older releases), even when disabled.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _progress(iterable, progress: bool, **kwargs):
    """``iterable`` with a ``tqdm.auto`` bar (pass ``total``), iterated exactly once.

    ``tqdm.auto`` outside a notebook is tqdm's asyncio class, whose constructor calls ``iter(iterable)`` and
    iteration calls it again. A shuffling ``DataLoader`` draws its order from its generator at every ``iter``, so
    the discarded first iterator would change the batch order: training with a progress bar would give other
    weights than without. Handing tqdm one iterator keeps the two identical.
    """
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iter(iterable), **kwargs)


def _is_device_loader(data: Any) -> bool:
    """A :class:`hncam_utils.data.DeviceLoader` (or anything with its ``epoch_batches`` protocol)."""
    return callable(getattr(data, "epoch_batches", None)) and hasattr(data, "num_samples")


def _check_labels_on_host(y: Tensor, num_classes: int) -> None:
    """Class indices still on the CPU: checking them there costs no device synchronisation."""
    if y.dim() == 1 and y.numel() and not y.dtype.is_floating_point:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"labels in [{lo}, {hi}] but the model has {num_classes} classes: build the model with "
                f"num_classes = the data set's number of classes"
            )


def _eval_batches(test_data: Any, batch_size: int, workers: int, dev: torch.device):
    if _is_device_loader(test_data):
        loader = test_data.to(dev) if hasattr(test_data, "to") else test_data
        if hasattr(loader, "replace"):  # no shuffling or augmentation at test time
            loader = loader.replace(shuffle=False, crop=0, flip=False)
        return loader.epoch_batches(0, 0, batch_size)
    return iter(_loader(test_data, batch_size, False, None, workers, dev))


@torch.no_grad()
def _predict(model: nn.Module, batches, dev: torch.device, amp_dtype, flip: bool, memory_format) -> Tuple[Tensor, Tensor]:
    """Logits (float32) and targets of every test batch, gathered on the device and copied to the CPU once;
    with ``flip``, the logits are the average over each image and its horizontal mirror."""
    was_training = model.training
    model.eval()
    logits, targets = [], []
    try:
        for batch in batches:
            x = batch[0].to(dev, non_blocking=True)
            if memory_format is not None:
                x = x.contiguous(memory_format=memory_format)
            with _autocast(dev, amp_dtype):
                out = model(x).logits.float()
                if flip:
                    out = (out + model(x.flip(3)).logits.float()) / 2
            logits.append(out)
            targets.append(batch[1])
    finally:
        model.train(was_training)
    return torch.cat(logits).cpu(), torch.cat([t.to(dev) for t in targets]).cpu()


def _train_step(
    model: nn.Module,
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    config: TrainConfig,
    hnc_fn: Optional[HNCLoss],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    dev: torch.device,
    amp_dtype: Optional[torch.dtype],
    *,
    memory_format: Optional[torch.memory_format] = None,
    check_now: Optional[str] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """One optimizer step of ``loss = base(logits, y) + hnc_lambda * HNC(features, classifier, y)``.

    The training step of both :func:`fit` and ``python -m hncam_utils train`` (:mod:`hncam_utils.distributed`),
    kept in one place so that the two cannot drift apart: move the batch to ``dev``, forward under autocast,
    base loss (:func:`_base_loss`), HNC through :meth:`HNCLoss.from_features` on ``net.classifier``, backward
    through the grad scaler, optimizer step, and the per-batch scheduler step (every schedule but ``"step"``).

    Args:
        model: what runs the forward pass (the model, its ``torch.compile`` or its DDP wrapper).
        net: the unwrapped model (its ``classifier`` head builds the CAMs; a cosine head gives CosFace's scale).
        check_now: where this step is (e.g. ``"epoch 2, step 7"``) to read the loss back at once and raise
            before the update when it is not finite (on the CPU, where reading costs nothing); ``None``: no
            read-back (the caller checks the returned flag once per epoch).

    Returns:
        ``(sums, finite, logits)``, all on ``dev`` without a host synchronisation: ``sums`` = float32
        ``[loss * B, base * B, hnc * B, correct]`` (``correct`` is 0 for multi-hot targets), ``finite`` a bool
        scalar (the loss was finite), ``logits`` detached.

    Raises:
        FloatingPointError: with ``check_now``, a non-finite loss (the weights are not updated).
    """
    x = x.to(dev, non_blocking=True)
    y = y.to(dev, non_blocking=True)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    with _autocast(dev, amp_dtype):
        out = model(x)
        base = _base_loss(out.logits, y, config, net)
        if hnc_fn is not None:
            hnc = hnc_fn.from_features(out.features, net.classifier, y, logits=out.logits)
            loss = base + config.hnc_lambda * hnc
        else:
            hnc = torch.zeros((), device=dev)
            loss = base
    finite = torch.isfinite(loss.detach())
    if check_now is not None and not bool(finite):
        raise FloatingPointError(f"loss became {float(loss.detach())} at {check_now}; lower the learning rate or hnc_lambda")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if config.schedule != "step":
        scheduler.step()
    bs = y.shape[0]
    logits = out.logits.detach()
    correct = (logits.argmax(dim=1) == y).sum() if y.dim() == 1 else torch.zeros((), device=dev)
    sums = torch.stack([loss.detach().float() * bs, base.detach().float() * bs, hnc.detach().float() * bs,
                        correct.float()])
    return sums, finite, logits


def fit(
    model: nn.Module,
    train_data: Union[Dataset, Any],
    config: TrainConfig,
    test_data: Optional[Union[Dataset, Any]] = None,
    checkpoint: Optional[PathLike] = None,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, History], None]] = (),
) -> History:
    """Train ``model`` (forward returns ``(logits, features)``) and return its per-epoch history.

    Args:
        model: a CAM model from :mod:`hncam_utils.models` (or anything returning ``CAMOutput`` with a
            ``classifier`` attribute on the unwrapped module).
        train_data: a map-style data set of ``(image, target)`` or ``(image, target, box)`` (batched by a
            ``DataLoader``), or a :class:`hncam_utils.data.DeviceLoader` (moved to the training device if
            needed; ``fit`` asks it for each epoch's batches with its own ``seed`` and ``batch_size``).
            Targets are class indices or multi-hot vectors.
        config: the :class:`TrainConfig`.
        test_data: evaluated after every epoch (accuracy, or mAP for multi-label); a data set or a
            ``DeviceLoader`` (evaluated without shuffling or augmentation).
        checkpoint: path of the checkpoint. If it exists: a finished run is loaded and returned without
            training; an unfinished one is resumed after its last completed epoch.
        device: default: :func:`hncam_utils.runtime.get_device`.
        progress: show ``tqdm.auto`` progress bars.
        callbacks: called as ``cb(epoch, history)`` after each epoch and its checkpoint (raise to stop).

    Returns:
        History: lists per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_ce`` (the base loss, CE or
        BCE), ``train_hnc`` (the unweighted HNC term, 0 for CE), ``train_acc`` or ``train_map``,
        ``test_acc``/``test_map`` and ``test_loss`` when ``test_data`` is given, and ``seconds`` (training
        time of the epoch).

    Checked once, up front (nothing inside the training loop): the config, the model (it needs a
    ``classifier`` ``nn.Linear`` for HNC), that ``train_data`` is a non-empty map-style data set, and its labels:
    all of them when it keeps a ``targets`` tensor/list (through ``Subset`` too), else the first sample's:
    integer class indices in ``[0, C)`` (any integer dtype: int32 is fine) or multi-hot ``(C,)`` vectors of
    0 and 1, with ``C`` the classifier's outputs. The checkpoint stores a fingerprint of the training data
    (:func:`data_fingerprint`: length, number of classes, a hash of the labels), so a checkpoint of another
    data set is refused rather than returned; checkpoints written before fingerprints existed still load.

    Raises:
        CheckpointMismatchError: an existing checkpoint written with another config, for other data, for
            another model, or a file that is not a training checkpoint (e.g. a plain pretrained state_dict).
        TypeError / ValueError: bad arguments or labels (the message names the argument and the fix).
        FloatingPointError: the loss became NaN or infinite (the epoch's checkpoint is not written).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}; e.g. TrainConfig(epochs=3)")
    check_module("model", model, fix="e.g. hncam_utils.models.digits_cnn()")
    check_bool("progress", progress)
    for i, cb in enumerate(callbacks):
        check_callable(f"callbacks[{i}]", cb, fix="a callback is called as cb(epoch, history)")
    net = unwrap(model)
    head = getattr(net, "classifier", None)
    if config.hnc() is not None and not isinstance(head, nn.Linear):
        raise TypeError(f"model must have a 'classifier' nn.Linear head for loss={config.loss!r} (HNC builds CAMs from "
                        f"it), got {type(head).__name__}; use a model from hncam_utils.models or CAMNet(body, head)")
    num_classes = head.out_features if isinstance(head, nn.Linear) else None
    device_data = _is_device_loader(train_data)
    if device_data:
        data_classes = getattr(train_data, "num_classes", None)
        if num_classes is not None and data_classes is not None and data_classes > num_classes:
            raise ValueError(
                f"the training data has {data_classes} classes but the model has {num_classes}: build the model "
                f"with num_classes={data_classes}"
            )
        train_labels = train_data.targets.detach().cpu()  # once, before training: no per-step read-back
        _check_labels(train_labels, "train_data", num_classes, whole=True)
    else:
        train_labels = _check_data(train_data, "train_data", num_classes)
    if test_data is not None and not _is_device_loader(test_data):
        _check_data(test_data, "test_data", num_classes)
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path or None, got {type(checkpoint).__name__}")
        if Path(checkpoint).is_dir():
            raise IsADirectoryError(f"checkpoint={os.fspath(checkpoint)!r} is a folder; pass a file path such as "
                                    "runs/my_run.pt (or use train_or_load with a run name)")
    fingerprint = data_fingerprint(train_data, train_labels)
    dev = get_device(device)
    model.to(dev)
    if device_data:
        train_data = train_data.to(dev) if hasattr(train_data, "to") else train_data
        n_samples = int(train_data.num_samples)
    else:
        n_samples = len(train_data)
    hnc_fn = config.hnc()
    steps = math.ceil(n_samples / config.batch_size)
    memory_format = torch.channels_last if (config.channels_last and dev.type == "cuda") else None
    if memory_format is not None:
        model.to(memory_format=memory_format)
    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer, config, steps)
    amp_dtype = _amp_dtype(dev, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    history: History = {}
    start_epoch = 0
    # reading a value back is free on the CPU: check every step there; elsewhere only once per epoch
    check_each_step = dev.type in _READBACK_FREE

    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=dev)
        if not isinstance(state, dict) or not {"model", "epoch", "history"} <= set(state):
            raise CheckpointMismatchError(
                f"{checkpoint} is not a training checkpoint written by fit (no 'model', 'epoch' and 'history' "
                "entries; a plain state_dict such as pretrained weights?). To start from those weights, load them "
                "with model.load_state_dict(torch.load(path, weights_only=True)) and give fit another checkpoint path"
            )
        # a setting that an older checkpoint lacks was added later: it ran with that setting's default
        saved = {**TrainConfig().to_dict(), **state.get("config", {})}
        wanted = config.to_dict()
        for key in _EXECUTION_FIELDS:
            saved.pop(key, None)
            wanted.pop(key, None)
        if saved != wanted:
            diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} was written with other settings (saved, requested): {diff}; "
                "delete it or choose another checkpoint name"
            )
        _check_fingerprint(state.get("data"), fingerprint, checkpoint)
        try:
            net.load_state_dict(state["model"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} holds the weights of another model ({first}); build the model it was "
                "trained with, or choose another checkpoint name"
            ) from None
        history = {k: list(v) for k, v in state["history"].items()}
        start_epoch = int(state["epoch"])
        if start_epoch < config.epochs:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng_cpu"].cpu())
            if dev.type == "cuda" and "rng_cuda" in state:
                torch.cuda.set_rng_state(state["rng_cuda"].cpu())
        else:
            return history

    forward = torch.compile(model) if config.compile else model
    cudnn_before = torch.backends.cudnn.benchmark
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sum_dtype = torch.float32 if dev.type == "mps" else torch.float64
    epochs = _progress(range(start_epoch, config.epochs), progress, desc="epochs", initial=start_epoch,
                       total=config.epochs, leave=False)
    try:
        for epoch in epochs:
            model.train()
            if device_data:
                batches = train_data.epoch_batches(epoch, config.seed, config.batch_size)
                total = train_data.num_batches(config.batch_size) if hasattr(train_data, "num_batches") else steps
            else:
                generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
                batches = _loader(train_data, config.batch_size, True, generator, config.num_workers, dev)
                total = len(batches)
            # loss, base loss, HNC term (each times the batch size), correct predictions; on the device
            sums = torch.zeros(4, device=dev, dtype=sum_dtype)
            finite = torch.ones((), device=dev, dtype=torch.bool)
            logits_all, targets_all = [], []  # multi-label only (mAP needs every score); kept on the device
            n = 0
            t0 = time.perf_counter()
            for step, batch in enumerate(_progress(batches, progress, total=total,
                                                   desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)):
                x, y = batch[0], batch[1]
                if not device_data and num_classes is not None and y.device.type == "cpu":  # free before the copy
                    _check_labels_on_host(y, num_classes)
                step_sums, ok, logits = _train_step(
                    forward, net, x, y, config, hnc_fn, optimizer, scheduler, scaler, dev, amp_dtype,
                    memory_format=memory_format, check_now=f"epoch {epoch + 1}, step {step + 1}" if check_each_step else None,
                )
                finite &= ok
                n += y.shape[0]
                if y.dim() != 1:
                    logits_all.append(logits.float())
                    targets_all.append(y)
                sums += step_sums.to(sum_dtype)
            if config.schedule == "step":
                scheduler.step()
            # the one read-back of the epoch
            values = sums.tolist()
            if not bool(finite):
                raise FloatingPointError(
                    f"the loss was NaN or infinite in at least one step of epoch {epoch + 1} (checked once per "
                    "epoch off the CPU); lower the learning rate or hnc_lambda. The epoch's checkpoint was not written."
                )
            seconds = time.perf_counter() - t0
            if logits_all:
                name, train_score = _score(torch.cat(logits_all).cpu(), torch.cat(targets_all).cpu())
            else:
                name, train_score = "acc", 100.0 * values[3] / max(n, 1)
            row: Dict[str, float] = {
                "epoch": float(epoch + 1),
                "lr": float(optimizer.param_groups[0]["lr"]),
                "train_loss": values[0] / n,
                "train_ce": values[1] / n,
                "train_hnc": values[2] / n,
                f"train_{name}": train_score,
                "seconds": seconds,
            }
            if test_data is not None:
                logits, targets = _predict(model, _eval_batches(test_data, config.eval_batch_size,
                                                                config.num_workers, dev),
                                           dev, amp_dtype, config.tta_flip, memory_format)
                tname, test_score = _score(logits, targets)
                row[f"test_{tname}"] = test_score
                row["test_loss"] = float(_base_loss(logits, targets, config.replace(label_smoothing=0.0), net))
            for key, val in row.items():
                history.setdefault(key, []).append(val)
            if progress and hasattr(epochs, "set_postfix"):
                epochs.set_postfix({k: round(v, 3) for k, v in row.items() if k in ("train_loss", f"test_{name}")})
            if checkpoint is not None:
                state = {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": config.to_dict(),
                    "data": fingerprint,
                    "rng_cpu": torch.get_rng_state(),
                }
                if dev.type == "cuda":
                    state["rng_cuda"] = torch.cuda.get_rng_state()
                save_checkpoint(state, checkpoint)
            for cb in callbacks:
                cb(epoch + 1, history)
    finally:
        torch.backends.cudnn.benchmark = cudnn_before
    return history


def train_or_load(
    build_model: Callable[[], nn.Module],
    train_data: Dataset,
    config: TrainConfig,
    name: str,
    test_data: Optional[Dataset] = None,
    cache_dir: Optional[PathLike] = None,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
) -> Tuple[nn.Module, History]:
    """Load a finished run from the cache, resume an interrupted one, or train from scratch.

    The model is built after ``seed_everything(config.seed)``, so a seed fixes initialisation and batch
    order. The checkpoint lives at :func:`checkpoint_path` ``(name, cache_dir)``; use :func:`run_name` for
    ``name``.

    Returns:
        ``(model, history)`` with the model in eval mode.

    Raises:
        TypeError: ``build_model`` not callable, or returning something that is not an ``nn.Module``.
        ValueError: a ``name`` with a path separator or a leading dot; everything :func:`fit` raises.
    """
    if isinstance(build_model, nn.Module):  # a built model is callable too, but calling it runs a forward pass
        raise TypeError(f"build_model must be a function that builds the model, got a {type(build_model).__name__} "
                        "instance; wrap it: lambda: digits_cnn() (train_or_load seeds before building)")
    check_callable("build_model", build_model, fix="pass a function, e.g. lambda: digits_cnn()")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    path = checkpoint_path(name, cache_dir)
    seed_everything(config.seed)
    model = build_model()
    check_module("build_model()", model, fix="build_model must return the network (e.g. lambda: digits_cnn()), "
                                              "not the class or a tuple")
    history = fit(model, train_data, config, test_data=test_data, checkpoint=path, device=device, progress=progress)
    model.eval()
    return model, history
