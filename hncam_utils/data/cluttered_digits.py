"""Cluttered Digits: an offline data set that shows why negative CAMs matter.

Built from scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1,797 real 8x8
digits, no download). Each canvas holds a target digit (upscaled to 16x16, bilinear) pasted at a random spot
on a black 48x48 canvas, plus *distractor fragments*: random crops (8-12 px a side, enough ink) of digits of
**other** classes, pasted where they do not overlap the target, plus Gaussian noise. A CE-trained GAP CNN
reaches high accuracy, yet the CAMs of absent classes peak on the digit and on the fragments: the
phenomenon the HNC loss targets.

* Train and test canvases are built from disjoint **source digits** (a stratified 2/3 - 1/3 split of the
  1,797 images), fragments included, so no handwriting leaks from train to test.
* Everything is fixed by ``seed``; a build takes a second or two.
* Single-label mode: ``target`` is the class index, ``box`` the target's tight ink box ``(x0, y0, x1, y1)``
  in pixels (``x1``, ``y1`` exclusive). Multi-label mode: several digits of distinct classes per canvas,
  ``target`` is a multi-hot ``(10,)`` float vector, ``box`` is ``(10, 4)`` with one box per present class
  and ``-1`` rows for absent ones.

Settings (:data:`SETTINGS`): ``easy`` (8,000 / 2,000 canvases, 4 random-class fragments, noise 0.1; CE
accuracy saturates) and ``hard`` (2,000 / 2,000 canvases, 6 fragments from classes *confusable* with the
target, noise 0.2; accuracy is not saturated, so accuracy effects can be studied).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_bool, check_choice, check_float, check_int, check_int_pair

__all__ = [
    "ClutteredDigitsConfig",
    "ClutteredDigits",
    "SETTINGS",
    "CONFUSABLE",
    "make_cluttered_digits",
    "source_split",
    "NUM_CLASSES",
    "CLASS_NAMES",
]

NUM_CLASSES = 10
CLASS_NAMES = [str(i) for i in range(NUM_CLASSES)]

# Classes whose fragments are easily confused with each target class (chosen by hand).
CONFUSABLE: Dict[int, Tuple[int, ...]] = {
    0: (6, 8, 9), 1: (7, 4, 8), 2: (3, 8, 7), 3: (5, 8, 9), 4: (9, 1, 7),
    5: (3, 6, 9), 6: (0, 5, 8), 7: (1, 9, 4), 8: (3, 5, 9), 9: (4, 8, 3),
}


@dataclass(frozen=True)
class ClutteredDigitsConfig:
    """Every knob of the generator. Two configs that compare equal build identical data.

    Attributes:
        n_train, n_test: canvases per split.
        canvas: canvas side in pixels.
        digit_size: side of an upscaled digit.
        n_distractors: fragments per canvas.
        distractor_classes: ``"random"`` (any class but the targets') or ``"confusable"`` (:data:`CONFUSABLE`).
        fragment_size: ``(min, max)`` side of a fragment crop.
        min_fragment_ink: a crop is redrawn until its mean intensity reaches this.
        noise: standard deviation of the Gaussian noise (the canvas is clipped to ``[0, 1]``).
        multi_label: several digits per canvas with multi-hot targets.
        digits_per_canvas: ``(min, max)`` digits per canvas in multi-label mode (distinct classes).
        test_fraction: share of source digits held out for the test split.
        seed: fixes the source split and every random draw.
    """

    n_train: int = 8000
    n_test: int = 2000
    canvas: int = 48
    digit_size: int = 16
    n_distractors: int = 4
    distractor_classes: str = "random"
    fragment_size: Tuple[int, int] = (8, 12)
    min_fragment_ink: float = 0.2
    noise: float = 0.1
    multi_label: bool = False
    digits_per_canvas: Tuple[int, int] = (2, 3)
    test_fraction: float = 1 / 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "n_distractors", "seed"):
            check_int(name, getattr(self, name), min=0)
        check_int("digit_size", self.digit_size, min=8, fix="the 8x8 source digits are upscaled to digit_size")
        check_int("canvas", self.canvas, min=self.digit_size, fix=f"the canvas must hold a digit_size={self.digit_size} digit")
        check_choice("distractor_classes", self.distractor_classes, ("random", "confusable"))
        # stored as tuples: a list would make the config unhashable (configs key the build cache)
        object.__setattr__(self, "fragment_size", check_int_pair(
            "fragment_size", self.fragment_size, min=1, max=self.digit_size,
            fix=f"fragments are (min, max) side crops of a digit_size={self.digit_size} digit"))
        object.__setattr__(self, "digits_per_canvas", check_int_pair(
            "digits_per_canvas", self.digits_per_canvas, min=1, max=NUM_CLASSES))
        check_float("min_fragment_ink", self.min_fragment_ink, min=0, max=1,
                    fix="the mean intensity in [0, 1] a fragment crop must reach, e.g. 0.2")
        check_float("noise", self.noise, min=0, fix="the standard deviation of the Gaussian noise, e.g. 0.1")
        check_bool("multi_label", self.multi_label)
        check_float("test_fraction", self.test_fraction, min=0, max=1, min_open=True, max_open=True)
        if self.multi_label:
            if self.digits_per_canvas[1] * self.digit_size > self.canvas * 2:
                raise ValueError(f"digits_per_canvas={self.digits_per_canvas} is too many digits for canvas={self.canvas}; "
                                 "lower digits_per_canvas or raise canvas")

    def replace(self, **changes) -> "ClutteredDigitsConfig":
        """A copy with some fields changed.

        Raises:
            TypeError: an unknown field (the message lists the fields). ValueError: an invalid value.
        """
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise TypeError(f"unknown Cluttered Digits option(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
        return dataclasses.replace(self, **changes)


SETTINGS: Dict[str, ClutteredDigitsConfig] = {
    "easy": ClutteredDigitsConfig(),
    "hard": ClutteredDigitsConfig(n_train=2000, n_test=2000, n_distractors=6, distractor_classes="confusable", noise=0.2),
    "multilabel": ClutteredDigitsConfig(n_train=8000, n_test=2000, n_distractors=3, multi_label=True),
}


@lru_cache(maxsize=4)
def _upscaled_digits(digit_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """All 1,797 sklearn digits in [0, 1], upscaled (bilinear) to ``digit_size``; and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    up = F.interpolate(images, size=(digit_size, digit_size), mode="bilinear", align_corners=False)
    return up[:, 0].clamp(0, 1).numpy(), bunch.target.astype(np.int64)


def source_split(seed: int = 0, test_fraction: float = 1 / 3) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of the source digits used for train and for test: stratified by class, disjoint."""
    from sklearn.model_selection import train_test_split

    check_int("seed", seed, min=0)
    check_float("test_fraction", test_fraction, min=0, max=1, min_open=True, max_open=True)

    _, labels = _upscaled_digits(16)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    return np.sort(train_idx), np.sort(test_idx)


def _ink_box(patch: np.ndarray, threshold: float = 0.1) -> Tuple[int, int, int, int]:
    ys, xs = np.nonzero(patch > threshold)
    if len(xs) == 0:
        return 0, 0, patch.shape[1], patch.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _overlaps(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class _Builder:
    def __init__(self, cfg: ClutteredDigitsConfig, source: np.ndarray, rng: np.random.Generator) -> None:
        digits, labels = _upscaled_digits(cfg.digit_size)
        self.cfg, self.rng = cfg, rng
        self.source = source  # global ids (rows of load_digits) of the digits this split may use
        self.used: List[int] = []
        self.digits, self.labels = digits[source], labels[source]
        self.by_class: List[np.ndarray] = [np.nonzero(self.labels == c)[0] for c in range(NUM_CLASSES)]

    def _pick(self, c: int) -> int:
        pool = self.by_class[c]
        return int(pool[int(self.rng.integers(len(pool)))])

    def _free_spot(self, h: int, w: int, taken: List[Tuple[int, int, int, int]]) -> Tuple[int, int]:
        size = self.cfg.canvas
        for _ in range(200):
            y, x = int(self.rng.integers(0, size - h + 1)), int(self.rng.integers(0, size - w + 1))
            if not any(_overlaps((x, y, x + w, y + h), t) for t in taken):
                return y, x
        raise RuntimeError(
            f"could not place a patch without overlap on a canvas={size} image; lower n_distractors="
            f"{self.cfg.n_distractors}" + (f" or digits_per_canvas={self.cfg.digits_per_canvas}" if self.cfg.multi_label
                                             else "") + ", or raise canvas"
        )

    def _fragment(self, classes: Tuple[int, ...]) -> np.ndarray:
        lo, hi = self.cfg.fragment_size
        s = self.cfg.digit_size
        for _ in range(100):
            c = classes[int(self.rng.integers(len(classes)))]
            j = int(self._pick(c))
            digit = self.digits[j]
            h, w = int(self.rng.integers(lo, hi + 1)), int(self.rng.integers(lo, hi + 1))
            y, x = int(self.rng.integers(0, s - h + 1)), int(self.rng.integers(0, s - w + 1))
            crop = digit[y : y + h, x : x + w]
            if crop.mean() >= self.cfg.min_fragment_ink:
                self.used.append(int(self.source[j]))
                return crop
        raise RuntimeError(  # pragma: no cover - never seen with the default ink threshold
            f"no fragment crop reached min_fragment_ink={self.cfg.min_fragment_ink} in 100 tries; lower "
            "min_fragment_ink or raise fragment_size"
        )

    def canvas(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[int]]:
        cfg, rng, s = self.cfg, self.rng, self.cfg.digit_size
        self.used = []
        img = np.zeros((cfg.canvas, cfg.canvas), dtype=np.float32)
        boxes = np.full((NUM_CLASSES, 4), -1, dtype=np.int64)
        if cfg.multi_label:
            n = int(rng.integers(cfg.digits_per_canvas[0], cfg.digits_per_canvas[1] + 1))
            classes = [int(c) for c in rng.choice(NUM_CLASSES, size=n, replace=False)]
        else:
            classes = [int(rng.integers(0, NUM_CLASSES))]
        taken: List[Tuple[int, int, int, int]] = []
        for c in classes:
            j = int(self._pick(c))
            self.used.append(int(self.source[j]))
            digit = self.digits[j]
            y, x = self._free_spot(s, s, taken)
            taken.append((x, y, x + s, y + s))
            np.maximum(img[y : y + s, x : x + s], digit, out=img[y : y + s, x : x + s])
            x0, y0, x1, y1 = _ink_box(digit)
            boxes[c] = (x + x0, y + y0, x + x1, y + y1)
        others = tuple(c for c in range(NUM_CLASSES) if c not in classes)
        if cfg.distractor_classes == "confusable" and not cfg.multi_label:
            pool = CONFUSABLE[classes[0]]
        else:
            pool = others
        for _ in range(cfg.n_distractors):
            frag = self._fragment(pool)
            h, w = frag.shape
            y, x = self._free_spot(h, w, taken)  # fragments avoid the digits, may touch each other
            np.maximum(img[y : y + h, x : x + w], frag, out=img[y : y + h, x : x + w])
        target = np.zeros(NUM_CLASSES, dtype=np.float32)
        target[classes] = 1.0
        return img, target, boxes, list(self.used)


@lru_cache(maxsize=8)
def _build(cfg: ClutteredDigitsConfig, split: str) -> Dict[str, Tensor]:
    return make_cluttered_digits(cfg, split)


def make_cluttered_digits(cfg: ClutteredDigitsConfig, split: str) -> Dict[str, Tensor]:
    """Build one split as tensors: ``images`` (N, 1, S, S) float32 in [0, 1]; ``targets`` (N,) int64 or
    (N, 10) float32 multi-hot; ``boxes`` (N, 4) or (N, 10, 4) int64; ``source`` (the source-digit pool ids
    ``sources`` (N, m) int64: the rows of ``load_digits()`` each canvas was built from (its digits first,
    then its fragments; ``-1`` pads), to check that train and test share no handwriting.

    Raises:
        ValueError: an unknown split.
    """
    if not isinstance(cfg, ClutteredDigitsConfig):
        raise TypeError(f"cfg must be a ClutteredDigitsConfig (e.g. SETTINGS['easy']), got {type(cfg).__name__}")
    check_choice("split", split, ("train", "test"))
    train_src, test_src = source_split(cfg.seed, cfg.test_fraction)
    source = train_src if split == "train" else test_src
    n = cfg.n_train if split == "train" else cfg.n_test
    rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1])
    builder = _Builder(cfg, source, rng)
    images = np.empty((n, 1, cfg.canvas, cfg.canvas), dtype=np.float32)
    multi = np.empty((n, NUM_CLASSES), dtype=np.float32)
    boxes = np.empty((n, NUM_CLASSES, 4), dtype=np.int64)
    max_digits = cfg.digits_per_canvas[1] if cfg.multi_label else 1
    sources = np.full((n, max_digits + cfg.n_distractors), -1, dtype=np.int64)
    for i in range(n):
        images[i, 0], multi[i], boxes[i], used = builder.canvas()
        sources[i, : len(used)] = used
    if cfg.noise > 0:
        noise_rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, 2])
        images += noise_rng.normal(0.0, cfg.noise, size=images.shape).astype(np.float32)
        np.clip(images, 0.0, 1.0, out=images)
    out: Dict[str, Tensor] = {"images": torch.from_numpy(images), "sources": torch.from_numpy(sources)}
    if cfg.multi_label:
        out["targets"] = torch.from_numpy(multi)
        out["boxes"] = torch.from_numpy(boxes)
    else:
        labels = multi.argmax(axis=1)
        out["targets"] = torch.from_numpy(labels.astype(np.int64))
        out["boxes"] = torch.from_numpy(boxes[np.arange(n), labels])
    return out


class ClutteredDigits(Dataset):
    """A split of Cluttered Digits as a ``torch.utils.data.Dataset``.

    Args:
        split: ``"train"`` or ``"test"``.
        config: a :class:`ClutteredDigitsConfig`, or the name of a preset in :data:`SETTINGS`
            (``"easy"``, ``"hard"``, ``"multilabel"``).
        with_boxes: make ``dataset[i]`` return ``(image, target, box)`` instead of ``(image, target)``.
        **overrides: fields of the config to change, e.g. ``n_train=500, seed=3``.

    Attributes:
        images, targets, boxes, sources: the whole split as tensors (see :func:`make_cluttered_digits`).
        num_classes: 10. ``classes``: ``["0", ..., "9"]``.

    Example:
        >>> train = ClutteredDigits("train", "hard", n_train=500)
        >>> x, y = train[0]          # x: (1, 48, 48), y: int64 class index
    """

    num_classes = NUM_CLASSES
    classes = CLASS_NAMES

    def __init__(self, split: str, config="easy", with_boxes: bool = False, **overrides) -> None:
        check_choice("split", split, ("train", "test"))
        check_bool("with_boxes", with_boxes)
        if isinstance(config, str):
            if config not in SETTINGS:
                raise ValueError(f"unknown Cluttered Digits setting {config!r}; choose one of {sorted(SETTINGS)}")
            config = SETTINGS[config]
        if not isinstance(config, ClutteredDigitsConfig):
            raise TypeError(f"config must be a ClutteredDigitsConfig or a setting name, got {type(config).__name__}")
        self.config = config.replace(**overrides) if overrides else config
        self.split = split
        self.with_boxes = with_boxes
        data = _build(self.config, split)  # built once per (config, split) and process; copied below
        self.images: Tensor = data["images"].clone()
        self.targets: Tensor = data["targets"].clone()
        self.boxes: Tensor = data["boxes"].clone()
        self.sources: Tensor = data["sources"].clone()

    @property
    def multi_label(self) -> bool:
        return self.config.multi_label

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        if self.with_boxes:
            return self.images[i], self.targets[i], self.boxes[i]
        return self.images[i], self.targets[i]

    def __repr__(self) -> str:
        mode = "multi-label" if self.multi_label else "single-label"
        return f"ClutteredDigits(split={self.split!r}, n={len(self)}, {mode}, config={self.config})"
