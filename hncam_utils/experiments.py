"""CE vs CE+HNC comparisons on Cluttered Digits, shared by the notebooks and ``python -m hncam_utils compare``.

Every loss is trained with the same network, budget and seeds (a seed fixes the initialisation and the batch
order; the data draw is fixed by the data config), evaluated on held-out source digits, and summarised as
mean +- std over seeds, with paired differences to CE.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ._checks import check_int
from .data import SETTINGS, ClutteredDigits, ClutteredDigitsConfig
from .data.noise import DIGITS_FLIPS, NoisyLabelDataset, NoisyLabels, load_noisy_labels, make_noisy_labels
from .metrics import evaluate, predict
from .models import build_model
from .train import History, TrainConfig, run_name, train_or_load

__all__ = [
    "LossSpec",
    "DEFAULT_SPECS",
    "CourseSetting",
    "COURSE_DIGITS",
    "course_runs",
    "FashionSetting",
    "COURSE_FASHION",
    "fashion_loaders",
    "fashion_runs",
    "RunResult",
    "run_experiment",
    "data_tag",
    "noisy_training_set",
    "shared_noise",
    "summarize",
    "paired_difference",
    "PairedVerdict",
    "paired_verdict",
    "format_verdicts",
    "format_table",
    "METRIC_LABELS",
]


@dataclass(frozen=True)
class LossSpec:
    """A loss to compare: ``loss`` (``"ce"`` for no HNC, ``"hnc_mse"``, ``"hnc_kd"``) and its HNC settings,
    the base loss (``base_loss``: ``"ce"``, ``"gce"``, ``"focal"``, ``"cosface"`` with ``gce_q``,
    ``focal_gamma``, ``margin``; see :mod:`hncam_utils.base_losses`), and optionally a ``model`` that
    replaces :func:`run_experiment`'s (``"digits_cnn_cosine"`` for ``cosface``)."""

    loss: str = "ce"
    hnc_lambda: float = 0.0
    k: Optional[int] = 3
    temperature: float = 1.0
    label_smoothing: float = 0.0
    name: Optional[str] = None
    base_loss: str = "ce"
    gce_q: float = 0.7
    focal_gamma: float = 2.0
    margin: float = 0.35
    model: Optional[str] = None

    def __post_init__(self) -> None:
        # the same checks as TrainConfig, at the line that defines the spec (not at the first training run)
        TrainConfig(loss=self.loss, hnc_lambda=self.hnc_lambda if self.loss != "ce" else 0.0, k=self.k,
                    temperature=self.temperature, label_smoothing=self.label_smoothing)
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ValueError(f"name must be a non-empty string or None, got {self.name!r}")

    @property
    def label(self) -> str:
        """The name shown in tables and legends (default: the loss, e.g. ``hnc_kd``)."""
        return self.name or self.loss

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with this loss."""
        return config.replace(loss=self.loss, hnc_lambda=self.hnc_lambda if self.loss != "ce" else 0.0,
                              k=self.k, temperature=self.temperature, label_smoothing=self.label_smoothing,
                              base_loss=self.base_loss, gce_q=self.gce_q, focal_gamma=self.focal_gamma,
                              margin=self.margin)


#: The course's default comparison (lambdas measured to work on Cluttered Digits, not tuned further).
DEFAULT_SPECS: Dict[str, LossSpec] = {
    "ce": LossSpec("ce"),
    "hnc_mse": LossSpec("hnc_mse", hnc_lambda=0.07, k=3),
    "hnc_kd": LossSpec("hnc_kd", hnc_lambda=0.1, k=3),
}

METRIC_LABELS: Dict[str, str] = {
    "top1": "test acc %",
    "map": "test mAP %",
    "neg_peak": "neg-1 peak",
    "neg_ratio": "neg/GT peak",
    "posi_frac": "num_posi %",
    "pointing": "pointing %",
    "energy_in_box": "energy in box %",
    "box_iou": "box IoU",
    "gt_known_loc": "GT-known Loc %",
    "top1_loc": "Top-1 Loc %",
    "maxboxacc": "MaxBoxAcc %",
    "maxboxacc_v2": "MaxBoxAccV2 %",
    "sec_per_epoch": "s/epoch",
    "top1_peak": "peak test acc %",
    "noisy_fit": "noisy labels fitted %",
    "noisy_clean": "true class on noisy %",
}
_PERCENT = {"posi_frac", "pointing", "energy_in_box"}


@dataclass
class RunResult:
    """One trained run: which loss and seed, its history, its test metrics and the model (eval mode);
    ``predictions``: the predicted class of every test image where the runner keeps them
    (:func:`fashion_runs` and :func:`run_experiment` do, so a confusion matrix needs no second pass over the
    test set); ``logits``: the test images' ``(N, C)`` logits from the same evaluation pass, where the runner
    keeps them (:func:`run_experiment` does: probabilities, confidences and per-image losses need no second
    pass either)."""

    label: str
    seed: int
    config: TrainConfig
    history: History
    metrics: Dict[str, float]
    model: nn.Module = field(repr=False)
    predictions: Optional[torch.Tensor] = field(default=None, repr=False)
    logits: Optional[torch.Tensor] = field(default=None, repr=False)


def data_tag(config: ClutteredDigitsConfig) -> str:
    """The data-set part of a cached run's name: ``digits-<setting>`` for a preset, else ``digits-<hash>``
    of the full config (so runs on different data never share a cache entry)."""
    for name, preset in SETTINGS.items():
        if preset == config:
            return f"digits-{name}"
    # a short stable hash of the config, so cached runs never mix data sets
    import hashlib

    digest = hashlib.sha1(repr(dataclasses.astuple(config)).encode()).hexdigest()[:8]
    return f"digits-{digest}"


def shared_noise(
    clean_labels: torch.Tensor,
    num_classes: int,
    label_noise: Union[Mapping[str, Any], NoisyLabels],
    tag: str,
    cache_dir: Optional[Union[str, Path]] = None,
    default_flips: Optional[Mapping[int, Any]] = None,
) -> Tuple[NoisyLabels, str]:
    """The noisy labels of a training set, shared on disk so every run (and rerun) sees the same corruption.

    ``label_noise`` is a :class:`NoisyLabels` or the arguments of
    :func:`hncam_utils.data.noise.make_noisy_labels` (``kind``, ``rate``, ``seed``, optional ``flips``;
    ``default_flips`` is used for asymmetric noise when ``flips`` is not given). The labels are saved once at
    ``cache_dir / "noisy_labels" / f"{tag}_{noise tag}.json"`` and loaded (and checked against
    ``clean_labels``) afterwards.

    Returns:
        ``(noise, tag)`` with the noise's tag appended to ``tag`` (``digits-hard_sym40-s0``), for run names; a
        flip table other than Cluttered Digits' :data:`~hncam_utils.data.noise.DIGITS_FLIPS` adds a short hash.

    Raises:
        ValueError: unknown keys in ``label_noise``; a saved file that holds other labels than asked for.
    """
    from .paths import data_home

    if isinstance(label_noise, NoisyLabels):
        noise = label_noise
    else:
        args = dict(label_noise)
        unknown = set(args) - {"kind", "rate", "seed", "flips"}
        if unknown:
            raise ValueError(f"label_noise takes kind, rate, seed and flips, got also {sorted(unknown)}")
        if default_flips is not None and args.get("kind") == "asymmetric" and args.get("flips") is None:
            args["flips"] = default_flips
        noise = make_noisy_labels(clean_labels, num_classes=num_classes, **args)
    noise_tag = noise.tag()
    if noise.kind == "asymmetric" and noise.flips != {c: (p,) for c, p in DIGITS_FLIPS.items()}:
        import hashlib

        noise_tag += "-" + hashlib.sha1(repr(sorted(noise.flips.items())).encode()).hexdigest()[:6]
    root = Path(cache_dir) if cache_dir is not None else data_home()
    path = root / "noisy_labels" / f"{tag}_{noise_tag}.json"
    if path.exists():
        saved = load_noisy_labels(path, clean_labels, num_classes=num_classes)
        if not torch.equal(saved.labels, noise.labels):
            raise ValueError(f"{path} holds other noisy labels than the ones asked for; delete it to remake it")
        noise = saved
    else:
        noise.save(path)
    return noise, f"{tag}_{noise_tag}"


def noisy_training_set(
    train_set: ClutteredDigits,
    label_noise: Union[Mapping[str, Any], NoisyLabels],
    tag: str,
    cache_dir: Optional[Union[str, Path]] = None,
) -> Tuple[NoisyLabelDataset, str]:
    """Wrap ``train_set`` so it serves noisy labels, shared on disk so every run sees the same corruption
    (see :func:`shared_noise`; asymmetric noise defaults to Cluttered Digits' ``DIGITS_FLIPS``).

    Returns:
        ``(data set, tag)`` with the noise's tag appended (``digits-hard_sym40-s0``), for run names.
    """
    noise, tag = shared_noise(train_set.targets, train_set.num_classes, label_noise, tag, cache_dir)
    return NoisyLabelDataset(train_set, noise), tag


def run_experiment(
    data: Union[str, ClutteredDigitsConfig],
    specs: Union[Sequence[LossSpec], Mapping[str, LossSpec]],
    seeds: Sequence[int],
    train: TrainConfig,
    data_overrides: Optional[Mapping[str, Any]] = None,
    model: str = "digits_cnn",
    cache_dir: Optional[Union[str, Path]] = None,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    eval_k: int = 3,
    label_noise: Union[Mapping[str, Any], NoisyLabels, None] = None,
) -> List[RunResult]:
    """Train (or load from the cache) every ``spec`` x ``seed`` on Cluttered Digits and evaluate it.

    Args:
        data: a setting name (``"easy"``, ``"hard"``, ``"multilabel"``) or a :class:`ClutteredDigitsConfig`.
        specs: the losses to compare.
        seeds: one run per seed and loss (paired: seed ``s`` gives every loss the same start and batches).
        train: the shared training recipe (its ``loss``/``seed`` fields are overridden per run).
        data_overrides: config fields to change, e.g. ``{"n_train": 500}``.
        model: a name from :data:`hncam_utils.models.MODELS`.
        cache_dir: where runs are cached (default :func:`hncam_utils.paths.data_home`).
        eval_k: top negatives averaged in ``neg_peak_topk``.
        label_noise: train on noisy labels (test labels stay clean): ``{"kind": "symmetric" | "asymmetric",
            "rate": r, "seed": s}`` or a :class:`~hncam_utils.data.noise.NoisyLabels` (see
            :func:`noisy_training_set`). The run names carry the noise's tag, and each run's metrics also
            hold ``top1_peak`` (best test accuracy over the epochs; ``top1`` is the final one) and the
            memorisation shares of :meth:`~hncam_utils.data.noise.NoisyLabels.memorisation` on the training
            images (``noisy_fit``, ``noisy_clean``, ``clean_fit``).

    Returns:
        One :class:`RunResult` per (spec, seed), in the order of ``specs`` then ``seeds``, with the test
        metrics and the test set's ``logits`` and ``predictions`` from that one evaluation pass.
    """
    if isinstance(data, str) and data not in SETTINGS:
        raise ValueError(f"unknown setting data={data!r}; choose one of {sorted(SETTINGS)}")
    if not isinstance(data, (str, ClutteredDigitsConfig)):
        raise TypeError(f"data must be a setting name or a ClutteredDigitsConfig, got {type(data).__name__}")
    cfg = SETTINGS[data] if isinstance(data, str) else data
    if data_overrides:
        cfg = cfg.replace(**data_overrides)
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig (the shared recipe), got {type(train).__name__}")
    if isinstance(specs, LossSpec):
        specs = [specs]
    spec_list = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
    bad = [s for s in spec_list if not isinstance(s, LossSpec)]
    if bad or not spec_list:
        raise TypeError(f"specs must be a non-empty list of LossSpec (e.g. list(DEFAULT_SPECS.values())), got "
                        f"{[type(s).__name__ for s in bad] or 'an empty list'}")
    if isinstance(seeds, int):
        raise TypeError(f"seeds must be a list of seeds, e.g. [0, 1, 2] or range({seeds}), got the int {seeds}")
    seeds = [check_int("seeds", seed, min=0) for seed in seeds]
    if not seeds:
        raise ValueError("seeds is empty; pass at least one seed, e.g. [0, 1, 2]")
    labels = [sp.label for sp in spec_list]
    if len(set(labels)) != len(labels):
        raise ValueError(f"specs have repeated labels {labels}; give each LossSpec a distinct name=")
    check_int("eval_k", eval_k, min=1)
    train_set = ClutteredDigits("train", cfg)
    test_set = ClutteredDigits("test", cfg, with_boxes=True)
    tag = data_tag(cfg)
    fit_set = train_set
    if label_noise is not None:
        fit_set, tag = noisy_training_set(train_set, label_noise, tag, cache_dir)
    results: List[RunResult] = []
    for spec in spec_list:
        arch = spec.model or model
        for seed in seeds:
            config = spec.apply(train.replace(seed=int(seed)))
            name = run_name(tag, arch, config)
            if progress:
                print(f"[{spec.label} seed {seed}] {name}", flush=True)
            net, history = train_or_load(
                lambda: build_model(arch, num_classes=train_set.num_classes),
                fit_set, config, name, test_data=test_set, cache_dir=cache_dir, device=device, progress=progress,
            )
            loader = DataLoader(test_set, batch_size=config.eval_batch_size)
            outputs: Dict[str, torch.Tensor] = {}
            metrics = evaluate(net, loader, k=eval_k, outputs=outputs)
            metrics["sec_per_epoch"] = float(np.mean(history["seconds"])) if history.get("seconds") else math.nan
            if isinstance(fit_set, NoisyLabelDataset):
                metrics["top1_peak"] = float(max(history["test_acc"]))
                logits, _ = predict(net, DataLoader(train_set, batch_size=config.eval_batch_size))
                metrics.update(fit_set.noise.memorisation(logits.argmax(dim=1)))
            results.append(RunResult(spec.label, int(seed), config, history, metrics, net,
                                     predictions=outputs["logits"].argmax(dim=1), logits=outputs["logits"]))
    return results


@dataclass(frozen=True)
class CourseSetting:
    """The Cluttered Digits comparison the course trains once and reuses: notebooks 01-03 train it, notebooks
    06-09 load the same cached runs (same data, recipe and seeds give the same run names)."""

    setting: str
    n_train: int
    n_test: int
    epochs: int
    seeds: Tuple[int, ...]

    @property
    def data_overrides(self) -> Dict[str, int]:
        return {"n_train": self.n_train, "n_test": self.n_test}

    def recipe(self, **changes: Any) -> TrainConfig:
        """The shared training recipe (digits CNN, AdamW, OneCycle, batch 64) with this budget."""
        return TrainConfig(epochs=self.epochs).replace(**changes)

    def data_config(self) -> ClutteredDigitsConfig:
        return SETTINGS[self.setting].replace(**self.data_overrides)


#: Per profile: the hard setting (accuracy not saturated), paired seeds for the package's verdict.
COURSE_DIGITS: Dict[str, CourseSetting] = {
    "smoke": CourseSetting("hard", n_train=300, n_test=200, epochs=1, seeds=(0, 1, 2)),
    "cpu": CourseSetting("hard", n_train=2000, n_test=1000, epochs=10, seeds=(0, 1, 2)),
    "gpu": CourseSetting("hard", n_train=2000, n_test=2000, epochs=15, seeds=(0, 1, 2, 3, 4)),
}


def course_runs(
    specs: Union[Sequence[LossSpec], Mapping[str, LossSpec], None] = None,
    profile: Optional[str] = None,
    seeds: Optional[Sequence[int]] = None,
    **kwargs: Any,
) -> List[RunResult]:
    """The course's shared Cluttered Digits runs for ``profile`` (default: the current one): trained once
    (notebooks 01-03), loaded from the cache afterwards.

    Args:
        specs: losses (default :data:`DEFAULT_SPECS`: CE, CE + HNC_mse, CE + HNC_kd).
        profile: ``smoke``, ``cpu`` or ``gpu`` (default :func:`hncam_utils.runtime.get_profile`).
        seeds: a subset of the profile's seeds (default: all of them).
        kwargs: passed to :func:`run_experiment` (``cache_dir``, ``device``, ``progress`` ...).
    """
    from .runtime import get_profile

    cs = COURSE_DIGITS[get_profile(profile)]
    return run_experiment(cs.setting, specs if specs is not None else DEFAULT_SPECS,
                          list(seeds) if seeds is not None else list(cs.seeds), cs.recipe(),
                          data_overrides=cs.data_overrides, **kwargs)


@dataclass(frozen=True)
class FashionSetting:
    """The Fashion-MNIST comparison the course trains once (notebook 04) and reuses (notebooks 06-07): the
    digits CNN (7 x 7 CAMs at 28 px) with the shared recipe (AdamW, OneCycle), the same seeds for every loss.

    Attributes:
        n_train: training images (a class-balanced subset drawn once with a fixed seed; ``None``: all 60,000).
        n_test: test images (the first ``n_test`` of the official test split; ``None``: all 10,000).
        epochs, batch_size, lr: the budget and recipe.
        seeds: paired seeds (a seed fixes initialisation, batch order and augmentation).
        crop, flip: augmentation on the device (random crop with zero padding ``crop``, horizontal flips).
        fixture: use generated, format-faithful idx files instead of Fashion-MNIST (the ``smoke`` profile:
            a pipeline check, never a result).
    """

    n_train: Optional[int]
    n_test: Optional[int]
    epochs: int
    seeds: Tuple[int, ...]
    batch_size: int = 128
    lr: float = 2e-3
    crop: int = 0
    flip: bool = False
    fixture: bool = False

    @property
    def tag(self) -> str:
        """The data-set part of the cached runs' names, e.g. ``fmnist-15k`` or ``fmnist-fixture-600``."""
        if self.fixture:
            tag = f"fmnist-fixture-{self.n_train}"
        else:
            n = 60000 if self.n_train is None else self.n_train
            tag = f"fmnist-{n // 1000}k" if n % 1000 == 0 else f"fmnist-{n}"
            if self.n_test is not None:
                tag += f"-test{self.n_test}"
        if self.crop or self.flip:
            tag += f"-aug{'c' + str(self.crop) if self.crop else ''}{'f' if self.flip else ''}"
        return tag

    def recipe(self, **changes: Any) -> TrainConfig:
        """The shared training recipe with this budget."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           eval_batch_size=1000).replace(**changes)


#: Per profile. ``cpu``: 15,000 training images, 3 epochs, the full test set, 3 paired seeds (the nine runs fit
#: notebook 04's 5-minute budget on 2 idle cores: about 12 s per epoch of 20,000 images measured there);
#: ``gpu``: all 60,000 images, 15 epochs, crop + flip, 5 seeds; ``smoke``: generated idx fixtures (seconds).
COURSE_FASHION: Dict[str, FashionSetting] = {
    "smoke": FashionSetting(n_train=600, n_test=200, epochs=1, seeds=(0, 1, 2), batch_size=64, fixture=True),
    "cpu": FashionSetting(n_train=15000, n_test=None, epochs=3, seeds=(0, 1, 2)),
    "gpu": FashionSetting(n_train=None, n_test=None, epochs=15, seeds=(0, 1, 2, 3, 4), crop=2, flip=True),
}


def _balanced_subset(labels: torch.Tensor, n: int, seed: int = 20201) -> torch.Tensor:
    """Indices of a class-balanced subset of ``n`` items (``n / C`` per class), drawn with a fixed seed."""
    classes = int(labels.max()) + 1
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    per_class = n // classes
    parts = [perm[labels[perm] == c][:per_class] for c in range(classes)]
    rest = n - per_class * classes
    chosen = torch.cat(parts)
    if rest:
        left = perm[~torch.isin(perm, chosen)][:rest]
        chosen = torch.cat([chosen, left])
    return chosen.sort().values


def fashion_loaders(
    setting: Union[str, FashionSetting, None] = None,
    root: Optional[Union[str, Path]] = None,
    device: Optional[Union[str, torch.device]] = None,
):
    """The device-resident train and test loaders of a Fashion-MNIST setting (a profile name or a
    :class:`FashionSetting`; default: the current profile's).

    Args:
        root: where the data lives (torchvision's ``root``); for a fixture setting, where the generated idx
            files are written (default ``data_home() / "fixtures" / "fashion-mnist-<n>"``).
        device: default :func:`hncam_utils.runtime.get_device`.

    Returns:
        ``(train, test)`` :class:`hncam_utils.data.DeviceLoader` s: train with the setting's augmentation,
        test without; both normalised with the Fashion-MNIST mean and std.
    """
    from .data import FASHION_CLASSES, FASHION_MEAN, FASHION_STD, DeviceLoader, load_fashion_mnist
    from .data.fashion_mnist import make_fashion_mnist_fixture
    from .paths import data_home
    from .runtime import get_device, get_profile

    fs = COURSE_FASHION[get_profile(setting)] if not isinstance(setting, FashionSetting) else setting
    dev = get_device(device)
    checksums = None
    if fs.fixture:
        root = Path(root) if root is not None else data_home() / "fixtures" / f"fashion-mnist-{fs.n_train}"
        checksums = make_fashion_mnist_fixture(root, n_train=fs.n_train, n_test=fs.n_test or 200)
    train = load_fashion_mnist("train", root, checksums=checksums)
    test = load_fashion_mnist("test", root, checksums=checksums)
    x, y = train.data, train.targets
    if fs.n_train is not None and not fs.fixture and fs.n_train < len(y):
        keep = _balanced_subset(y, fs.n_train)
        x, y = x[keep], y[keep]
    tx, ty = test.data, test.targets
    if fs.n_test is not None and not fs.fixture:
        tx, ty = tx[: fs.n_test], ty[: fs.n_test]
    common = dict(mean=FASHION_MEAN, std=FASHION_STD, device=dev, classes=FASHION_CLASSES)
    train_loader = DeviceLoader(x, y, batch_size=fs.batch_size, crop=fs.crop, flip=fs.flip, **common)
    test_loader = DeviceLoader(tx, ty, batch_size=1000, shuffle=False, **common)
    return train_loader, test_loader


def fashion_runs(
    specs: Union[Sequence[LossSpec], Mapping[str, LossSpec], None] = None,
    profile: Optional[str] = None,
    seeds: Optional[Sequence[int]] = None,
    setting: Optional[FashionSetting] = None,
    root: Optional[Union[str, Path]] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    eval_k: int = 3,
    curves: bool = False,
    label_noise: Union[Mapping[str, Any], NoisyLabels, None] = None,
    test_metrics: bool = True,
) -> List[RunResult]:
    """The course's Fashion-MNIST runs for ``profile`` (default: the current one): trained once (notebook
    04), loaded from the cache afterwards (same setting, loss and seed give the same run name).

    Args:
        specs: losses (default :data:`DEFAULT_SPECS`: CE, CE + HNC_mse, CE + HNC_kd).
        profile: ``smoke``, ``cpu`` or ``gpu`` (ignored when ``setting`` is given).
        seeds: a subset of the setting's seeds (default: all of them).
        setting: a :class:`FashionSetting` instead of the profile's.
        root, device: see :func:`fashion_loaders`. cache_dir: where runs are cached.
        eval_k: top negatives averaged in ``neg_peak_topk``.
        curves: also evaluate on the test split after every epoch (``test_acc``/``test_loss`` in the history,
            for learning curves). Off by default: the final evaluation gives the metrics, and a pass over the
            10,000 test images per epoch costs about a quarter of a ``cpu``-profile epoch.
        label_noise: train on noisy labels (test labels stay clean), as in :func:`run_experiment`; asymmetric
            noise defaults to :data:`~hncam_utils.data.noise.FASHION_FLIPS`. The metrics then also hold the
            memorisation shares on the training images (``noisy_fit``, ``noisy_clean``, ``clean_fit``) and,
            with ``curves=True``, ``top1_peak``.
        test_metrics: evaluate every run on the test split (metrics and predictions). ``False`` only loads (or
            trains) the runs: ``metrics`` then holds ``sec_per_epoch`` (and the memorisation shares with
            ``label_noise``) and ``predictions`` is ``None``, for a notebook that measures its own metrics
            (notebook 07 attacks a subset of the test images).

    A spec's ``model`` (e.g. ``"digits_cnn_cosine"`` for CosFace) replaces the default ``digits_cnn``.

    Returns:
        One :class:`RunResult` per (spec, seed), in the order of ``specs`` then ``seeds``; metrics on the
        test split (``top1``, negative-CAM statistics ...) and the ``predictions`` on it.
    """
    from .data import DeviceLoader
    from .data.noise import FASHION_FLIPS
    from .runtime import get_profile

    fs = setting if setting is not None else COURSE_FASHION[get_profile(profile)]
    train_loader, test_loader = fashion_loaders(fs, root=root, device=device)
    fit_loader, tag, noise = train_loader, fs.tag, None
    if label_noise is not None:
        noise, tag = shared_noise(train_loader.targets.cpu(), 10, label_noise, fs.tag, cache_dir,
                                  default_flips=FASHION_FLIPS)
        fit_loader = DeviceLoader(train_loader.images, noise.labels, batch_size=train_loader.batch_size,
                                  crop=train_loader.crop, pad_mode=train_loader.pad_mode, flip=train_loader.flip,
                                  mean=train_loader.mean, std=train_loader.std, device=train_loader.device,
                                  classes=train_loader.classes)
    spec_list = list((specs if specs is not None else DEFAULT_SPECS).values()) if isinstance(
        specs if specs is not None else DEFAULT_SPECS, Mapping) else list(specs)
    results: List[RunResult] = []
    for spec in spec_list:
        for seed in (list(seeds) if seeds is not None else list(fs.seeds)):
            config = spec.apply(fs.recipe(seed=int(seed)))
            arch = spec.model or "digits_cnn"
            name = run_name(tag, arch, config)
            if progress:
                print(f"[{spec.label} seed {seed}] {name}", flush=True)
            net, history = train_or_load(lambda: build_model(arch, num_classes=10), fit_loader, config, name,
                                         test_data=test_loader if curves else None, cache_dir=cache_dir,
                                         device=device, progress=progress)
            outputs: Dict[str, torch.Tensor] = {}
            metrics = evaluate(net, test_loader, k=eval_k, outputs=outputs) if test_metrics else {}
            metrics["sec_per_epoch"] = float(np.mean(history["seconds"])) if history.get("seconds") else math.nan
            if noise is not None:
                if history.get("test_acc"):
                    metrics["top1_peak"] = float(max(history["test_acc"]))
                logits, _ = predict(net, train_loader.replace(batch_size=1000, shuffle=False, crop=0, flip=False))
                metrics.update(noise.memorisation(logits.argmax(dim=1)))
            results.append(RunResult(spec.label, int(seed), config, history, metrics, net,
                                     predictions=outputs["logits"].argmax(dim=1) if test_metrics else None))
    return results


def summarize(results: Sequence[RunResult], metrics: Sequence[str] = tuple(METRIC_LABELS)) -> List[Dict[str, Any]]:
    """Mean and standard deviation (ddof=1; NaN for a single seed) over seeds, per loss label.

    Returns one dict per label: ``{"label", "n", "<metric>_mean", "<metric>_std", ...}``; ratios shown in
    percent (``posi_frac``, ``pointing``, ``energy_in_box``) are multiplied by 100.
    """
    labels = list(dict.fromkeys(r.label for r in results))
    rows = []
    for label in labels:
        runs = [r for r in results if r.label == label]
        row: Dict[str, Any] = {"label": label, "n": len(runs)}
        for m in metrics:
            vals = np.array([r.metrics[m] for r in runs if m in r.metrics], dtype=float)
            if len(vals) == 0:
                continue
            if m in _PERCENT:
                vals = vals * 100
            row[f"{m}_mean"] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
        rows.append(row)
    return rows


@dataclass(frozen=True)
class PairedVerdict:
    """What paired per-seed differences ``loss - baseline`` say, from :func:`paired_verdict`.

    Attributes:
        n: number of paired seeds.
        mean: mean difference (in the metric's units, e.g. accuracy points).
        se: standard error of the mean, ``std(ddof=1) / sqrt(n)`` (NaN for n = 1).
        ci_low, ci_high: the two-sided confidence interval ``mean -+ t_{(1+c)/2, n-1} * se`` from
            Student's t with ``n - 1`` degrees of freedom (NaN for n = 1).
        confidence: the interval's level ``c`` (0.95 by default).
        wins: seeds where the loss did better than the baseline (higher, or lower when
            ``higher_is_better=False``); ties count as neither.
        verdict: ``"better"`` / ``"worse"`` when the interval excludes 0, ``"no clear difference"`` when
            it contains 0, ``"too few seeds to tell"`` when ``n < 3``.
        higher_is_better: the direction the verdict reads the metric in.
        differences: the per-seed differences themselves.
    """

    n: int
    mean: float
    se: float
    ci_low: float
    ci_high: float
    confidence: float
    wins: int
    verdict: str
    higher_is_better: bool = True
    differences: tuple = ()

    def as_dict(self) -> Dict[str, Any]:
        """Plain data (for JSON)."""
        out = dataclasses.asdict(self)
        out["differences"] = list(self.differences)
        return out

    def describe(self, unit: str = "") -> str:
        """One line, e.g. ``+4.23 points, 95% CI [+2.25, +6.21], better on 3/3 seeds: better``."""
        u = f" {unit}" if unit else ""
        if self.n >= 2:
            ci = f"{self.confidence:.0%} CI [{self.ci_low:+.2f}, {self.ci_high:+.2f}]"
        else:
            ci = "no interval from 1 seed"
        return f"{self.mean:+.2f}{u}, {ci}, better on {self.wins}/{self.n} seeds (n = {self.n}): {self.verdict}"

    def __str__(self) -> str:
        return self.describe()


#: Fewest paired seeds for which :func:`paired_verdict` gives a verdict.
MIN_SEEDS_FOR_VERDICT = 3


def paired_verdict(
    differences: Union[Sequence[float], np.ndarray],
    higher_is_better: bool = True,
    confidence: float = 0.95,
) -> PairedVerdict:
    """Turn paired per-seed differences ``d_s = metric(loss, s) - metric(baseline, s)`` into a verdict.

    With ``n`` differences, mean ``m`` and standard error ``SE = std(d, ddof=1) / sqrt(n)``, the interval is
    ``m -+ t * SE`` with ``t`` the ``(1 + confidence) / 2`` quantile of Student's t with ``n - 1`` degrees of
    freedom (12.71 for n = 2, 4.30 for n = 3, 2.78 for n = 5 at 95%). The verdict is "better" or "worse"
    only when the interval excludes 0, "no clear difference" when it contains 0, and "too few seeds to tell"
    when ``n < 3`` (the interval is still reported for n = 2).

    Args:
        differences: the per-seed differences, one per paired seed.
        higher_is_better: ``False`` for metrics where lower is better (a loss, a negative-CAM peak): then a
            negative difference is a win and an interval below 0 reads "better".
        confidence: the interval's level, in (0, 1).

    Raises:
        ValueError: no differences, a NaN or infinite difference, or ``confidence`` outside (0, 1).
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float).ravel()
    if d.size == 0:
        raise ValueError("paired_verdict needs at least one per-seed difference, got none")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be finite numbers, got {d.tolist()}; check the runs that produced them")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence!r}")
    n = int(d.size)
    mean = float(d.mean())
    if n >= 2:
        se = float(d.std(ddof=1) / math.sqrt(n))
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * se
        low, high = mean - half, mean + half
    else:
        se = low = high = math.nan
    wins = int((d > 0).sum() if higher_is_better else (d < 0).sum())
    if n < MIN_SEEDS_FOR_VERDICT:
        verdict = "too few seeds to tell"
    elif low > 0 or high < 0:
        verdict = "better" if (low > 0) == higher_is_better else "worse"
    else:
        verdict = "no clear difference"
    return PairedVerdict(n, mean, se, low, high, confidence, wins, verdict, higher_is_better, tuple(d.tolist()))


def paired_difference(
    results: Sequence[RunResult],
    metric: str = "top1",
    baseline: str = "ce",
    higher_is_better: bool = True,
    confidence: float = 0.95,
) -> Dict[str, PairedVerdict]:
    """Per-seed differences ``metric(loss) - metric(baseline)`` for every other loss label, as verdicts.

    Runs are paired by seed; seeds missing from either side are left out.

    Returns:
        ``{label: PairedVerdict}`` (see :func:`paired_verdict`).

    Raises:
        ValueError: no run with the ``baseline`` label.
    """
    base = {r.seed: r.metrics[metric] for r in results if r.label == baseline}
    if not base:
        labels = sorted({r.label for r in results})
        raise ValueError(f"no run labelled baseline={baseline!r} among {labels}; pass one of those as baseline")
    out: Dict[str, PairedVerdict] = {}
    for label in dict.fromkeys(r.label for r in results):
        if label == baseline:
            continue
        diffs = [r.metrics[metric] - base[r.seed] for r in results if r.label == label and r.seed in base]
        if diffs:
            out[label] = paired_verdict(diffs, higher_is_better=higher_is_better, confidence=confidence)
    return out


def format_verdicts(verdicts: Mapping[str, PairedVerdict], baseline: str = "ce", unit: str = "points") -> str:
    """A Markdown table of :func:`paired_difference` verdicts: mean, interval, wins and the verdict."""
    lines = [f"| loss vs {baseline} | paired mean ({unit}) | 95% CI (t) | wins | verdict |", "|---|---|---|---|---|"]
    for label, v in verdicts.items():
        ci = f"[{v.ci_low:+.2f}, {v.ci_high:+.2f}]" if v.n >= 2 else "n/a (n = 1)"
        if v.n >= 2 and abs(v.confidence - 0.95) > 1e-9:
            ci += f" at {v.confidence:.0%}"
        lines.append(f"| {label} | {v.mean:+.2f} | {ci} | {v.wins}/{v.n} | {v.verdict} |")
    return "\n".join(lines)


def format_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = tuple(METRIC_LABELS)) -> str:
    """A Markdown table of :func:`summarize` rows: ``mean ± std`` per metric (a single run shows its value
    alone; the ``seeds`` column says n = 1)."""
    metrics = [m for m in metrics if any(f"{m}_mean" in r for r in rows)]
    head = ["loss", "seeds"] + [METRIC_LABELS.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["label"]), str(r["n"])]
        for m in metrics:
            if f"{m}_mean" not in r:
                cells.append("-")
                continue
            digits = 3 if m in ("box_iou", "neg_ratio") else (1 if m != "neg_peak" else 2)
            std = r[f"{m}_std"]
            if r["n"] > 1 and std == std:
                cells.append(f"{r[f'{m}_mean']:.{digits}f} ± {std:.{digits}f}")
            else:
                cells.append(f"{r[f'{m}_mean']:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
