"""Small, format-faithful stand-ins for data sets that cannot be downloaded everywhere (tests, smoke profiles).

They have the real files' layout and encoding, so the real loaders read them unchanged, but their images are
synthetic: **nothing measured on a fixture is a result**; it only shows that the pipeline runs.

* :func:`make_cub_fixture`: a ``CUB_200_2011/`` tree with real JPEG files and the five text files. Each image
  shows one "bird" (an ellipse whose colour and stripes depend on its class) inside its bounding box, on a noisy
  background, so a model can learn something and CAMs have something to find.
* :func:`make_cifar_fixture`: ``cifar-10-batches-py/`` or ``cifar-100-python/`` with Python-2 pickled batches
  like the real archives (uint8 ``data`` rows of 3,072 bytes, label lists, meta files), class-dependent colours.
"""

from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import numpy as np

__all__ = ["make_cub_fixture", "make_cifar_fixture", "py2_pickle", "FIXTURE_NOTE"]

PathLike = Union[str, "os.PathLike[str]"]
FIXTURE_NOTE = "generated fixture (synthetic images): a pipeline check, not a result"

_CUB_NAMES = [
    "Fixture_Red_Warbler", "Fixture_Blue_Jay", "Fixture_Green_Finch", "Fixture_Yellow_Tanager",
    "Fixture_Purple_Martin", "Fixture_Orange_Oriole", "Fixture_Grey_Catbird", "Fixture_Cyan_Kingfisher",
]


def _class_colour(c: int, n: int) -> np.ndarray:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((c / max(n, 1)) % 1.0, 0.85, 0.95)
    return np.array([r, g, b]) * 255


