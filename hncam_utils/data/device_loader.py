"""A data loader for small images that lives on the device: no worker processes, no per-image Python.

The whole split is held on the device as ``uint8`` ``(N, C, H, W)`` (Fashion-MNIST's 60,000 images are 47 MB,
CIFAR's 50,000 are 154 MB). Each epoch draws, from one seeded generator on the CPU, a permutation and the
augmentation parameters of every image (one transfer per epoch); each batch is then gathered, augmented and
normalised on the device in a handful of tensor operations:

* **random crop with padding** ``p`` (``crop=p``): the image is shifted by ``(dy, dx)`` drawn uniformly from
  ``[-p, p]^2`` and cut back to ``H x W``, with zeros (``pad_mode="constant"``, the same as a random
  translation) or mirrored pixels (``pad_mode="reflect"``) filling the border; this equals torchvision's
  ``RandomCrop(H, padding=p, padding_mode=...)``;
* **horizontal flip** with probability 1/2 (``flip=True``);
* **normalisation** ``x = (u / 255 - mean) / std`` per channel, in the output ``dtype``, optionally in
  ``channels_last`` memory format.

Seeded: the same ``seed`` and epoch give the same batches, on any device (the random draws are made on the
CPU). The same code runs on CPU and GPU. It knows nothing of networks or losses;
:func:`hncam_utils.train.fit` accepts it in place of a data set (it calls :meth:`DeviceLoader.epoch_batches`
with its own seed and batch size).
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["DeviceLoader"]

Number = Union[float, Sequence[float]]


def _as_nchw(images) -> Tensor:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (0-255) as stored by the data set, got dtype {x.dtype}")
    if x.dim() == 3:
        return x[:, None]
    if x.dim() == 4:
        if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):  # (N, H, W, C), e.g. CIFAR's numpy arrays
            return x.permute(0, 3, 1, 2).contiguous()
        return x.contiguous()
    raise ValueError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {tuple(x.shape)}")


class DeviceLoader:
    """Batches of a whole split kept on one device as ``uint8``, shuffled, augmented and normalised there.

    Args:
        images: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` uint8 images (tensor or array), e.g.
            ``torchvision.datasets.FashionMNIST(...).data``.
        targets: ``(N,)`` class indices (or ``(N, C)`` multi-hot labels).
        batch_size: images per batch (:func:`~hncam_utils.train.fit` passes its own).
        shuffle: a new random order every epoch.
        crop: padding ``p`` of the random crop (0: none); see the module docstring.
        pad_mode: ``"constant"`` (zeros, i.e. a random translation) or ``"reflect"``.
        flip: random horizontal flips.
        mean, std: per-channel normalisation in ``[0, 1]`` units (a float or one value per channel);
            default: the statistics of ``images``.
        seed: the default seed of :meth:`__iter__` (``fit`` passes its own).
        device: where the images live (default: where ``images`` are).
        dtype: the dtype of the batches (``torch.float32``; ``bfloat16`` / ``float16`` on a GPU halves the
            traffic).
        channels_last: return batches in ``channels_last`` memory format (faster convolutions on CUDA).
        drop_last: drop the last, incomplete batch.

    Raises:
        TypeError: images that are not uint8.
        ValueError: bad shapes, a negative ``crop``, an unknown ``pad_mode``, non-positive ``std``,
            ``reflect`` padding wider than the image.

    Example::

        train = load_fashion_mnist("train")
        loader = DeviceLoader(train.data, train.targets, batch_size=256, crop=2, flip=True, device="cuda")
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            for x, y in loader:      # x: (256, 1, 28, 28) float32 on the GPU, normalised
                ...
    """

    def __init__(
        self,
        images,
        targets,
        *,
        batch_size: int = 128,
        shuffle: bool = True,
        crop: int = 0,
        pad_mode: str = "constant",
        flip: bool = False,
        mean: Optional[Number] = None,
        std: Optional[Number] = None,
        seed: int = 0,
        device: Optional[Union[str, torch.device]] = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        drop_last: bool = False,
        classes: Optional[Sequence[str]] = None,
    ) -> None:
        x = _as_nchw(images)
        y = torch.as_tensor(np.asarray(targets) if not isinstance(targets, Tensor) else targets)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} targets")
        if x.shape[0] == 0:
            raise ValueError("no images: the split is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if crop < 0:
            raise ValueError(f"crop (the padding of the random crop) must be >= 0, got {crop}")
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if pad_mode == "reflect" and crop >= min(x.shape[-2:]):
            raise ValueError(f"reflect padding {crop} must be smaller than the image ({tuple(x.shape[-2:])})")
        if not y.dtype.is_floating_point:
            y = y.long()
        channels = x.shape[1]
        if mean is None or std is None:  # per-channel statistics in chunks (no float copy of the whole split)
            total = torch.zeros(channels, dtype=torch.float64)
            squares = torch.zeros(channels, dtype=torch.float64)
            for chunk in x.split(4096):
                c = chunk.to(torch.float64) / 255
                total += c.sum(dim=(0, 2, 3))
                squares += c.pow(2).sum(dim=(0, 2, 3))
            count = x.shape[0] * x.shape[2] * x.shape[3]
            m = total / count
            mean = m.tolist() if mean is None else mean
            std = (squares / count - m.pow(2)).clamp_min(0).sqrt().tolist() if std is None else std
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean_t.numel() == 1:
            mean_t = mean_t.expand(channels).clone()
        if std_t.numel() == 1:
            std_t = std_t.expand(channels).clone()
        if mean_t.numel() != channels or std_t.numel() != channels:
            raise ValueError(f"mean and std need 1 or {channels} values, got {mean_t.numel()} and {std_t.numel()}")
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be > 0, got {std_t.tolist()}")
        dev = torch.device(device) if device is not None else x.device
        self.images = x.to(dev)
        self.targets = y.to(dev)
        self.num_classes = int(y.shape[1]) if y.dim() == 2 else int(y.max()) + 1
        self.classes = list(classes) if classes is not None else None
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.crop = int(crop)
        self.pad_mode = pad_mode
        self.flip = bool(flip)
        self.mean = tuple(mean_t.tolist())
        self.std = tuple(std_t.tolist())
        self.seed = int(seed)
        self.dtype = dtype
        self.channels_last = bool(channels_last)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        # x_norm = u * scale + shift, with u the uint8 value
        self._scale = (1.0 / (255.0 * std_t)).to(dev, dtype)[None, :, None, None]
        self._shift = (-mean_t / std_t).to(dev, dtype)[None, :, None, None]

    # ------------------------------------------------------------------------------------ construction

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> "DeviceLoader":
        """From a torchvision data set that keeps its images in memory as ``.data`` and ``.targets``
        (MNIST family, CIFAR): no per-image Python, no transform."""
        if not hasattr(dataset, "data") or not hasattr(dataset, "targets"):
            raise TypeError(f"{type(dataset).__name__} has no .data/.targets arrays; build DeviceLoader(images, "
                            "targets) from uint8 tensors yourself")
        kwargs.setdefault("classes", getattr(dataset, "classes", None))
        return cls(dataset.data, dataset.targets, **kwargs)

    def replace(self, **changes) -> "DeviceLoader":
        """A loader with some settings changed (``batch_size``, ``shuffle``, ``crop``, ``flip``...), sharing the
        images when the device does not change (e.g. ``loader.replace(shuffle=False, crop=0, flip=False)`` for
        evaluation)."""
        settings = dict(batch_size=self.batch_size, shuffle=self.shuffle, crop=self.crop, pad_mode=self.pad_mode,
                        flip=self.flip, mean=self.mean, std=self.std, seed=self.seed, device=self.device,
                        dtype=self.dtype, channels_last=self.channels_last, drop_last=self.drop_last,
                        classes=self.classes)
        settings.update(changes)
        return DeviceLoader(self.images, self.targets, **settings)

    def to(self, device: Union[str, torch.device]) -> "DeviceLoader":
        """This loader on ``device`` (itself when already there)."""
        dev = torch.device(device)
        if dev.type == self.device.type and (dev.index is None or dev.index == self.device.index):
            return self
        return self.replace(device=dev)

    # ---------------------------------------------------------------------------------------- iteration

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def num_samples(self) -> int:
        """Images in the split."""
        return int(self.images.shape[0])

    def num_batches(self, batch_size: Optional[int] = None) -> int:
        bs = batch_size or self.batch_size
        n = self.num_samples
        return n // bs if self.drop_last else -(-n // bs)

    def __len__(self) -> int:
        """Batches per epoch (like a ``DataLoader``)."""
        return self.num_batches()

    def set_epoch(self, epoch: int) -> None:
        """Which epoch :meth:`__iter__` serves next (each epoch has its own order and augmentation)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor]]:
        return self.epoch_batches(self.epoch, self.seed, self.batch_size)

    def epoch_plan(self, epoch: int = 0, seed: Optional[int] = None) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """The random draws of one epoch, made on the CPU from ``seed * 1_000_003 + epoch``: the order
        ``(N,)``, the crop shifts ``(N, 2)`` in ``[-crop, crop]`` (or ``None``) and the flips ``(N,)`` (or
        ``None``), indexed by position in the epoch."""
        seed = self.seed if seed is None else int(seed)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + int(epoch))
        n = self.num_samples
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        shifts = torch.randint(-self.crop, self.crop + 1, (n, 2), generator=gen) if self.crop else None
        flips = (torch.rand(n, generator=gen) < 0.5) if self.flip else None
        return order, shifts, flips

    def epoch_batches(
        self,
        epoch: int = 0,
        seed: Optional[int] = None,
        batch_size: Optional[int] = None,
    ) -> Iterator[Tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches of one epoch on the loader's device: ``x`` normalised in ``dtype``.

        Args:
            epoch: the epoch (with ``seed``, it fixes order and augmentation).
            seed: default: the loader's ``seed``.
            batch_size: default: the loader's ``batch_size``.
        """
        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {bs}")
        order, shifts, flips = self.epoch_plan(epoch, seed)
        dev = self.device
        nonblocking = dev.type == "cuda"
        order = order.to(dev, non_blocking=nonblocking)
        shifts = shifts.to(dev, non_blocking=nonblocking) if shifts is not None else None
        flips = flips.to(dev, non_blocking=nonblocking) if flips is not None else None
        n = self.num_samples
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            end = min(start + bs, stop)
            idx = order[start:end]
            x = self.images[idx]
            if shifts is not None:
                x = self._shift_images(x, shifts[start:end])
            if flips is not None:
                x = torch.where(flips[start:end, None, None, None], x.flip(3), x)
            yield self.normalise(x), self.targets[idx]

    def normalise(self, x: Tensor) -> Tensor:
        """uint8 ``(B, C, H, W)`` -> ``(x / 255 - mean) / std`` in ``dtype`` (and ``channels_last``)."""
        out = torch.addcmul(self._shift, x.to(self.dtype), self._scale)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def _shift_images(self, x: Tensor, shifts: Tensor) -> Tensor:
        """Random crop of the padded image = shift by ``-(dy, dx)``: output pixel ``(i, j)`` reads input pixel
        ``(i + dy, j + dx)``; outside the image: 0 (constant) or the mirrored pixel (reflect)."""
        b, c, h, w = x.shape
        rows = shifts[:, 0, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = shifts[:, 1, None] + torch.arange(w, device=x.device)  # (B, W)
        if self.pad_mode == "reflect":
            rows = torch.where(rows < 0, -rows, torch.where(rows >= h, 2 * (h - 1) - rows, rows))
            cols = torch.where(cols < 0, -cols, torch.where(cols >= w, 2 * (w - 1) - cols, cols))
            valid = None
        else:
            valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
            rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
        batch = torch.arange(b, device=x.device)[:, None, None]
        out = x[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        if valid is not None:
            out = out * valid[..., None].to(out.dtype)
        return out.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return (f"DeviceLoader({self.num_samples} images {tuple(self.images.shape[1:])} uint8 on {self.device}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, crop={self.crop} ({self.pad_mode}), "
                f"flip={self.flip}, seed={self.seed})")
