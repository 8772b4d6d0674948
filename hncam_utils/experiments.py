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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .data import SETTINGS, ClutteredDigits, ClutteredDigitsConfig
from .metrics import evaluate
from .models import build_model
from .train import History, TrainConfig, run_name, train_or_load

__all__ = [
    "LossSpec",
    "DEFAULT_SPECS",
    "RunResult",
    "run_experiment",
    "data_tag",
    "summarize",
    "paired_difference",
    "format_table",
    "METRIC_LABELS",
]


@dataclass(frozen=True)
class LossSpec:
    """A loss to compare: ``loss`` (``"ce"``, ``"hnc_mse"``, ``"hnc_kd"``) and its HNC settings."""

    loss: str = "ce"
    hnc_lambda: float = 0.0
    k: Optional[int] = 3
    temperature: float = 1.0
    label_smoothing: float = 0.0
    name: Optional[str] = None

    @property
    def label(self) -> str:
        """The name shown in tables and legends (default: the loss, e.g. ``hnc_kd``)."""
        return self.name or self.loss

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with this loss."""
        return config.replace(loss=self.loss, hnc_lambda=self.hnc_lambda if self.loss != "ce" else 0.0,
                              k=self.k, temperature=self.temperature, label_smoothing=self.label_smoothing)


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
    "sec_per_epoch": "s/epoch",
}
_PERCENT = {"posi_frac", "pointing", "energy_in_box"}


@dataclass
class RunResult:
    """One trained run: which loss and seed, its history, its test metrics and the model (eval mode)."""

    label: str
    seed: int
    config: TrainConfig
    history: History
    metrics: Dict[str, float]
    model: nn.Module = field(repr=False)


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

    Returns:
        One :class:`RunResult` per (spec, seed), in the order of ``specs`` then ``seeds``.
    """
    cfg = SETTINGS[data] if isinstance(data, str) else data
    if isinstance(data, str) and data not in SETTINGS:
        raise ValueError(f"unknown setting {data!r}; choose one of {sorted(SETTINGS)}")
    if data_overrides:
        cfg = cfg.replace(**data_overrides)
    spec_list = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
    train_set = ClutteredDigits("train", cfg)
    test_set = ClutteredDigits("test", cfg, with_boxes=True)
    tag = data_tag(cfg)
    results: List[RunResult] = []
    for spec in spec_list:
        for seed in seeds:
            config = spec.apply(train.replace(seed=int(seed)))
            name = run_name(tag, model, config)
            if progress:
                print(f"[{spec.label} seed {seed}] {name}", flush=True)
            net, history = train_or_load(
                lambda: build_model(model, num_classes=train_set.num_classes),
                train_set, config, name, test_data=test_set, cache_dir=cache_dir, device=device, progress=progress,
            )
            loader = DataLoader(test_set, batch_size=config.eval_batch_size)
            metrics = evaluate(net, loader, k=eval_k)
            metrics["sec_per_epoch"] = float(np.mean(history["seconds"])) if history.get("seconds") else math.nan
            results.append(RunResult(spec.label, int(seed), config, history, metrics, net))
    return results


def summarize(results: Sequence[RunResult], metrics: Sequence[str] = tuple(METRIC_LABELS)) -> List[Dict[str, Any]]:
    """Mean and standard deviation (ddof=1; 0 for one seed) over seeds, per loss label.

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
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def paired_difference(results: Sequence[RunResult], metric: str = "top1", baseline: str = "ce") -> Dict[str, Dict[str, float]]:
    """Per-seed difference ``metric(loss) - metric(baseline)`` for every other loss label.

    Returns ``{label: {"mean", "se", "n", "wins"}}`` with ``se`` the standard error of the paired
    differences and ``wins`` the number of seeds where the loss beat the baseline.
    """
    base = {r.seed: r.metrics[metric] for r in results if r.label == baseline}
    out: Dict[str, Dict[str, float]] = {}
    for label in dict.fromkeys(r.label for r in results):
        if label == baseline:
            continue
        diffs = np.array([r.metrics[metric] - base[r.seed] for r in results if r.label == label and r.seed in base])
        if len(diffs) == 0:
            continue
        se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan
        out[label] = {"mean": float(diffs.mean()), "se": se, "n": float(len(diffs)), "wins": float((diffs > 0).sum())}
    return out


def format_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = tuple(METRIC_LABELS)) -> str:
    """A Markdown table of :func:`summarize` rows: ``mean ± std`` per metric."""
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
            cells.append(f"{r[f'{m}_mean']:.{digits}f} ± {r[f'{m}_std']:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