def make_cub_fixture(
    root: PathLike,
    num_classes: int = 4,
    per_class: int = 6,
    seed: int = 0,
    sizes: Iterable[int] = (80, 96, 112, 128),
) -> Path:
    """Write a small CUB-200-2011 tree to ``root / "CUB_200_2011"`` and return that folder.

    Args:
        root: the folder to hold ``CUB_200_2011/`` (created).
        num_classes: classes (at most 8 named ones; more get generic names).
        per_class: images per class; alternate ones go to train and test (``train_test_split.txt``).
        seed: fixes every image, box and size.
        sizes: image sides to draw widths and heights from (real CUB photos vary in size too).

    Returns:
        The ``CUB_200_2011`` folder. One image per class is grayscale (as a few real ones are).
    """
    from PIL import Image

    if num_classes < 1 or per_class < 2:
        raise ValueError(f"need num_classes >= 1 and per_class >= 2, got {num_classes}, {per_class}")
    rng = np.random.default_rng(seed)
    folder = Path(root).expanduser() / "CUB_200_2011"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    sizes = list(sizes)
    names = [(_CUB_NAMES[c] if c < len(_CUB_NAMES) else f"Fixture_Bird_{c + 1}") for c in range(num_classes)]
    images, labels, split, boxes = [], [], [], []
    image_id = 0
    for c, name in enumerate(names):
        sub = f"{c + 1:03d}.{name}"
        (folder / "images" / sub).mkdir(exist_ok=True)
        colour = _class_colour(c, num_classes)
        for j in range(per_class):
            image_id += 1
            w, h = int(rng.choice(sizes)), int(rng.choice(sizes))
            bw, bh = int(rng.integers(w // 3, w * 3 // 4)), int(rng.integers(h // 3, h * 3 // 4))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            img = rng.normal(110, 25, (h, w, 3))
            yy, xx = np.mgrid[0:h, 0:w]
            inside = ((xx + 0.5 - x - bw / 2) / (bw / 2)) ** 2 + ((yy + 0.5 - y - bh / 2) / (bh / 2)) ** 2 <= 1
            stripes = ((xx - x) // max(2, (c % 4) + 2) % 2 == 0) if c % 2 else ((yy - y) // 3 % 2 == 0)
            body = np.where(stripes[..., None], colour, colour * 0.55)
            img[inside] = body[inside] + rng.normal(0, 10, (int(inside.sum()), 3))
            img = np.clip(img, 0, 255).astype(np.uint8)
            pil = Image.fromarray(img)
            if j == per_class - 1:
                pil = pil.convert("L")  # a grayscale JPEG, as a few real CUB photos are
            rel = f"{sub}/{name}_{image_id:04d}_{100 + image_id}.jpg"
            pil.save(folder / "images" / rel, format="JPEG", quality=90)
            images.append(rel)
            labels.append(c + 1)
            split.append(1 if j % 2 == 0 else 0)
            # the tight box of the ellipse, as floats like the real file (x y width height)
            ys, xs = np.nonzero(inside)
            boxes.append((float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)))
    _write_lines(folder / "images.txt", (f"{i} {p}" for i, p in enumerate(images, 1)))
    _write_lines(folder / "image_class_labels.txt", (f"{i} {c}" for i, c in enumerate(labels, 1)))
    _write_lines(folder / "train_test_split.txt", (f"{i} {s}" for i, s in enumerate(split, 1)))
    _write_lines(folder / "bounding_boxes.txt", (f"{i} {x} {y} {w} {h}" for i, (x, y, w, h) in enumerate(boxes, 1)))
    _write_lines(folder / "classes.txt", (f"{c + 1} {c + 1:03d}.{n}" for c, n in enumerate(names)))
    (folder / "README.fixture").write_text(FIXTURE_NOTE + "\n")
    return folder


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def py2_pickle(obj: object, texts: Iterable[str]) -> bytes:
    """Pickle like Python 2's cPickle did for the real CIFAR files: the strings in ``texts`` become Python 2
    ``str`` (``SHORT_BINSTRING``), so ``encoding="latin1"`` reads them as ``str`` and ``encoding="bytes"`` as
    ``bytes``, as with the real files."""
    texts = set(texts)
    raw = pickle.dumps(obj, protocol=2)
    ops = list(pickletools.genops(raw))
    out = bytearray()
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(raw)
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE") and arg in texts and len(arg.encode("ascii")) < 256:
            out += b"U" + bytes([len(arg)]) + arg.encode("ascii")
        else:
            out += raw[pos:end]
    return bytes(out)


def _cifar_images(rng: np.random.Generator, labels: List[int], num_classes: int) -> np.ndarray:
    """Rows of 3,072 uint8 (R plane, G plane, B plane; 32 x 32 each): a class-coloured square on noise."""
    out = np.empty((len(labels), 3, 32, 32), dtype=np.uint8)
    for i, c in enumerate(labels):
        img = rng.normal(100, 30, (3, 32, 32))
        s = int(rng.integers(10, 18))
        x, y = (int(v) for v in rng.integers(0, 32 - s, 2))
        img[:, y : y + s, x : x + s] = _class_colour(c, num_classes)[:, None, None] + rng.normal(0, 10, (3, s, s))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out.reshape(len(labels), 3072)


def make_cifar_fixture(
    root: PathLike, name: str = "cifar10", per_batch: int = 20, test_size: Optional[int] = None, seed: int = 0
) -> Path:
    """Write a tiny CIFAR-10 (``cifar-10-batches-py/``) or CIFAR-100 (``cifar-100-python/``) to ``root``.

    CIFAR-10: ``data_batch_1`` ... ``data_batch_5`` with ``per_batch`` images each, ``test_batch`` and
    ``batches.meta``; CIFAR-100: ``train`` (``5 * per_batch`` images), ``test`` and ``meta`` with fine and
    coarse labels. The real class names are used; the images are synthetic.

    Returns:
        The data set's folder (``root / "cifar-10-batches-py"`` or ``root / "cifar-100-python"``).
    """
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
    rng = np.random.default_rng(seed)
    test_size = test_size or per_batch
    root = Path(root).expanduser()
    files: Dict[str, bytes] = {}
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        names = CIFAR10_CLASSES
        for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            n = per_batch if i < 5 else test_size
            labels = [int(v) for v in rng.integers(0, 10, n)]
            batch = {
                "batch_label": f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1",
                "labels": labels,
                "data": _cifar_images(rng, labels, 10),
                "filenames": [f"fixture_{i}_{j}.png" for j in range(n)],
            }
            files[fname] = py2_pickle(batch, {"batch_label", "labels", "data", "filenames", batch["batch_label"], *batch["filenames"]})
        meta = {"num_cases_per_batch": per_batch, "label_names": list(names), "num_vis": 3072}
        files["batches.meta"] = py2_pickle(meta, {"num_cases_per_batch", "label_names", "num_vis", *names})
    else:
        folder = root / "cifar-100-python"
        fine, coarse = CIFAR100_CLASSES, CIFAR100_COARSE
        for fname, n in (("train", 5 * per_batch), ("test", test_size)):
            labels = [int(v) for v in rng.integers(0, 100, n)]
            batch = {
                "filenames": [f"fixture_{fname}_{j}.png" for j in range(n)],
                "batch_label": f"{fname}ing batch 1 of 1",
                "fine_labels": labels,
                "coarse_labels": [c // 5 for c in labels],
                "data": _cifar_images(rng, labels, 100),
            }
            keys = {"filenames", "batch_label", "fine_labels", "coarse_labels", "data", batch["batch_label"], *batch["filenames"]}
            files[fname] = py2_pickle(batch, keys)
        meta = {"fine_label_names": list(fine), "coarse_label_names": list(coarse)}
        files["meta"] = py2_pickle(meta, {"fine_label_names", "coarse_label_names", *fine, *coarse})
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    (folder / "README.fixture").write_text(FIXTURE_NOTE + "\n")
    return folder


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_COARSE = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)
