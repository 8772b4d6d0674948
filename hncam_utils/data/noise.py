"""Label noise, made reproducibly: symmetric and asymmetric corruption of a data set's labels.

Two kinds, both drawn independently per label with a seeded generator:

* ``"symmetric"`` (uniform): each label is replaced, with probability ``rate``, by a class drawn uniformly
  from the **other** ``C - 1`` classes. The true class is never drawn, so every replaced label is wrong and
  the expected share of wrong labels is ``rate`` (conventions differ: some papers draw from all ``C``
  classes, which makes the wrong share ``rate * (C - 1) / C``).
* ``"asymmetric"`` (class-dependent): each label of a class listed in ``flips`` is replaced, with
  probability ``rate``, by its partner class (or, where several partners are listed, by one of them drawn
  uniformly); labels of other classes are untouched, so the expected overall share of wrong labels is
  ``rate`` times the share of images whose class flips. Standard tables: :data:`DIGITS_FLIPS` (each digit
  to its most confusable digit, from Cluttered Digits' ``CONFUSABLE`` table) and :data:`CIFAR10_FLIPS`
  (truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog).

The *realised* rate (the share of labels that actually changed) differs a little from ``rate``: it is
reported by :attr:`NoisyLabels.realised_rate` and per class by :meth:`NoisyLabels.per_class_rate`.

Noisy labels can be saved to a small JSON file (kind, rate, seed, flip table, the noisy labels and a
fingerprint of the clean ones) and loaded back; loading checks them against the data set's clean labels, so
everyone compares on the same corruption of the same data. :class:`NoisyLabelDataset` serves the noisy
labels in place of the clean ones and keeps the clean ones, to measure how much of the noise a model learns
(:meth:`NoisyLabels.memorisation`).

This module knows no networks or losses: it works on label tensors and data sets only.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_int, show
from ..paths import atomic_write_text
from .cluttered_digits import CONFUSABLE

__all__ = [
    "NOISE_KINDS",
    "DIGITS_FLIPS",
    "CIFAR10_FLIPS",
    "FASHION_FLIPS",
    "NoisyLabels",
    "make_noisy_labels",
    "load_noisy_labels",
    "NoisyLabelDataset",
    "dataset_labels",
]

NOISE_KINDS = ("symmetric", "asymmetric")
_FORMAT = "hncam-noisy-labels"
_VERSION = 1
PathLike = Union[str, "os.PathLike[str]"]

#: Cluttered Digits: each digit flips to the first (most confusable) digit of its ``CONFUSABLE`` entry:
#: 0 <-> 6, 1 <-> 7, 3 <-> 5, 4 <-> 9 are mutual pairs; 2 -> 3 and 8 -> 3.
DIGITS_FLIPS: Dict[int, int] = {c: partners[0] for c, partners in CONFUSABLE.items()}

#: CIFAR-10 (class ids of ``torchvision.datasets.CIFAR10``): truck -> automobile, bird -> airplane,
#: deer -> horse, cat <-> dog; airplane, automobile, frog, horse and ship keep their labels.
CIFAR10_FLIPS: Dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

#: Fashion-MNIST (class ids of ``torchvision.datasets.FashionMNIST``): the course's own choice of look-alike
#: classes, by analogy with the CIFAR-10 pairs (not a table from the literature): T-shirt/top <-> shirt,
#: pullover <-> coat, sandal -> sneaker, ankle boot -> sneaker; trouser, dress, sneaker and bag keep their labels.
FASHION_FLIPS: Dict[int, int] = {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 9: 7}


def _fingerprint(labels: Tensor) -> str:
    """A short SHA-256 of the labels (int64, little-endian), to recognise the same clean labels later."""
    arr = np.ascontiguousarray(labels.detach().cpu().numpy().astype("<i8"))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def _check_labels(labels: Any, num_classes: Optional[int]) -> Tuple[Tensor, int]:
    if isinstance(labels, np.ndarray) or isinstance(labels, (list, tuple)):
        labels = torch.as_tensor(np.asarray(labels))
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a tensor, an array or a list of class indices, got {type(labels).__name__}")
    if labels.dim() != 1:
        raise ValueError(
            f"labels must be a 1-D sequence of class indices, got shape {tuple(labels.shape)}; label noise here is "
            "for single-label data (multi-hot targets are not supported)"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.long().cpu()
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.numel() else 0
    num_classes = check_int("num_classes", num_classes, min=2, fix="the data set's number of classes")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] for {num_classes} classes, got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return labels, int(num_classes)


def _check_rate(rate: Any) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"rate must be a number in [0, 1), got {rate!r}")
    rate = float(rate)
    if not (0.0 <= rate < 1.0) or math.isnan(rate):
        raise ValueError(
            f"rate must lie in [0, 1) (the probability that a label is corrupted), got {rate}; "
            "e.g. 0.2 for 20% noise"
        )
    return rate


def _check_flips(flips: Mapping[Any, Any], num_classes: int) -> Dict[int, Tuple[int, ...]]:
    if not isinstance(flips, Mapping):
        raise TypeError(f"flips must be a dict {{class: partner class(es)}}, e.g. DIGITS_FLIPS, got {show(flips)}")
    if not flips:
        raise ValueError(
            "asymmetric noise needs a non-empty flip table {class: partner class(es)}, e.g. DIGITS_FLIPS or "
            "CIFAR10_FLIPS"
        )
    table: Dict[int, Tuple[int, ...]] = {}
    for src, dst in flips.items():
        if not isinstance(dst, (numbers.Integral, Sequence)) or isinstance(dst, (str, bytes)):
            raise TypeError(f"flip table entry {src!r}: {dst!r} must name a partner class (an int) or several "
                            "(a tuple of ints)")
        partners = (dst,) if isinstance(dst, numbers.Integral) else tuple(dst)
        if not partners:
            raise ValueError(f"class {src} has an empty list of partner classes in the flip table")
        for c in (src, *partners):
            if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= int(c) < num_classes:
                raise ValueError(f"flip table entry {src!r}: {dst!r} names a class outside [0, {num_classes - 1}]")
        if int(src) in (int(p) for p in partners):
            raise ValueError(f"flip table entry {src!r}: {dst!r} flips a class to itself")
        table[int(src)] = tuple(int(p) for p in partners)
    return table


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Noisy labels together with how they were made; build with :func:`make_noisy_labels`.

    Attributes:
        labels: ``(N,)`` int64, the noisy labels.
        clean: ``(N,)`` int64, the clean labels they were made from.
        kind: ``"symmetric"`` or ``"asymmetric"``.
        rate: the corruption probability asked for.
        seed: the generator's seed.
        num_classes: ``C``.
        flips: the asymmetric flip table ``{class: (partner, ...)}`` (empty for symmetric noise).
    """

    labels: Tensor
    clean: Tensor
    kind: str
    rate: float
    seed: int
    num_classes: int
    flips: Dict[int, Tuple[int, ...]] = field(default_factory=dict)

    @property
    def corrupted(self) -> Tensor:
        """``(N,)`` bool: where the noisy label differs from the clean one."""
        return self.labels != self.clean

    @property
    def realised_rate(self) -> float:
        """The share of labels that actually changed (in [0, 1])."""
        return float(self.corrupted.float().mean()) if len(self.labels) else 0.0

    def per_class_rate(self) -> Dict[int, float]:
        """``{class: share of its (clean) labels that changed}`` for every class present."""
        out = {}
        for c in range(self.num_classes):
            mask = self.clean == c
            if bool(mask.any()):
                out[c] = float(self.corrupted[mask].float().mean())
        return out

    def transition_counts(self) -> np.ndarray:
        """``(C, C)`` counts: row = clean class, column = noisy label."""
        counts = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        np.add.at(counts, (self.clean.numpy(), self.labels.numpy()), 1)
        return counts

    def memorisation(self, predictions: Tensor) -> Dict[str, float]:
        """How much of the noise a model's predictions on the *training* images follow.

        Args:
            predictions: ``(N,)`` predicted classes for the training images, in the same order as the labels.

        Returns:
            Shares in % (NaN where a group is empty): ``noisy_fit``, corrupted images predicted as their
            noisy label (memorised noise); ``noisy_clean``, corrupted images predicted as their true class
            (noise resisted); ``clean_fit``, uncorrupted images predicted correctly.

        Raises:
            ValueError: a prediction count that is not the label count, or not ``(N,)`` (pass ``logits.argmax(1)``).
            TypeError: predictions that are not integer class indices.
        """
        try:
            pred = torch.as_tensor(np.asarray(predictions) if isinstance(predictions, (list, tuple)) else predictions)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"predictions must be a tensor or array of predicted class indices, got "
                            f"{show(predictions)}; e.g. logits.argmax(1)") from None
        if pred.dim() != 1:
            raise ValueError(f"predictions must be (N,) class indices, got shape {tuple(pred.shape)}; for logits or "
                             "probabilities (N, C) pass logits.argmax(1)")
        if pred.dtype.is_floating_point or pred.dtype.is_complex or pred.dtype == torch.bool:
            raise TypeError(f"predictions must be integer class indices, got dtype {pred.dtype}; e.g. logits.argmax(1)")
        pred = pred.long().cpu()
        if pred.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"got {pred.shape[0]} predictions for {self.labels.shape[0]} noisy labels; predict on the "
                "training set these labels belong to, in the same order"
            )
        bad = self.corrupted

        def share(mask: Tensor, ref: Tensor) -> float:
            return 100.0 * float((pred[mask] == ref[mask]).float().mean()) if bool(mask.any()) else math.nan

        return {"noisy_fit": share(bad, self.labels), "noisy_clean": share(bad, self.clean),
                "clean_fit": share(~bad, self.clean)}

    def describe(self) -> str:
        """One line, e.g. ``symmetric noise, rate 0.20 asked, 0.197 realised (394 of 2000 labels), seed 0``."""
        n, changed = len(self.labels), int(self.corrupted.sum())
        return (f"{self.kind} noise, rate {self.rate:.2f} asked, {self.realised_rate:.3f} realised "
                f"({changed} of {n} labels), seed {self.seed}")

    def tag(self) -> str:
        """A short name for caches and tables, e.g. ``sym20-s0`` or ``asym40-s1``."""
        short = "sym" if self.kind == "symmetric" else "asym"
        return f"{short}{round(100 * self.rate):d}-s{self.seed}"

    def save(self, path: PathLike) -> Path:
        """Write the noisy labels to a small JSON file (atomically) and return its path.

        The file holds ``kind``, ``rate``, ``seed``, ``num_classes``, ``flips``, ``n``, the realised rate, a
        fingerprint of the clean labels and the noisy labels themselves: enough for :func:`load_noisy_labels`
        to rebuild this object from the data set's clean labels and check that they match.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": _FORMAT, "version": _VERSION, "kind": self.kind, "rate": self.rate, "seed": self.seed,
            "num_classes": self.num_classes, "flips": {str(k): list(v) for k, v in self.flips.items()},
            "n": len(self.labels), "realised_rate": self.realised_rate,
            "clean_fingerprint": _fingerprint(self.clean), "labels": self.labels.tolist(),
        }
        atomic_write_text(path, json.dumps(payload, separators=(",", ":")))
        return path


def make_noisy_labels(
    labels: Any,
    rate: float,
    kind: str = "symmetric",
    seed: int = 0,
    num_classes: Optional[int] = None,
    flips: Optional[Mapping[int, Union[int, Sequence[int]]]] = None,
) -> NoisyLabels:
    """Corrupt class labels reproducibly (see the module docstring for the two kinds).

    Args:
        labels: ``(N,)`` clean class indices (tensor, array or list).
        rate: probability in ``[0, 1)`` that a label (of a flipping class, for asymmetric noise) is replaced.
        kind: ``"symmetric"`` or ``"asymmetric"``.
        seed: fixes every draw: the same labels, rate, kind and seed always give the same noisy labels.
        num_classes: ``C`` (default: ``max(labels) + 1``; pass it when a class may be missing).
        flips: asymmetric only: ``{class: partner}`` or ``{class: (partners, ...)}``; default
            :data:`DIGITS_FLIPS` for 10 classes. Classes not listed keep their labels.

    Returns:
        A :class:`NoisyLabels`.

    Raises:
        ValueError: a rate outside ``[0, 1)``, an unknown kind, labels out of range or not 1-D, a flip table
            naming unknown classes or a class flipping to itself, ``flips`` given for symmetric noise.
        TypeError: non-integer labels, a non-numeric rate, a seed or ``num_classes`` that is not an int, a flip
            table that is not a dict.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS}")
    rate = _check_rate(rate)
    clean, num_classes = _check_labels(labels, num_classes)
    seed = check_int("seed", seed, min=0, fix="any int >= 0 fixes the draw")
    rng = np.random.default_rng([int(seed), 7919])
    y = clean.numpy()
    n = len(y)
    noisy = y.copy()
    table: Dict[int, Tuple[int, ...]] = {}
    if kind == "symmetric":
        if flips is not None:
            raise ValueError("flips only applies to asymmetric noise; drop it or use kind='asymmetric'")
        hit = rng.random(n) < rate
        # a uniform draw among the C - 1 other classes: shift by 1..C-1 modulo C
        shift = rng.integers(1, num_classes, size=n)
        noisy[hit] = (y[hit] + shift[hit]) % num_classes
    else:
        if flips is None:
            if num_classes != 10:
                raise ValueError(
                    f"no default flip table for {num_classes} classes; pass flips={{class: partner}} "
                    "(DIGITS_FLIPS and CIFAR10_FLIPS are for 10 classes)"
                )
            flips = DIGITS_FLIPS
        table = _check_flips(flips, num_classes)
        hit = rng.random(n) < rate
        pick = rng.random(n)
        for src, partners in table.items():
            sel = hit & (y == src)
            idx = np.minimum((pick[sel] * len(partners)).astype(np.int64), len(partners) - 1)
            noisy[sel] = np.asarray(partners, dtype=np.int64)[idx]
    return NoisyLabels(torch.from_numpy(noisy.astype(np.int64)), clean, kind, rate, int(seed), num_classes, table)


