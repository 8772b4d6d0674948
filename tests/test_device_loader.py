"""DeviceLoader: the whole split on the device, seeded batches, augmentation equal to torchvision's, and
training through fit (resume included)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hncam_utils.data import DeviceLoader
from hncam_utils.models import digits_cnn
from hncam_utils.runtime import seed_everything
from hncam_utils.train import TrainConfig, fit, load_checkpoint


def _images(n=37, c=1, h=12, w=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8), torch.arange(n) % 5


def _batches(loader, epoch=0, seed=None, bs=None):
    return [(x.clone(), y.clone()) for x, y in loader.epoch_batches(epoch, seed, bs)]


def test_every_image_once_per_epoch_normalised():
    x, y = _images()
    loader = DeviceLoader(x, y, batch_size=8, mean=0.5, std=0.25)
    batches = _batches(loader)
    assert [len(b[1]) for b in batches] == [8, 8, 8, 8, 5] and len(loader) == 5 and loader.num_samples == 37
    xs = torch.cat([b[0] for b in batches])
    ys = torch.cat([b[1] for b in batches])
    order = torch.argsort(ys * 1000 + torch.arange(37))  # undo the shuffle via a unique key per image
    inverse = torch.cat([b[0] for b in _batches(loader.replace(shuffle=False))])
    assert torch.allclose(inverse, (x.float() / 255 - 0.5) / 0.25, atol=1e-6)
    # the shuffled epoch holds every image exactly once
    flat = xs.reshape(37, -1)
    ref = inverse.reshape(37, -1)
    matches = (flat[:, None, :] == ref[None, :, :]).all(-1)
    assert torch.equal(matches.sum(0), torch.ones(37, dtype=torch.long))
    assert sorted(ys.tolist()) == sorted(y.tolist()) and order.numel() == 37
    assert len(DeviceLoader(x, y, batch_size=8, drop_last=True)) == 4


def test_same_seed_same_batches_other_epoch_or_seed_other_batches():
    x, y = _images()
    a = DeviceLoader(x, y, batch_size=8, crop=2, flip=True, seed=3)
    b = DeviceLoader(x.clone(), y.clone(), batch_size=8, crop=2, flip=True, seed=3)
    for (xa, ya), (xb, yb) in zip(_batches(a, epoch=1), _batches(b, epoch=1)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(_batches(a, epoch=1)[0][0], _batches(a, epoch=2)[0][0])
    assert not torch.equal(_batches(a, epoch=1, seed=4)[0][0], _batches(a, epoch=1)[0][0])
    a.set_epoch(1)
    assert torch.equal(next(iter(a))[0], _batches(b, epoch=1)[0][0])


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_crop_and_flip_equal_torchvision_with_the_same_draws(pad_mode):
    x, y = _images(n=16, c=3, h=9, w=11)
    loader = DeviceLoader(x, y, batch_size=16, crop=3, pad_mode=pad_mode, flip=True, mean=0.0, std=1 / 255,
                          shuffle=True, seed=7)
    order, shifts, flips = loader.epoch_plan(0)
    got = _batches(loader)[0][0]
    for i in range(16):
        img = x[order[i]].float()
        # torchvision.transforms.RandomCrop(size, padding=p, padding_mode=...) = pad, then cut at (top, left)
        padded = F.pad(img[None], (3, 3, 3, 3), mode=pad_mode)[0]
        top, left = int(shifts[i, 0]) + 3, int(shifts[i, 1]) + 3
        ref = padded[:, top : top + 9, left : left + 11]
        if flips[i]:
            ref = ref.flip(2)
        assert torch.equal(got[i], ref), i
    assert shifts.abs().max() <= 3 and 0 < flips.float().mean() < 1


def test_layouts_channels_last_dtype_and_bad_input():
    x, y = _images(n=6, c=3, h=8, w=8)
    nhwc = DeviceLoader(x.permute(0, 2, 3, 1).numpy(), y.numpy(), shuffle=False, batch_size=6, mean=0, std=1)
    nchw = DeviceLoader(x, y, shuffle=False, batch_size=6, mean=0, std=1, channels_last=True, dtype=torch.float64)
    xa, xb = next(iter(nhwc))[0], next(iter(nchw))[0]
    assert xb.is_contiguous(memory_format=torch.channels_last) and xb.dtype == torch.float64
    assert torch.allclose(xa.double(), xb, atol=1e-6)
    gray = DeviceLoader(x[:, 0], y)
    assert gray.images.shape == (6, 1, 8, 8) and gray.num_classes == 5
    assert gray.mean[0] == pytest.approx(float(x[:, 0].float().mean() / 255), rel=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        DeviceLoader(x.float(), y)
    with pytest.raises(ValueError, match="targets"):
        DeviceLoader(x, y[:3])
    with pytest.raises(ValueError, match="crop"):
        DeviceLoader(x, y, crop=-1)
    with pytest.raises(ValueError, match="reflect padding"):
        DeviceLoader(x, y, crop=8, pad_mode="reflect")
    with pytest.raises(ValueError, match="std"):
        DeviceLoader(x, y, std=0.0, mean=0.0)
    with pytest.raises(TypeError, match=".data/.targets"):
        DeviceLoader.from_dataset([1, 2, 3])


def _fmnist_like(n=96, seed=0):
    from hncam_utils.data.fashion_mnist import _fixture_images
    import numpy as np

    labels = (np.arange(n) % 10).astype(np.uint8)
    imgs = _fixture_images(labels, np.random.default_rng(seed))
    return torch.from_numpy(imgs), torch.from_numpy(labels).long()


CFG = TrainConfig(epochs=3, batch_size=32, loss="hnc_kd", hnc_lambda=0.1, k=3, seed=5, optimizer="sgd", lr=0.05)


def _model(seed=0):
    seed_everything(seed)
    return digits_cnn(width=4)


def test_fit_trains_from_a_device_loader_and_resumes_bit_identically(tmp_path):
    x, y = _fmnist_like()
    train = DeviceLoader(x, y, crop=2, flip=True, mean=0.286, std=0.353)
    test = DeviceLoader(x[:40], y[:40], shuffle=False, mean=0.286, std=0.353)
    ref = _model()
    ref_hist = fit(ref, train, CFG, test_data=test, progress=False)
    assert len(ref_hist["train_acc"]) == 3 and ref_hist["train_hnc"][0] > 0 and "test_acc" in ref_hist

    class Stop(Exception):
        pass

    def stop(epoch, _):
        if epoch == 2:
            raise Stop

    ckpt = tmp_path / "run.pt"
    with pytest.raises(Stop):
        fit(_model(), train, CFG, test_data=test, checkpoint=ckpt, progress=False, callbacks=[stop])
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = _model(seed=11)
    hist = fit(resumed, train, CFG, test_data=test, checkpoint=ckpt, progress=False)
    for (k, va), vb in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k
    assert hist["train_loss"] == ref_hist["train_loss"] and hist["test_acc"] == ref_hist["test_acc"]


def test_fit_refuses_a_model_with_too_few_classes():
    x, y = _fmnist_like(40)
    seed_everything(0)
    with pytest.raises(ValueError, match="10 classes but the model has 4"):
        fit(digits_cnn(num_classes=4, width=4), DeviceLoader(x, y), CFG.replace(epochs=1), progress=False)
