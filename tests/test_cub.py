"""CUB200 on a generated CUB_200_2011 tree (real JPEG files, the real text-file formats): labels, split, boxes,
boxes that move with the image, and a clear error for every kind of bad folder."""

from __future__ import annotations

import dataclasses
import hashlib
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hncam_utils import download as dl
from hncam_utils.data import CUB200, CorruptImageError, DatasetNotFoundError, cub_transforms, make_cub_fixture


@pytest.fixture
def cub_root(tmp_path):
    make_cub_fixture(tmp_path / "data", num_classes=3, per_class=4, seed=1)
    return tmp_path / "data"


def _lines(path):
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_labels_split_classes_and_boxes_follow_the_text_files(cub_root):
    folder = cub_root / "CUB_200_2011"
    paths = {int(i): p for i, p in _lines(folder / "images.txt")}
    labels = {int(i): int(c) for i, c in _lines(folder / "image_class_labels.txt")}
    is_train = {int(i): int(s) for i, s in _lines(folder / "train_test_split.txt")}
    boxes = {int(i): [float(v) for v in rest] for i, *rest in _lines(folder / "bounding_boxes.txt")}

    train, test = CUB200(cub_root, "train"), CUB200(cub_root, split="test")
    assert len(train) + len(test) == len(paths) == 12
    assert set(train.image_ids) == {i for i, s in is_train.items() if s == 1}
    assert set(test.image_ids) == {i for i, s in is_train.items() if s == 0}
    assert train.classes == ["Fixture Red Warbler", "Fixture Blue Jay", "Fixture Green Finch"]
    assert train.class_folders[0] == "001.Fixture_Red_Warbler" and train.num_classes == 3
    for ds in (train, test):
        for n, image_id in enumerate(ds.image_ids):
            assert ds.targets[n] == labels[image_id] - 1  # 0-based
            assert ds.paths[n] == folder / "images" / paths[image_id]
            assert ds.boxes[n].tolist() == boxes[image_id]  # (x, y, w, h), original pixels
    image, label = train[0]
    assert image.mode == "RGB" and label == 0
    grey = [n for n, p in enumerate(test.paths) if test.load_image(n).getbands() == ("R", "G", "B")]
    assert len(grey) == len(test)  # the grayscale JPEGs come back as RGB


def test_box_is_the_object(cub_root):
    """The fixture draws its 'bird' inside the box: the box's pixels differ from the background's."""
    ds = CUB200(cub_root, "train")
    img = np.asarray(ds.load_image(0), dtype=float)
    x0, y0, x1, y1 = (int(v) for v in ds.box_xyxy(0))
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    assert np.abs(img[cy, cx] - np.array([110, 110, 110])).max() > 40


def test_root_may_be_the_cub_folder_itself_and_default_root_is_data_home(cub_root, monkeypatch):
    assert CUB200(cub_root / "CUB_200_2011").image_ids == CUB200(cub_root).image_ids
    monkeypatch.setenv("HNCAM_HOME", str(cub_root.parent))
    assert len(CUB200()) == len(CUB200(cub_root))  # default root: $HNCAM_HOME/data


def test_resize_moves_the_box_exactly(cub_root):
    plain = CUB200(cub_root, "test", return_box=True)
    sized = CUB200(cub_root, "test", transform=cub_transforms(train=False, size=224), return_box=True)
    for i in range(len(plain)):
        image, _, box = plain[i]
        x, label, moved = sized[i]
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        sx, sy = 224 / image.width, 224 / image.height
        expected = torch.tensor([box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy])
        assert torch.allclose(moved, expected, atol=1e-3), (i, moved, expected)
        assert torch.equal(box, plain.box_xyxy(i)) and label == plain.targets[i]


def test_flip_and_crop_move_the_box(cub_root):
    from torchvision.transforms import v2

    ds = CUB200(cub_root, "train", return_box=True)
    image, _, box = ds[0]
    W, H = image.size
    flipped = CUB200(cub_root, "train", transform=v2.RandomHorizontalFlip(p=1.0), return_box=True)
    img_f, _, box_f = flipped[0]
    assert torch.allclose(box_f, torch.tensor([W - box[2], box[1], W - box[0], box[3]]))
    assert np.array_equal(np.asarray(img_f), np.asarray(image)[:, ::-1])

    crop = v2.CenterCrop(40)
    cropped = CUB200(cub_root, "train", transform=crop, return_box=True)
    img_c, _, box_c = cropped[0]
    left, top = int(round((W - 40) / 2.0)), int(round((H - 40) / 2.0))
    expected = (box - torch.tensor([left, top, left, top])).clamp(0, 40)  # a box cut by the crop is clamped
    assert img_c.size == (40, 40) and torch.allclose(box_c, expected)

    torch.manual_seed(0)
    train = CUB200(cub_root, "train", transform=cub_transforms(train=True, size=64), return_box=True)
    for i in range(len(train)):
        x, _, b = train[i]
        assert x.shape == (3, 64, 64) and (b >= 0).all() and (b <= 64).all() and (b[2:] > b[:2]).all()