def load_noisy_labels(path: PathLike, clean_labels: Any, num_classes: Optional[int] = None) -> NoisyLabels:
    """Read noisy labels written by :meth:`NoisyLabels.save` and check them against the data set.

    Args:
        path: the JSON file.
        clean_labels: the data set's clean labels (e.g. ``dataset.targets``), in the same order as when saved.
        num_classes: optional check of the class count.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a noisy-label file, or labels that do not belong to this data set (another size,
            other clean labels, another class count).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no noisy-label file at {path}; make one with make_noisy_labels(...).save(path)")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass the .json file written by NoisyLabels.save")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a noisy-label file (invalid JSON: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a noisy-label file written by NoisyLabels.save")
    if data.get("version") != _VERSION:
        raise ValueError(f"{path} has format version {data.get('version')!r}; this package reads version {_VERSION}")
    missing = [k for k in ("num_classes", "n", "labels", "clean_fingerprint", "kind", "rate", "seed") if k not in data]
    if missing:
        raise ValueError(f"{path} is an incomplete noisy-label file (no {', '.join(missing)}); make it again with "
                         "make_noisy_labels(...).save(path)")
    saved_c = int(data["num_classes"])
    if num_classes is not None and int(num_classes) != saved_c:
        raise ValueError(f"{path} was made for {saved_c} classes, not {num_classes}")
    clean, _ = _check_labels(clean_labels, saved_c)
    if len(clean) != int(data["n"]) or len(data["labels"]) != int(data["n"]):
        raise ValueError(
            f"{path} holds {data['n']} noisy labels but the data set has {len(clean)}; it was made for another "
            "data set or another size (e.g. a different n_train)"
        )
    if _fingerprint(clean) != data["clean_fingerprint"]:
        raise ValueError(
            f"the clean labels do not match the ones {path} was made from (same size, different labels): it "
            "belongs to another data set, split or order"
        )
    noisy, _ = _check_labels(torch.tensor(data["labels"], dtype=torch.int64), saved_c)
    flips = {int(k): tuple(int(v) for v in vs) for k, vs in data.get("flips", {}).items()}
    return NoisyLabels(noisy, clean, data["kind"], float(data["rate"]), int(data["seed"]), saved_c, flips)


def dataset_labels(dataset: Dataset) -> Tensor:
    """The class labels of a data set as an ``(N,)`` int64 tensor: its ``targets`` attribute (tensor or list,
    as in torchvision's data sets) when present, else read item by item (``dataset[i][1]``).

    Raises:
        TypeError: not a map-style data set (no ``len`` and indexing).
    """
    targets = getattr(dataset, "targets", None)
    if targets is None and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must be a data set of (image, label) items, got {type(dataset).__name__}; pass the "
                        "data set itself, not a DataLoader")
    if targets is not None:
        return torch.as_tensor(np.asarray(targets)).long().view(-1) if not isinstance(targets, Tensor) else targets.long()
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.int64)


class NoisyLabelDataset(Dataset):
    """A data set that serves noisy labels in place of the clean ones.

    ``ds[i]`` is the base item with its label (position 1) replaced by the noisy label; everything else
    (image, box ...) is passed through. The clean labels stay available for measuring memorisation.

    Args:
        base: a single-label data set whose items are ``(image, label, ...)``.
        noise: :class:`NoisyLabels` made from ``base``'s labels.

    Attributes:
        targets: the noisy labels; ``clean_targets``: the clean ones; ``corrupted``: where they differ;
        ``noise``: the :class:`NoisyLabels`; ``num_classes`` and ``classes`` passed through from ``base``.

    Raises:
        ValueError: label counts that differ, or noise made from other clean labels.
    """

    def __init__(self, base: Dataset, noise: NoisyLabels) -> None:
        if not isinstance(noise, NoisyLabels):
            raise TypeError(f"noise must be NoisyLabels (from make_noisy_labels), got {type(noise).__name__}")
        clean = dataset_labels(base)
        if len(clean) != len(noise.labels):
            raise ValueError(
                f"the data set has {len(clean)} items but the noisy labels {len(noise.labels)}; make the noise "
                "from this data set's labels"
            )
        if not torch.equal(clean.cpu(), noise.clean):
            raise ValueError("the noisy labels were made from other clean labels than this data set's")
        self.base = base
        self.noise = noise
        self.targets = noise.labels
        self.clean_targets = noise.clean
        self.num_classes = getattr(base, "num_classes", noise.num_classes)
        if hasattr(base, "classes"):
            self.classes = base.classes

    @property
    def corrupted(self) -> Tensor:
        return self.noise.corrupted

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        item = self.base[i]
        return (item[0], self.targets[i], *item[2:])

    def __repr__(self) -> str:
        return f"NoisyLabelDataset({self.noise.describe()}, base={self.base!r})"
