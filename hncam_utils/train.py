"""One training engine for the notebooks and the command line.

``loss = base(logits, y) + hnc_lambda * HNC(features, classifier, y)`` with ``base`` the cross-entropy
(class indices) or binary cross-entropy (multi-hot targets), and HNC computed through the cheap top-k path
(:meth:`hncam_utils.losses.HNCLoss.from_features`).

* Device auto-detection (cuda, mps, cpu); AMP on CUDA (bf16 where supported, else fp16 with a GradScaler).
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
        hnc_lambda: weight of the HNC term (ignored for ``"ce"``).
        k: negatives per image for HNC (``None``: all).
        temperature: ``T`` of the kd variant.
        label_smoothing: for the CE base loss (a generic regulariser to compare HNC against).
        seed: batch order (and, through :func:`train_or_load`, initialisation).
        amp: mixed precision on CUDA (ignored elsewhere).
        num_workers: DataLoader workers.
        eval_batch_size: batch size for the per-epoch evaluation.
        head_lr_mult: learning-rate multiplier of the classifier head (its own parameter group), e.g. 10 when
            fine-tuning a pretrained backbone with a new head.
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
    seed: int = 0
    amp: bool = True
    num_workers: int = 0
    eval_batch_size: int = 256
    head_lr_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {LOSSES}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "cosine", "step", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose onecycle, cosine, step or constant")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0 or self.hnc_lambda < 0:
            raise ValueError(f"lr must be > 0 and hnc_lambda >= 0, got {self.lr}, {self.hnc_lambda}")
        if self.loss != "ce":
            HNCLoss(k=self.k, variant=self.variant, temperature=self.temperature)  # validates k, T

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
    if config.loss == "ce":
        loss = "ce"
    else:
        loss = f"{config.loss}_k{'all' if config.k is None else config.k}_lam{config.hnc_lambda:g}"
        if config.variant == "kd" and config.temperature != 1.0:
            loss += f"_T{config.temperature:g}"
    if config.label_smoothing:
        loss += f"_ls{config.label_smoothing:g}"
    return f"{dataset}_{model}_{loss}_e{config.epochs}_s{config.seed}"


def checkpoint_path(name: str, cache_dir: Optional[PathLike] = None) -> Path:
    """Where :func:`train_or_load` keeps the run ``name``: ``cache_dir / "runs" / f"{name}.pt"``, with
    ``cache_dir`` defaulting to :func:`hncam_utils.paths.data_home`. ``checkpoint_path(name).exists()`` tells
    whether the run is cached (finished or not: :func:`load_checkpoint` gives its ``epoch``)."""
    from .paths import data_home

    root = Path(cache_dir) if cache_dir is not None else data_home()
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
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise RuntimeError(f"could not read checkpoint {path} ({exc}); delete it to train again") from exc


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


def _base_loss(logits: Tensor, y: Tensor, cfg: TrainConfig) -> Tensor:
    if y.dim() == 2:
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())
    return F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)


def _score(logits: Tensor, targets: Tensor) -> Tuple[str, float]:
    if targets.dim() == 2:
        return "map", mean_average_precision(logits, targets)
    return "acc", topk_accuracy(logits, targets, (1,))[1]


def _amp_dtype(device: torch.device, enabled: bool) -> Optional[torch.dtype]:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` where AMP is on (CUDA only), a null context elsewhere.

    Entering ``torch.autocast(device.type, enabled=False)`` is not harmless: torch builds inside our floor
    raise for device types their autocast does not know (``mps`` in older releases), even when disabled.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _progress(iterable, progress: bool, **kwargs):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def fit(
    model: nn.Module,
    train_data: Dataset,
    config: TrainConfig,
    test_data: Optional[Dataset] = None,
    checkpoint: Optional[PathLike] = None,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, History], None]] = (),
) -> History:
    """Train ``model`` (forward returns ``(logits, features)``) and return its per-epoch history.

    Args:
        model: a CAM model from :mod:`hncam_utils.models` (or anything returning ``CAMOutput`` with a
            ``classifier`` attribute on the unwrapped module).
        train_data: a map-style data set of ``(image, target)`` or ``(image, target, box)``; targets are
            class indices or multi-hot vectors.
        config: the :class:`TrainConfig`.
        test_data: evaluated after every epoch (accuracy, or mAP for multi-label).
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

    Raises:
        CheckpointMismatchError: an existing checkpoint written with another config.
    """
    dev = get_device(device)
    model.to(dev)
    net = unwrap(model)
    hnc_fn = config.hnc()
    steps = math.ceil(len(train_data) / config.batch_size)
    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer, config, steps)
    amp_dtype = _amp_dtype(dev, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    history: History = {}
    start_epoch = 0

    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=dev)
        # a setting that an older checkpoint lacks was added later: it ran with that setting's default
        saved = {**TrainConfig().to_dict(), **state.get("config", {})}
        if saved != config.to_dict():
            diff = {k: (saved.get(k), v) for k, v in config.to_dict().items() if saved.get(k) != v}
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} was written with other settings (saved, requested): {diff}; "
                "delete it or choose another checkpoint name"
            )
        net.load_state_dict(state["model"])
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

    test_loader = (
        _loader(test_data, config.eval_batch_size, False, None, config.num_workers, dev) if test_data is not None else None
    )
    epochs = _progress(range(start_epoch, config.epochs), progress, desc="epochs", initial=start_epoch,
                       total=config.epochs, leave=False)
    for epoch in epochs:
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        loader = _loader(train_data, config.batch_size, True, generator, config.num_workers, dev)
        sums = {"loss": 0.0, "ce": 0.0, "hnc": 0.0}
        logits_all, targets_all = [], []
        n = 0
        t0 = time.perf_counter()
        for batch in _progress(loader, progress, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False):
            x = batch[0].to(dev, non_blocking=True)
            y = batch[1].to(dev, non_blocking=True)
            with _autocast(dev, amp_dtype):
                out = model(x)
                base = _base_loss(out.logits, y, config)
                if hnc_fn is not None:
                    hnc = hnc_fn.from_features(out.features, net.classifier, y, logits=out.logits)
                    loss = base + config.hnc_lambda * hnc
                else:
                    hnc = torch.zeros((), device=dev)
                    loss = base
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {float(loss)} at epoch {epoch + 1}; lower the learning rate or hnc_lambda"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if config.schedule != "step":
                scheduler.step()
            bs = len(y)
            n += bs
            sums["loss"] += float(loss.detach()) * bs
            sums["ce"] += float(base.detach()) * bs
            sums["hnc"] += float(hnc.detach()) * bs
            logits_all.append(out.logits.detach().float().cpu())
            targets_all.append(y.detach().cpu())
        if config.schedule == "step":
            scheduler.step()
        seconds = time.perf_counter() - t0
        name, train_score = _score(torch.cat(logits_all), torch.cat(targets_all))
        row: Dict[str, float] = {
            "epoch": float(epoch + 1),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "train_loss": sums["loss"] / n,
            "train_ce": sums["ce"] / n,
            "train_hnc": sums["hnc"] / n,
            f"train_{name}": train_score,
            "seconds": seconds,
        }
        if test_loader is not None:
            logits, targets = predict(model, test_loader, dev)
            tname, test_score = _score(logits, targets)
            row[f"test_{tname}"] = test_score
            row["test_loss"] = float(_base_loss(logits, targets, config.replace(label_smoothing=0.0)))
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
                "rng_cpu": torch.get_rng_state(),
            }
            if dev.type == "cuda":
                state["rng_cuda"] = torch.cuda.get_rng_state()
            save_checkpoint(state, checkpoint)
        for cb in callbacks:
            cb(epoch + 1, history)
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
    """
    seed_everything(config.seed)
    model = build_model()
    history = fit(model, train_data, config, test_data=test_data, checkpoint=checkpoint_path(name, cache_dir),
                  device=device, progress=progress)
    model.eval()
    return model, history