def test_batches_collate_with_boxes(cub_root):
    ds = CUB200(cub_root, "test", transform=cub_transforms(train=False, size=32), return_box=True)
    x, y, boxes = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,) and boxes.shape == (4, 4)


def test_a_transform_that_cannot_move_boxes_is_refused(cub_root):
    from torchvision import transforms as v1

    with pytest.raises(ValueError, match="torchvision.transforms.v2"):
        CUB200(cub_root, transform=v1.ToTensor(), return_box=True)
    CUB200(cub_root, transform=v1.ToTensor())  # without boxes any transform is fine
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        CUB200(cub_root, split="val")


# ------------------------------------------------------------------------------------------ bad input


def test_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        CUB200(tmp_path / "nowhere")
    msg = str(info.value)
    assert "CUB-200-2011 not found" in msg and "is missing" in msg
    assert "data_scripts/get_cub200.py" in msg and "CUB_200_2011.tgz" in msg
    assert str(tmp_path / "nowhere") in msg
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("name", ["bounding_boxes.txt", "train_test_split.txt", "images"])
def test_incomplete_folder_names_the_missing_file(cub_root, name):
    import shutil

    target = cub_root / "CUB_200_2011" / name
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetNotFoundError, match=f"incomplete: it lacks {name}") as info:
        CUB200(cub_root)
    assert info.value.missing == [name] and "get_cub200.py" in str(info.value)


def test_missing_image_is_named(cub_root):
    ds = CUB200(cub_root, "test")
    ds.paths[1].unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        CUB200(cub_root, "test")
    assert str(ds.paths[1].relative_to(cub_root / "CUB_200_2011")) in str(info.value)
    CUB200(cub_root, "train")  # the other split is complete


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_unreadable_image_names_its_path(cub_root, damage):
    ds = CUB200(cub_root, "train")
    path = ds.paths[2]
    data = path.read_bytes()
    path.write_bytes({"garbage": b"<html>not an image</html>", "truncated": data[: len(data) // 3], "empty": b""}[damage])
    with pytest.raises(CorruptImageError) as info:
        ds[2]
    assert str(path) in str(info.value) and "extract" in str(info.value)
    assert isinstance(info.value, OSError)
    ds[0]  # the others still load


def test_root_that_is_a_file(tmp_path):
    archive = tmp_path / "CUB_200_2011.tgz"
    archive.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder.*pass the folder that holds it"):
        CUB200(archive)


def test_damaged_text_file_names_file_and_line(cub_root):
    path = cub_root / "CUB_200_2011" / "bounding_boxes.txt"
    lines = path.read_text().splitlines()
    lines[4] = "5 12.0 oops 3.0 4.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bounding_boxes.txt, line 5: cannot parse"):
        CUB200(cub_root)


def test_image_without_label_is_reported(cub_root):
    path = cub_root / "CUB_200_2011" / "image_class_labels.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    with pytest.raises(ValueError, match=r"image_class_labels.txt has no entry for image id\(s\) 12"):
        CUB200(cub_root)


def test_download_goes_through_the_registry(tmp_path, monkeypatch):
    """download=True fetches CUB_200_2011.tgz through hncam_utils.download (here from a local file)."""
    make_cub_fixture(tmp_path / "src", num_classes=2, per_class=2)
    archive = tmp_path / "CUB_200_2011.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "CUB_200_2011", arcname="CUB_200_2011")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    spec = dataclasses.replace(dl.DATASETS["cub200"], urls=(str(archive),), md5=md5, size=archive.stat().st_size)
    monkeypatch.setitem(dl.DATASETS, "cub200", spec)
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError):
        CUB200(root)
    ds = CUB200(root, "train", download=True)
    assert len(ds) == 2 and (root / "CUB_200_2011.tgz").is_file()
