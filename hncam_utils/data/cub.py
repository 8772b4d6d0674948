"""CUB-200-2011 (Caltech-UCSD Birds): 200 bird species, 11,788 photos, one bounding box per photo.

``root`` is the folder that holds the extracted ``CUB_200_2011/`` (what ``data_scripts/get_cub200.py`` or
``hncam_utils.download.fetch_dataset("cub200", root)`` produce). The files read:

* ``images.txt``: ``<image id> <relative path under images/>`` (ids are 1-based);
* ``image_class_labels.txt``: ``<image id> <class id>`` (1-based; :class:`CUB200` returns 0-based labels);
* ``train_test_split.txt``: ``<image id> <1 = train, 0 = test>`` (the official split: 5,994 / 5,794);
* ``bounding_boxes.txt``: ``<image id> <x> <y> <width> <height>`` in the original image's pixels (floats);
* ``classes.txt``: ``<class id> <folder name>``, e.g. ``1 001.Black_footed_Albatross``.

Boxes move with the image: pass a :mod:`torchvision.transforms.v2` transform (e.g. :func:`cub_transforms`) and
``return_box=True``; torchvision resizes, crops and flips the box together with the image (a box cut by a crop is
clamped to the image), and the item is ``(image, label, box)`` with ``box = (x0, y0, x1, y1)`` in the
transformed image's pixels, the convention of :mod:`hncam_utils.metrics` and :mod:`hncam_utils.wsol`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..download import default_root, fetch_dataset, get_spec
from .errors import CorruptImageError, DatasetNotFoundError, check_root, describe_missing

__all__ = ["CUB200", "cub_transforms", "IMAGENET_MEAN", "IMAGENET_STD", "CUB_FILES"]

PathLike = Union[str, "os.PathLike[str]"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt")
SPLITS = ("train", "test")


def how_to_get_cub(root: Path) -> str:
    """The lines an error message prints on how to get CUB-200-2011 into ``root``."""
    spec = get_spec("cub200")
    return (
        f"  * run  python data_scripts/get_cub200.py --root {root}\n"
        f"    (downloads {spec.filename}, {spec.size:,} bytes, MD5 {spec.md5}, and unpacks it), or call\n"
        f"    hncam_utils.download.fetch_dataset('cub200', {str(root)!r}), or pass download=True;\n"
        f"  * offline: put {spec.filename} (from {spec.homepage}) in {root} and run the script again, or\n"
        f"    extract it yourself so that {root / spec.folder / 'images.txt'} exists."
    )


def _read_table(path: Path, columns: int, kind: Callable[[str], Any] = str) -> Dict[int, Tuple[Any, ...]]:
    """``{id: (values...)}`` from a whitespace-separated CUB text file, with errors that name file and line."""
    table: Dict[int, Tuple[Any, ...]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(None, columns)
            try:
                if len(parts) != columns + 1:
                    raise ValueError(f"expected {columns + 1} fields, got {len(parts)}")
                key = int(parts[0])
                values = tuple(kind(p) for p in parts[1:])
            except ValueError as exc:
                raise ValueError(
                    f"{path}, line {number}: cannot parse {line!r} ({exc}). The file is damaged: extract "
                    f"CUB_200_2011.tgz again (python data_scripts/get_cub200.py)."
                ) from None
            if key in table:
                raise ValueError(f"{path}, line {number}: id {key} appears twice; extract CUB_200_2011.tgz again")
            table[key] = values
    return table


class CUB200(Dataset):
    """CUB-200-2011 with the official train/test split, 0-based labels and one box per image.

    Args:
        root: the folder that holds ``CUB_200_2011/`` (a path to ``CUB_200_2011/`` itself is accepted too);
            default ``hncam_utils.download.default_root()`` (``$HNCAM_HOME/data``).
        split: ``"train"`` (5,994 images) or ``"test"`` (5,794 images).
        transform: applied to the PIL image. With ``return_box=True`` it must be a
            :mod:`torchvision.transforms.v2` transform, which moves the box with the image.
        return_box: items are ``(image, label, box)`` with ``box`` a float tensor ``(x0, y0, x1, y1)`` in the
            (transformed) image's pixels; otherwise ``(image, label)``.
        download: fetch and unpack the archive (1.1 GB) into ``root`` when the folder is missing.

    Attributes:
        classes: the 200 species names (``"Black footed Albatross"``), index = label.
        class_folders: the folder names (``"001.Black_footed_Albatross"``).
        image_ids: the 1-based CUB image ids of this split, in file order.
        paths: each image's file. targets: each image's 0-based label (a list of ints).
        boxes: ``(N, 4)`` float tensor, ``boxes[i] = (x, y, w, h)`` in the original image's pixels.

    Raises:
        DatasetNotFoundError: the folder, one of its text files or some images are missing; the message names
            them and says how to get the data (``data_scripts/get_cub200.py``, ``CUB_200_2011.tgz``).
        NotADirectoryError: ``root`` is a file.
        ValueError: an unknown ``split``; a damaged text file (the message names file and line); an image
            without label, split or box; ``return_box=True`` with a transform that cannot move boxes.
        CorruptImageError: (when an item is read) the image cannot be decoded; the message names its path.
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        split: str = "train",
        transform: Optional[Callable] = None,
        return_box: bool = False,
        download: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        root = Path(root).expanduser() if root is not None else default_root()
        spec = get_spec("cub200")
        if root.name == spec.folder and (root / "images.txt").exists():
            root = root.parent
        root = check_root(root, "CUB-200-2011", how_to_get_cub(root))
        folder = root / spec.folder
        if download and (not folder.is_dir() or spec.missing(folder)):
            fetch_dataset("cub200", root)
        missing = [name for name in CUB_FILES + ("images",) if not (folder / name).exists()]
        if missing:
            raise DatasetNotFoundError("CUB-200-2011", folder, missing, how_to_get_cub(root))
        if return_box and transform is not None:
            from torchvision.transforms import v2

            if not isinstance(transform, v2.Transform):
                raise ValueError(
                    f"return_box=True needs a torchvision.transforms.v2 transform to move the box with the image, "
                    f"got {type(transform).__name__}; use hncam_utils.data.cub_transforms(...) or build one from "
                    "torchvision.transforms.v2 (Resize, RandomCrop, RandomHorizontalFlip, ToImage, ...)"
                )
        self.root, self.folder, self.split = root, folder, split
        self.transform, self.return_box = transform, return_box

        images = _read_table(folder / "images.txt", 1)
        labels = _read_table(folder / "image_class_labels.txt", 1, int)
        is_train = _read_table(folder / "train_test_split.txt", 1, int)
        boxes = _read_table(folder / "bounding_boxes.txt", 4, float)
        classes = _read_table(folder / "classes.txt", 1)
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train),
                            ("bounding_boxes.txt", boxes)):
            lacking = sorted(set(images) - set(table))
            if lacking:
                raise ValueError(
                    f"{folder / name} has no entry for image id(s) {describe_missing([str(i) for i in lacking])} "
                    f"listed in images.txt: the folder mixes two versions or is damaged; extract CUB_200_2011.tgz again"
                )
        class_ids = sorted(classes)
        if class_ids != list(range(1, len(class_ids) + 1)):
            raise ValueError(f"{folder / 'classes.txt'}: class ids must run 1..C without gaps, got {describe_missing([str(c) for c in class_ids])}")
        self.class_folders: List[str] = [classes[c][0] for c in class_ids]
        self.classes: List[str] = [name.split(".", 1)[-1].replace("_", " ") for name in self.class_folders]
        wanted = 1 if split == "train" else 0
        self.image_ids: List[int] = [i for i in images if is_train[i][0] == wanted]
        self.paths: List[Path] = [folder / "images" / images[i][0] for i in self.image_ids]
        self.targets: List[int] = []
        for i in self.image_ids:
            label = labels[i][0]
            if not 1 <= label <= len(self.class_folders):
                raise ValueError(
                    f"{folder / 'image_class_labels.txt'}: image {i} has class {label}, outside 1..{len(self.class_folders)} "
                    "(classes.txt); extract CUB_200_2011.tgz again"
                )
            self.targets.append(label - 1)
        self.boxes: Tensor = torch.tensor([boxes[i] for i in self.image_ids], dtype=torch.float32).reshape(-1, 4)
        absent = [str(p.relative_to(folder)) for p in self.paths if not p.is_file()]
        if absent:
            raise DatasetNotFoundError("CUB-200-2011", folder, absent, how_to_get_cub(root))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.image_ids)

    def load_image(self, index: int):
        """The image ``index`` as an RGB PIL image, untransformed (a few CUB photos are grayscale).

        Raises:
            CorruptImageError: the file cannot be decoded; the message names it.
        """
        from PIL import Image, UnidentifiedImageError

        path = self.paths[index]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except FileNotFoundError:
            raise DatasetNotFoundError(
                "CUB-200-2011", self.folder, [str(path.relative_to(self.folder))], how_to_get_cub(self.root)
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise CorruptImageError(
                path, f"{type(exc).__name__}: {exc}",
                "The file is truncated or not an image: delete the CUB_200_2011 folder and extract "
                "CUB_200_2011.tgz again (python data_scripts/get_cub200.py).",
            ) from exc

    def box_xyxy(self, index: int) -> Tensor:
        """The box of ``index`` as ``(x0, y0, x1, y1)`` in the original image's pixels."""
        x, y, w, h = self.boxes[index].tolist()
        return torch.tensor([x, y, x + w, y + h])

    def __getitem__(self, index: int):
        image = self.load_image(index)
        label = self.targets[index]
        if not self.return_box:
            return (self.transform(image) if self.transform is not None else image), label
        if self.transform is None:
            return image, label, self.box_xyxy(index)
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        box = tv_tensors.BoundingBoxes(self.boxes[index][None], format="XYWH", canvas_size=(image.height, image.width))
        image, box = self.transform(image, box)
        box = TF.convert_bounding_box_format(box, new_format=tv_tensors.BoundingBoxFormat.XYXY)
        return image, label, box.as_subclass(Tensor)[0].float()

    def __repr__(self) -> str:
        return f"CUB200(split={self.split!r}, images={len(self)}, classes={self.num_classes}, folder={str(self.folder)!r})"


def cub_transforms(train: bool, size: int = 224, resize: Optional[int] = None, normalize: bool = True):
    """Paired image-and-box transforms for CUB (torchvision.transforms.v2), Choe et al.'s protocol by default.

    * train: resize to ``resize x resize`` (default ``size * 8 / 7``, 256 for 224), random ``size`` crop,
      horizontal flip;
    * test: resize to ``size x size`` (the whole image, so the box stays whole).

    Then a float tensor in ``[0, 1]``, normalised with the ImageNet mean and standard deviation (the
    pretrained weights' statistics) when ``normalize``. Use with ``CUB200(..., transform=..., return_box=True)``.
    """
    from torchvision.transforms import v2

    steps: List[Any]
    if train:
        resize = resize or round(size * 8 / 7)
        steps = [v2.Resize((resize, resize), antialias=True), v2.RandomCrop(size), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize((size, size), antialias=True)]
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if normalize:
        steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return v2.Compose(steps)
