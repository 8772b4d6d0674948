"""Cluttered Digits: determinism, no leakage of handwriting between splits, format, knobs."""

import numpy as np
import pytest
import torch

from hncam_utils.data import CONFUSABLE, SETTINGS, ClutteredDigits, ClutteredDigitsConfig, make_cluttered_digits, source_split
from hncam_utils.data.cluttered_digits import _upscaled_digits

SMALL = dict(n_train=120, n_test=60)


def test_same_seed_same_data_and_other_seed_other_data():
    cfg = SETTINGS["easy"].replace(**SMALL)
    a, b = make_cluttered_digits(cfg, "train"), make_cluttered_digits(cfg, "train")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    c = make_cluttered_digits(cfg.replace(seed=1), "train")
    assert not torch.equal(a["images"], c["images"])


def test_source_split_is_disjoint_stratified_and_complete():
    train_idx, test_idx = source_split(0)
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert len(train_idx) + len(test_idx) == 1797
    _, labels = _upscaled_digits(16)
    for c in range(10):
        share = np.mean(labels[test_idx] == c) / np.mean(labels == c)
        assert 0.8 < share * len(test_idx) / len(labels) * 3 < 1.2  # about a third of each class in test


@pytest.mark.parametrize("setting", ["easy", "hard", "multilabel"])
def test_no_source_digit_leaks_between_splits(setting):
    train = ClutteredDigits("train", setting, **SMALL)
    test = ClutteredDigits("test", setting, **SMALL)
    used_train = set(train.sources[train.sources >= 0].tolist())
    used_test = set(test.sources[test.sources >= 0].tolist())
    assert used_train and used_test
    assert used_train.isdisjoint(used_test)
    train_pool, test_pool = source_split(train.config.seed)
    assert used_train <= set(train_pool.tolist()) and used_test <= set(test_pool.tolist())


def test_single_label_format_and_boxes_hold_the_digit():
    ds = ClutteredDigits("train", "easy", with_boxes=True, **SMALL)
    x, y, box = ds[0]
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and 0 <= int(y) < 10
    assert float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1
    assert len(ds) == 120 and ds.targets.shape == (120,) and ds.boxes.shape == (120, 4)
    x0, y0, x1, y1 = ds.boxes.T
    assert bool(((x1 > x0) & (y1 > y0) & (x0 >= 0) & (y1 <= 48)).all())
    assert bool(((x1 - x0 <= 16) & (y1 - y0 <= 16)).all())
    # without noise the box holds clearly more ink per pixel than the rest of the canvas
    clean = ClutteredDigits("train", "easy", with_boxes=True, noise=0.0, **SMALL)
    inside = [float(im[0, b[1]:b[3], b[0]:b[2]].mean()) for im, b in zip(clean.images, clean.boxes)]
    assert np.mean(inside) > 3 * float(clean.images.mean())


def test_labels_cover_all_classes():
    ds = ClutteredDigits("train", "easy", n_train=500, n_test=10)
    assert set(ds.targets.tolist()) == set(range(10))


def test_multilabel_mode():
    ds = ClutteredDigits("train", "multilabel", **SMALL)
    assert ds.multi_label and ds.targets.shape == (120, 10) and ds.targets.dtype == torch.float32
    counts = ds.targets.sum(1)
    assert bool(((counts >= 2) & (counts <= 3)).all())
    present = ds.boxes[..., 0] >= 0
    assert torch.equal(present, ds.targets.bool())  # one box per present digit, -1 rows otherwise


def test_hard_setting_uses_confusable_fragments_and_more_noise():
    hard = SETTINGS["hard"]
    assert hard.distractor_classes == "confusable" and hard.n_distractors == 6 and hard.noise > SETTINGS["easy"].noise
    ds = ClutteredDigits("train", "hard", n_train=50, n_test=10)
    _, labels = _upscaled_digits(16)
    for target, row in zip(ds.targets.tolist(), ds.sources.tolist()):
        fragments = [labels[j] for j in row[1:] if j >= 0]
        assert len(fragments) == 6
        assert set(fragments) <= set(CONFUSABLE[target])


def test_knobs_change_the_data():
    base = ClutteredDigitsConfig(**SMALL)
    quiet = make_cluttered_digits(base.replace(noise=0.0, n_distractors=0), "test")["images"]
    busy = make_cluttered_digits(base.replace(noise=0.0, n_distractors=6), "test")["images"]
    assert float(busy.mean()) > float(quiet.mean())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(distractor_classes="nearby"), "distractor_classes"),
        (dict(fragment_size=(10, 30)), "fragment_size"),
        (dict(n_train=-1), "n_train"),
        (dict(test_fraction=1.5), "test_fraction"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClutteredDigitsConfig(**kwargs)


def test_bad_setting_and_split_raise():
    with pytest.raises(ValueError, match="unknown Cluttered Digits setting"):
        ClutteredDigits("train", "medium")
    with pytest.raises(ValueError, match="split"):
        make_cluttered_digits(ClutteredDigitsConfig(**SMALL), "val")


def test_dataset_copies_are_independent():
    a = ClutteredDigits("test", "easy", **SMALL)
    a.images.zero_()
    b = ClutteredDigits("test", "easy", **SMALL)
    assert float(b.images.sum()) > 0
