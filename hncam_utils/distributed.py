"""``python -m hncam_utils train``: the course's recipes on one device or under ``torchrun`` with DDP.

One process (``python -m hncam_utils train ...``) or several (``torchrun --nproc-per-node=N -m hncam_utils
train ...``) run the same code: PyTorch's :class:`~torch.nn.parallel.DistributedDataParallel` (DDP) with the
``nccl`` backend on GPUs and ``gloo`` on CPUs, nothing home-made. The loss is the package's
``CE(logits, y) + lambda * HNC`` (:class:`hncam_utils.losses.HNCLoss`, top-``k`` path), the models are
:mod:`hncam_utils.models` (torchvision ResNets through :class:`~hncam_utils.models.TorchvisionCAM`,
:func:`~hncam_utils.models.cifar_resnet18`, :func:`~hncam_utils.models.digits_cnn`), the recipe is a
:class:`hncam_utils.train.TrainConfig`, and checkpoints go through :func:`hncam_utils.train.save_checkpoint`
(atomic) and :func:`~hncam_utils.train.load_checkpoint` (``weights_only=True``).

What makes several processes right:

* every rank uses the same ``--seed``: the same initial weights (DDP also copies rank 0's weights when it
  wraps the model) and the same shuffled order, split by :class:`~torch.utils.data.DistributedSampler`, whose
  ``set_epoch`` is called before every epoch;
* ``--batch-size`` is the *global* batch (the official recipe's 256): each of the ``W`` processes takes
  ``batch / W`` images per step, so a run means the same thing on 1 or 8 GPUs;
* the random augmentation of image ``i`` in epoch ``e`` is drawn from a generator seeded by
  ``(seed, e, i)``: it does not depend on the rank, the DataLoader worker or an interruption;
* only rank 0 writes checkpoints (``model.module.state_dict()``, so a single-process run loads them), logs and
  shows progress bars; the other ranks wait at a barrier;
* evaluation shards the validation set without padding (``DistributedSampler`` would repeat images to even
  out the ranks) and sums correct counts and losses over the ranks, so each image counts exactly once; BatchNorm
  buffers are copied from rank 0 first, so the numbers are those of the saved weights;
* ``--checkpoint-every STEPS`` also checkpoints inside an epoch, and a restarted run continues from the exact
  position: epoch, step, the sampler's order, optimizer, scheduler, grad-scaler and RNG state, and each rank's
  partial epoch sums. A run killed mid-epoch and restarted with the same command ends with the same weights as
  an uninterrupted one (tested with 1 process and with 2 gloo processes).

Bad input (a world larger than the data set, a rank that cannot reach the others within ``--dist-timeout``, an
``--out`` that is not writable, contradictory options) ends every rank with exit status 2 and one line on
rank 0 that names the problem and the fix, without a traceback. Under ``torchrun`` the launcher itself then
exits with status 1 and prints its failure summary (with a traceback of its own process, which no worker can
turn off); the workers hand it the same line, so the summary's root cause names the problem.

What was tested and what was not: the tests run 1 process and 2 ``gloo`` processes on one CPU machine
(``torchrun --standalone`` and hand-started ranks), with an exact resume after a kill. ``nccl``, CUDA devices,
mixed precision under DDP and several machines were not run here (no GPU): the backend, the device of each
process (``cuda:LOCAL_RANK``) and the arguments given to DDP are checked with a faked torchrun environment.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ._checks import check_bool, check_choice, check_int, check_module
from .models import GAPClassifier, TorchvisionCAM, cifar_resnet18, digits_cnn, unwrap
from .runtime import get_device, seed_everything
from .train import (
    TrainConfig,
    _amp_dtype,
    _make_optimizer,
    _make_scheduler,
    _train_step,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "DATASETS",
    "MODEL_NAMES",
    "OFFICIAL_LAMBDA",
    "UsageError",
    "World",
    "ShardSampler",
    "ResumableDistributedSampler",
    "SeededAugmentation",
    "add_arguments",
    "build_datasets",
    "build_cam_model",
    "official_lambda",
    "load_model",
    "init_world",
    "wrap_ddp",
    "run",
    "main",
    "EPILOG",
]

DATASETS = ("cifar10", "cifar100", "cub200", "imagefolder")
TORCHVISION_MODELS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
)
SMALL_MODELS = ("cifar_resnet18", "digits_cnn")
MODEL_NAMES = SMALL_MODELS + TORCHVISION_MODELS
CHECKPOINT = "checkpoint.pt"
FORMAT = "hncam-train/1"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

#: The official ImageNet lambdas (GuoleiSun/HNC_loss): mse 0.07 (ResNet-101 and -152), kd 0.0065 (ResNet-101),
#: 0.0048 (ResNet-152). Used as the default ``--hnc-lambda``; other data sets should tune it.
OFFICIAL_LAMBDA = {"hnc_mse": {"resnet101": 0.07, "resnet152": 0.07}, "hnc_kd": {"resnet101": 0.0065, "resnet152": 0.0048}}

EPILOG = """\
One device:
  python -m hncam_utils train --data cifar10 --model cifar_resnet18 --epochs 30 --batch-size 128 \\
      --optimizer sgd --lr 0.1 --schedule cosine --loss hnc_kd --k 3 --hnc-lambda 0.1 --out runs/c10-kd

The official ImageNet recipe (ResNet-101 from scratch, k = 100, official lambdas, SGD lr 0.1 x batch/256,
momentum 0.9, weight decay 1e-4, batch 256 over 8 GPUs, 120 epochs, lr x0.1 every 30; these are the defaults):
  torchrun --standalone --nproc-per-node=8 -m hncam_utils train --data imagefolder \\
      --data-root /data/imagenet --model resnet101 --loss hnc_kd --k 100 --hnc-lambda 0.0065 \\
      --epochs 120 --batch-size 256 --lr 0.1 --out runs/in1k-r101-kd --checkpoint-every 1000
  (--loss hnc_mse --hnc-lambda 0.07 for the mse variant; ResNet-152 kd: --model resnet152 --hnc-lambda 0.0048)

Several machines (the same command on each of the 2 nodes; HOST:29400 reachable from all of them, the data
at the same --data-root on every node, --out on shared storage; not --standalone):
  torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 --rdzv-id=in1k \\
      -m hncam_utils train --data imagefolder --data-root /data/imagenet --model resnet101 --loss hnc_kd \\
      --k 100 --hnc-lambda 0.0065 --epochs 120 --batch-size 256 --lr 0.1 --out /shared/runs/in1k-r101-kd \\
      --checkpoint-every 1000
  (--batch-size is the global batch: the official 256 over 16 GPUs is 16 images per GPU; for 32 per GPU use
  --batch-size 512 --lr 0.2, which is no longer the official recipe)

Restart the same command to resume from --out/checkpoint.pt (mid-epoch with --checkpoint-every).
Exit status: 0 done, 1 failure during training (the checkpoint is kept), 2 bad input (one line on rank 0).
Under torchrun, torchrun exits with 1 and prints a failure summary whose root cause repeats that line.
Tested on CPUs with 2 gloo processes; NCCL, GPUs and several machines were not run by the tests.
"""


class UsageError(Exception):
    """Bad input: the message names the problem and the fix; the command exits with status 2."""


class _PeerError(UsageError):
    """This rank cannot reach the others (or lost them): printed by whichever rank sees it."""


# ------------------------------------------------------------------------------------------ the world


@dataclass
class World:
    """This process's place in the run: ``rank`` of ``size`` processes, its ``device`` and ``backend``."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer; launch with torchrun, "
                         "which sets it") from None


def _env_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def init_world(device: Optional[str], timeout_s: float) -> World:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, pick the device and start the process group.

    ``nccl`` on CUDA (device ``cuda:LOCAL_RANK``), ``gloo`` on CPU, ``timeout_s`` for every collective and for
    reaching the other ranks. A barrier right after start proves that all ranks are there.

    Raises:
        UsageError: a timeout that is not a number > 0, a device this machine lacks, more local ranks than GPUs,
            DDP on MPS, or the other ranks not reachable within ``timeout_s`` (with the address tried and the fix).
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < math.inf:
        raise UsageError(f"--dist-timeout must be a number of seconds > 0, got {timeout_s!r}; e.g. 600")
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank if size > 1 else 0)
    try:
        dev = get_device(device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if size <= 1:
        return World(0, 1, 0, dev, None)
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise UsageError(f"LOCAL_RANK {local} but this machine has {count} GPU(s); use --nproc-per-node={count} "
                             "or fewer")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif dev.type == "cpu":
        backend = "gloo"
    else:
        raise UsageError(f"DistributedDataParallel has no backend for {dev.type}; use --device cpu (gloo) or CUDA "
                         "GPUs (nccl), or run a single process")
    addr = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise UsageError("WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set; launch with torchrun "
                         "(it sets them) or set them to rank 0's address and a free port")
    world = World(rank, size, local, dev, backend)
    # c10d logs each failed connection attempt with a C++ stack dump on file descriptor 2: hold it back, replay
    # it when the start succeeds, keep it in a file when it fails (the user gets one line that says what to do)
    with tempfile.TemporaryFile() as captured:
        try:
            with _stderr_to(captured):
                kwargs: Dict[str, Any] = {"timeout": datetime.timedelta(seconds=timeout_s), "rank": rank,
                                          "world_size": size}
                if backend == "nccl":
                    kwargs["device_id"] = dev
                dist.init_process_group(backend, **kwargs)
                dist.barrier()
        except Exception as exc:  # DistStoreError, DistNetworkError, RuntimeError: "the others are not there"
            _destroy()
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            log = Path(tempfile.gettempdir()) / f"hncam-train-rank{rank}-c10d.log"
            captured.seek(0)
            try:
                log.write_bytes(captured.read())
                where = f"; c10d's log: {log}"
            except OSError:  # pragma: no cover
                where = ""
            raise _PeerError(
                f"rank {rank} of {size} could not reach the other processes at {addr} within {timeout_s:g} s "
                f"({first}); check that every node runs the same torchrun command with the same --rdzv-endpoint / "
                f"MASTER_ADDR and MASTER_PORT, that the port is open between the machines, or raise --dist-timeout"
                f"{where}"
            ) from None
        captured.seek(0)
        replay = captured.read()
        if replay:
            sys.stderr.write(replay.decode(errors="replace"))
    return world


@contextlib.contextmanager
def _stderr_to(file) -> Iterator[None]:
    """Point file descriptor 2 (what C++ code writes to) at ``file`` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # pragma: no cover - best effort on the way out
            pass


def _agree(world: World, error: Optional[str]) -> Optional[str]:
    """All ranks learn whether any rank hit bad input; returns the message of the lowest such rank."""
    if not world.distributed:
        return error
    errors: List[Optional[str]] = [None] * world.size
    dist.all_gather_object(errors, error)
    for rank, message in enumerate(errors):
        if message:
            return message if rank == 0 else f"{message} (on rank {rank})"
    return None


def _barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


# ------------------------------------------------------------------------------------------ samplers


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + W, rank + 2W, ... < n``: every index on exactly one rank, none repeated.

    For evaluation; :class:`~torch.utils.data.DistributedSampler` would pad the ranks to equal length with
    repeated images, which then count twice.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        n = check_int("n", n, min=0, fix="the size of the data set, len(data)")
        world_size = check_int("world_size", world_size, min=1)
        rank = check_int("rank", rank, min=0, max=world_size - 1, fix=f"a rank of the {world_size} process(es)")
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


class ResumableDistributedSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` that can start part-way through an epoch.

    ``set_epoch(e)`` fixes the epoch's order (the same on every rank, from ``seed + e``); ``set_start(i)``
    skips this rank's first ``i`` indices of that order, so a resumed run sees exactly the batches that an
    uninterrupted run would have seen next. The start applies to one epoch: ``set_epoch`` resets it to 0.
    """

    start = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = check_int("start", start, min=0, max=self.num_samples,
                               fix=f"this rank has {self.num_samples} indices per epoch")

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


class SeededAugmentation(Dataset):
    """Wrap a data set so that item ``i`` in epoch ``e`` is drawn under ``torch.manual_seed(f(seed, e, i))``.

    Random transforms (torchvision's draw from torch's global generator) then give the same augmentation of an
    image whatever rank, DataLoader worker or resumed run loads it. The global generator of the caller is left
    as it was. Set ``epoch`` before creating each epoch's DataLoader iterator.
    """

    def __init__(self, base: Dataset, seed: int) -> None:
        if not (hasattr(base, "__len__") and hasattr(base, "__getitem__")):
            raise TypeError(f"base must be a map-style data set (with __len__ and __getitem__), got "
                            f"{type(base).__name__}; pass the data set itself, not a DataLoader")
        self.base, self.seed, self.epoch = base, check_int("seed", seed, min=0), 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def item_seed(self, index: int) -> int:
        return ((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + int(index)) % (2**63 - 1)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.item_seed(index))
            return self.base[index]


# ------------------------------------------------------------------------------------------ data


def _transforms(data: str, image_size: int, hflip: bool):
    from torchvision import transforms as T

    from .data import IMAGENET_MEAN, IMAGENET_STD

    if data.startswith("cifar"):
        mean, std = CIFAR_MEAN, CIFAR_STD
        train = [T.RandomCrop(image_size, padding=4)] if image_size == 32 else [T.Resize(image_size), T.RandomCrop(image_size, padding=image_size // 8)]
        test = [] if image_size == 32 else [T.Resize(image_size)]
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        train = [T.RandomResizedCrop(image_size)]
        test = [T.Resize(int(round(image_size * 256 / 224))), T.CenterCrop(image_size)]
    if hflip:
        train.append(T.RandomHorizontalFlip())
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(train + tail), T.Compose(test + tail)


def _image_folder(root: Path, train_tf, test_tf):
    from torchvision.datasets import ImageFolder

    train_dir = root / "train"
    val_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if not train_dir.is_dir():
        raise UsageError(f"--data imagefolder needs {train_dir}/<class>/<image> (and optionally {root}/val/<class>/...); "
                         "point --data-root at the folder that holds train/ (for ImageNet, val/ sorted into class "
                         "folders)")
    try:
        train = ImageFolder(str(train_dir), transform=train_tf)
        val = ImageFolder(str(val_dir), transform=test_tf) if val_dir is not None else None
    except (FileNotFoundError, OSError) as exc:
        raise UsageError(f"cannot read the image folder under {root}: {exc}; every class folder needs at least one "
                         "image (.jpg, .png, ...)") from None
    if val is not None and val.classes != train.classes:
        missing = sorted(set(train.classes) ^ set(val.classes))[:5]
        raise UsageError(f"{val_dir} and {train_dir} have different class folders (e.g. {missing}); both need the "
                         "same class folders")
    return train, val, list(train.classes)


def _one_line(message: str) -> str:
    """A multi-line message from a data set (problem, then how to fix it) as one line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def build_datasets(
    data: str, root: Optional[Path], image_size: int, hflip: bool
) -> Tuple[Dataset, Optional[Dataset], List[str]]:
    """The training set (random augmentation), the evaluation set (or ``None``) and the class names.

    * ``imagefolder``: ``root/train/<class>/*`` and ``root/val/<class>/*`` (or ``test/``), ImageNet-style
      transforms: ``RandomResizedCrop(image_size)``; evaluation ``Resize(image_size * 256/224)`` +
      ``CenterCrop(image_size)``.
    * ``cifar10``/``cifar100``: :func:`hncam_utils.data.load_cifar` (torchvision's data sets, MD5-checked, never
      downloaded here; see ``data_scripts/get_cifar.py``), ``RandomCrop(32, padding=4)`` + flips.
    * ``cub200``: :class:`hncam_utils.data.CUB200` (official ``train``/``test`` split) with
      :func:`hncam_utils.data.cub_transforms` (resize to ``image_size * 8/7``, random crop, flip; test: resize).

    Raises:
        UsageError: a missing or malformed data folder (with where to get it).
        ValueError / TypeError: an unknown ``data``, an ``image_size`` below 1, an ``hflip`` that is not a bool.
    """
    check_choice("data", data, DATASETS)
    image_size = check_int("image_size", image_size, min=1, fix="e.g. 32 for CIFAR, 224 for ImageNet-style folders")
    hflip = check_bool("hflip", hflip)
    train_tf, test_tf = _transforms(data, image_size, hflip)
    if data == "imagefolder":
        if root is None:
            raise UsageError("--data imagefolder needs --data-root DIR holding train/<class>/<image> and val/<class>/<image>")
        return _image_folder(Path(root), train_tf, test_tf)
    from .data import CUB200, cub_transforms, load_cifar

    if data in ("cifar10", "cifar100"):
        try:
            train = load_cifar(data, root, train=True, transform=train_tf)
            test = load_cifar(data, root, train=False, transform=test_tf)
        except (OSError, ValueError) as exc:  # DatasetNotFoundError, NotADirectoryError, ChecksumError
            raise UsageError(_one_line(str(exc))) from None
        return train, test, list(train.classes)
    if data == "cub200":
        try:
            train = CUB200(root, "train", transform=cub_transforms(True, image_size))
            test = CUB200(root, "test", transform=cub_transforms(False, image_size))
        except (OSError, ValueError) as exc:  # DatasetNotFoundError, NotADirectoryError, a damaged file
            raise UsageError(_one_line(str(exc))) from None
        return train, test, list(train.classes)
    raise UsageError(f"unknown --data {data!r}; choose one of {', '.join(DATASETS)}")


# ------------------------------------------------------------------------------------------ models


def _pretrained_weights(name: str):
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


def _check_model_options(name: str, pretrained: bool, width: Optional[int]) -> None:
    if name not in MODEL_NAMES:
        raise UsageError(f"unknown --model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if width is not None and name != "digits_cnn":
        raise UsageError(f"--width applies to digits_cnn only; drop it for {name}")
    if pretrained and name in SMALL_MODELS:
        raise UsageError(f"--model {name} has no pretrained weights; drop --pretrained or choose a torchvision model "
                         f"({', '.join(TORCHVISION_MODELS[:5])}, ...)")


def build_cam_model(name: str, num_classes: int, pretrained: bool = False, width: Optional[int] = None) -> GAPClassifier:
    """A CAM-ready model by name: ``cifar_resnet18``, ``digits_cnn`` (3 input channels, ``width``) or a
    torchvision ResNet-family model (``resnet101``...) wrapped in :class:`~hncam_utils.models.TorchvisionCAM`.

    ``pretrained`` loads torchvision's default ImageNet weights and, when ``num_classes != 1000``, replaces the
    ``fc`` layer by a new one (freshly initialised).

    Raises:
        UsageError: an unknown name, ``pretrained`` for a model without weights, ``width`` for a model that has
            no such setting, or pretrained weights that cannot be had (with where to put the file).
    """
    check_bool("pretrained", pretrained)
    _check_model_options(name, pretrained, width)
    if name == "cifar_resnet18":
        return cifar_resnet18(num_classes)
    if name == "digits_cnn":
        return digits_cnn(num_classes, in_channels=3, width=16 if width is None else width)
    from torchvision.models import get_model

    if not pretrained:
        return TorchvisionCAM(get_model(name, weights=None, num_classes=num_classes))
    weights = _pretrained_weights(name)
    try:
        model = get_model(name, weights=weights)
    except Exception as exc:  # URLError, OSError, RuntimeError (corrupt file): the download did not work
        filename = os.path.basename(weights.url)
        where = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise UsageError(f"could not get the pretrained weights of {name} ({type(exc).__name__}: {exc}); download "
                         f"{weights.url} to {where} (or set TORCH_HOME), or drop --pretrained") from None
    if model.fc.out_features != num_classes:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return TorchvisionCAM(model)


def official_lambda(loss: str, model: str) -> float:
    """The official ImageNet ``lambda`` for ``loss`` (``hnc_mse``/``hnc_kd``), ResNet-101's for other models.

    Raises:
        ValueError: a loss without an HNC term (``"ce"`` has no lambda).
    """
    check_choice("loss", loss, tuple(OFFICIAL_LAMBDA), fix="plain CE ('ce') has no HNC term, so no lambda")
    table = OFFICIAL_LAMBDA[loss]
    return table.get(model, table["resnet101"])


# ------------------------------------------------------------------------------------------ arguments


def _rank0_error(parser: argparse.ArgumentParser) -> Callable[[str], None]:
    def error(message: str) -> None:
        if _env_rank() == 0:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    return error


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` command's options (argparse errors print on rank 0 only)."""
    p.error = _rank0_error(p)  # type: ignore[method-assign]
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=DATASETS, required=True, help="data set")
    g.add_argument("--data-root", type=Path, default=None,
                   help="imagefolder: the folder holding train/ and val/ (class folders); cifar/cub: torchvision's "
                        "root (default: $HNCAM_HOME/data or ~/.cache/hncam/data)")
    g.add_argument("--image-size", type=int, default=None, help="training crop (default: 32 for CIFAR, 224 otherwise)")
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: on for CIFAR, off for imagefolder as in the official "
                        "ImageNet code; CUB always uses hncam_utils.data.cub_transforms, which flip)")
    g.add_argument("--workers", type=int, default=None, help="DataLoader workers per process (default: 4 on CUDA, else 0)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, choices=MODEL_NAMES,
                   help="default: cifar_resnet18 for CIFAR, resnet50 for CUB, resnet101 for imagefolder")
    g.add_argument("--pretrained", action="store_true", help="start from torchvision's ImageNet weights (torchvision models)")
    g.add_argument("--width", type=int, default=None, help="channels of digits_cnn's first stage (a small test network)")
    g = p.add_argument_group("recipe (defaults: the official ImageNet recipe)")
    g.add_argument("--epochs", type=int, default=120)
    g.add_argument("--batch-size", type=int, default=256, help="global batch, split over the processes (default 256)")
    g.add_argument("--lr", type=float, default=None, help="default: 0.1 x batch/256 (SGD), 1e-3 x batch/256 (AdamW)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--schedule", choices=["step", "cosine", "onecycle", "constant"], default="step")
    g.add_argument("--step-size", type=int, default=30, help="epochs between lr drops (step schedule)")
    g.add_argument("--gamma", type=float, default=0.1, help="lr factor at each drop (step schedule)")
    g.add_argument("--loss", choices=["ce", "hnc_mse", "hnc_kd"], default="ce")
    g.add_argument("--k", type=int, default=None, help="top-k negatives per image (default: min(100, classes - 1))")
    g.add_argument("--hnc-lambda", type=float, default=None,
                   help="weight of the HNC term (default: the official ImageNet value, mse 0.07, kd 0.0065; "
                        "0.0048 for kd on resnet152)")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="mixed precision on CUDA")
    g.add_argument("--seed", type=int, default=0, help="the same on every rank: initial weights and data order")
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt and history.json (shared storage "
                                                          "for several machines)")
    g.add_argument("--device", default=None, help="cuda, cpu or mps (default: auto; under torchrun cuda:LOCAL_RANK)")
    g.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS optimizer steps inside an epoch (exact mid-epoch resume)")
    g.add_argument("--eval-batch-size", type=int, default=None, help="per process (default: the per-process batch)")
    g.add_argument("--dist-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="give up when the other processes cannot be reached (or stop answering) for this long")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fix_defaults(args: argparse.Namespace) -> Dict[str, Any]:
    """Resolve the defaults that depend on other options; check what argparse cannot. Returns notes to print."""
    notes: Dict[str, Any] = {}
    if args.model is None:
        args.model = {"cifar10": "cifar_resnet18", "cifar100": "cifar_resnet18", "cub200": "resnet50"}.get(args.data, "resnet101")
    if args.image_size is None:
        args.image_size = 32 if args.data.startswith("cifar") else 224
    if args.hflip is None:
        args.hflip = args.data != "imagefolder"
    for name in ("epochs", "batch_size", "image_size", "step_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be at least 1 step, got {args.checkpoint_every}; leave it out "
                         "to checkpoint at the end of each epoch only")
    if args.width is not None and args.width < 1:
        raise UsageError(f"--width must be at least 1, got {args.width}")
    if args.dist_timeout <= 0:
        raise UsageError(f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}")
    if args.lr is None:
        args.lr = (0.1 if args.optimizer == "sgd" else 1e-3) * args.batch_size / 256
        notes["lr"] = f"lr {args.lr:g} = {'0.1' if args.optimizer == 'sgd' else '1e-3'} x {args.batch_size}/256"
    if args.loss == "ce":
        ignored = [o for o, v in (("--k", args.k), ("--hnc-lambda", args.hnc_lambda)) if v is not None]
        if ignored:
            notes["ignored"] = f"note: {' and '.join(ignored)} ignored with --loss ce"
    elif args.hnc_lambda is None:
        args.hnc_lambda = official_lambda(args.loss, args.model)
        notes["lambda"] = f"lambda {args.hnc_lambda:g} (official ImageNet value)"
    return notes


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"--out {out} is not a writable folder ({exc.strerror or exc}); choose a folder you can "
                         "write to") from None


# ------------------------------------------------------------------------------------------ the run


@dataclass
class _Setup:
    config: TrainConfig
    train_set: SeededAugmentation
    val_set: Optional[Dataset]
    classes: List[str]
    settings: Dict[str, Any]
    state: Optional[Dict[str, Any]]
    notes: Dict[str, Any]


def _settings(args: argparse.Namespace, config: TrainConfig, num_classes: int) -> Dict[str, Any]:
    """What decides the result of a run (a resumed run must match it)."""
    cfg = config.to_dict()
    for key in ("num_workers", "eval_batch_size"):
        cfg.pop(key)
    return {"data": args.data, "model": args.model, "pretrained": bool(args.pretrained), "width": args.width,
            "image_size": args.image_size, "hflip": bool(args.hflip), "num_classes": num_classes, **cfg}


def _setup(args: argparse.Namespace, world: World) -> _Setup:
    notes = _fix_defaults(args)
    if args.batch_size % world.size:
        raise UsageError(f"--batch-size {args.batch_size} is the global batch and must split evenly over the "
                         f"{world.size} processes; use a multiple of {world.size}, e.g. "
                         f"{max(world.size, args.batch_size // world.size * world.size)}")
    if world.main:
        _check_out(args.out)
    train, val, classes = build_datasets(args.data, args.data_root, args.image_size, args.hflip)
    n_train = len(train)  # type: ignore[arg-type]
    if world.size > n_train:
        raise UsageError(f"{world.size} processes but the training set has only {n_train} image(s): every process "
                         f"needs at least one; run with at most {n_train} processes (--nproc-per-node) or more data")
    num_classes = len(classes)
    if args.loss != "ce":
        if num_classes < 2:
            raise UsageError(f"--loss {args.loss} needs at least 2 classes, the data set has {num_classes}; use --loss ce")
        if args.k is None:
            args.k = min(100, num_classes - 1)
            notes["k"] = f"k {args.k}"
        elif args.k < 1 or args.k > num_classes - 1:
            raise UsageError(f"--k {args.k} does not fit {args.data}: it has {num_classes} classes, so an image has "
                             f"{num_classes - 1} negative classes; use 1 <= --k <= {num_classes - 1}")
    per_rank = args.batch_size // world.size
    workers = args.workers if args.workers is not None else (4 if world.device.type == "cuda" else 0)
    try:
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
            weight_decay=args.weight_decay, momentum=args.momentum, schedule=args.schedule, step_size=args.step_size,
            gamma=args.gamma, loss=args.loss, hnc_lambda=args.hnc_lambda if args.loss != "ce" else 0.0,
            k=args.k if args.loss != "ce" else 3, label_smoothing=args.label_smoothing, seed=args.seed, amp=args.amp,
            num_workers=workers, eval_batch_size=args.eval_batch_size or per_rank,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{exc}") from None
    _check_model_options(args.model, args.pretrained, args.width)
    if args.pretrained and world.local_rank == 0:
        # the first process of each machine fetches the weights into that machine's cache, before the others
        # read them (the barrier of _agree), so the processes of a machine never download the same file at once
        build_cam_model(args.model, num_classes, pretrained=True)
    settings = _settings(args, config, num_classes)
    state = _load_state(args.out / CHECKPOINT, settings, world) if world.main else None
    return _Setup(config, SeededAugmentation(train, args.seed), val, classes, settings, state, notes)


def _load_state(path: Path, settings: Dict[str, Any], world: World) -> Optional[Dict[str, Any]]:
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path, map_location="cpu")
    except RuntimeError as exc:
        raise UsageError(f"{exc}") from None
    if state.get("format") != FORMAT:
        raise UsageError(f"{path} was not written by `python -m hncam_utils train`; choose another --out")
    saved = state["settings"]
    if saved != settings:
        diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        raise UsageError(f"--out {path.parent} holds a run with other settings (saved, now: {diff}); run the same "
                         "command to resume it, or choose another --out")
    if state["step"] and state["world_size"] != world.size:
        raise UsageError(f"{path} was written mid-epoch by {state['world_size']} process(es), this run has {world.size}; "
                         f"resume with {state['world_size']} processes (the data order depends on it)")
    return state


def _broadcast_state(world: World, state: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not world.distributed:
        return state
    box = [state]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _write_history(path: Path, payload: Any) -> None:
    """Rank 0 writes ``history.json`` atomically; a failure is a warning (the checkpoint holds the history too)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        print(f"warning: could not write {path} ({exc.strerror or exc}); the history is in the checkpoint",
              file=sys.stderr, flush=True)


def _log(world: World, message: str) -> None:
    if world.main:
        print(message, flush=True)


@torch.no_grad()
def _evaluate(net: nn.Module, data: Dataset, world: World, batch_size: int, workers: int) -> Dict[str, float]:
    """Loss, top-1 and top-5 over ``data``, each image counted once over all ranks (no padding)."""
    if world.distributed:  # BatchNorm buffers drift per rank after the last step: use rank 0's (the saved ones)
        for buf in net.buffers():
            dist.broadcast(buf, 0)
    n_total = len(data)  # type: ignore[arg-type]
    loader = DataLoader(data, batch_size=batch_size, sampler=ShardSampler(n_total, world.rank, world.size),
                        num_workers=workers, pin_memory=world.device.type == "cuda")
    dtype = torch.float32 if world.device.type == "mps" else torch.float64
    sums = torch.zeros(4, dtype=dtype, device=world.device)  # loss, top1, top5, n
    was_training = net.training
    net.eval()
    for batch in loader:
        x = batch[0].to(world.device, non_blocking=True)
        y = batch[1].to(world.device, non_blocking=True)
        logits = net(x).logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit = top == y[:, None]
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum"), hit[:, 0].sum().float(),
                             hit.any(1).sum().float(), logits.new_full((), float(len(y)))]).to(dtype)
    net.train(was_training)
    if world.distributed:
        dist.all_reduce(sums)
    loss, top1, top5, n = sums.tolist()
    if int(round(n)) != n_total:  # pragma: no cover - a sharding bug
        raise RuntimeError(f"evaluation counted {n} images of {n_total}")
    return {"val_loss": loss / max(n, 1), "val_top1": 100 * top1 / max(n, 1), "val_top5": 100 * top5 / max(n, 1),
            "val_images": n}


def _gather_sums(world: World, sums: Tensor) -> List[List[float]]:
    if not world.distributed:
        return [sums.tolist()]
    parts = [torch.zeros_like(sums) for _ in range(world.size)]
    dist.all_gather(parts, sums)
    return [p.tolist() for p in parts]


def wrap_ddp(model: nn.Module, world: World) -> nn.Module:
    """``model`` (already on ``world.device``) in :class:`~torch.nn.parallel.DistributedDataParallel` when there
    are several processes: ``device_ids=[LOCAL_RANK's GPU]`` on CUDA (nccl), no ``device_ids`` on the CPU (gloo);
    the model itself for one process. DDP copies rank 0's weights to every rank here. BatchNorm stays plain
    BatchNorm (``SyncBatchNorm`` refuses CPU tensors; per-GPU batch statistics, as in the official recipe)."""
    check_module("model", model)
    if not world.distributed:
        return model
    if world.device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[world.device.index],
                                                   output_device=world.device.index)
    return nn.parallel.DistributedDataParallel(model)


def _check_finite(world: World, bad: Tensor, epoch: int) -> None:
    total = bad.clone()
    if world.distributed:
        dist.all_reduce(total)
    if int(total.item()):
        raise FloatingPointError(f"the loss became NaN or infinite in epoch {epoch + 1}; lower --lr or --hnc-lambda "
                                 "(the last good checkpoint is kept)")


def run(args: argparse.Namespace, on_step: Optional[Callable[[int], None]] = None) -> int:
    """Run ``python -m hncam_utils train`` with parsed ``args`` on this process; returns the exit status.

    Bad input ends every rank with status 2 and one line on rank 0 (``error: ...``, no traceback); a failure
    during training (a non-finite loss, a lost peer) with status 1. Under ``torchrun`` the same line also goes
    to the error file that torchrun's agent reads (``TORCHELASTIC_ERROR_FILE``), so the failure summary that
    torchrun prints when a worker exits with a non-zero status names the problem instead of pointing to its
    documentation (that summary and its traceback come from the launcher's own process and cannot be turned off
    from the workers).

    Args:
        args: from a parser set up by :func:`add_arguments`.
        on_step: called with the global step number after every optimizer step (and any checkpoint of that
            step); tests use it to kill a run at an exact point.
    """
    try:
        world = init_world(args.device, args.dist_timeout)
    except _PeerError as exc:
        return _fail(str(exc), 2, show=True)
    except UsageError as exc:
        return _fail(str(exc), 2, show=world_rank_zero())
    try:
        return _run(args, world, on_step)
    except _PeerError as exc:
        return _fail(str(exc), 2, show=True)
    except UsageError as exc:
        return _fail(str(exc), 2, show=world.main)
    except FloatingPointError as exc:
        return _fail(str(exc), 1, show=world.main)
    except KeyboardInterrupt:
        if world.main:
            print(f"\ninterrupted; run the same command again to resume from {args.out / CHECKPOINT}",
                  file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        if world.distributed and _lost_peer(exc):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return _fail(f"rank {world.rank} lost contact with the other processes ({first}); one of them failed or "
                         f"stopped: see its output, then run the same command again to resume from "
                         f"{args.out / CHECKPOINT}", 1, show=True)
        raise
    finally:
        _destroy()


def _fail(message: str, status: int, show: bool) -> int:
    """Print ``error: message`` (where ``show``), hand the message to torchrun's agent, return ``status``."""
    if show:
        print(f"error: {message}", file=sys.stderr, flush=True)
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:  # the agent shows this message in its failure summary (torch's own format, without a traceback)
        data = {"message": {"message": f"error: {message}", "extraInfo": {"timestamp": str(int(time.time()))}}}
        try:
            with open(path, "w") as f:
                json.dump(data, f)
        except OSError:  # pragma: no cover - the summary then points to torch's documentation instead
            pass
    return status


_PEER_SIGNS = ("gloo", "nccl", "connection reset", "connection closed", "broken pipe", "timed out", "timeout",
               "socket", "processgroup", "store")


def _lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a collective whose partner died or stopped answering."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(sign in str(exc).lower() for sign in _PEER_SIGNS)


def world_rank_zero() -> bool:
    """Whether this process is rank 0 (``RANK`` unset or 0)."""
    return _env_rank() == 0


def _run(args: argparse.Namespace, world: World, on_step: Optional[Callable[[int], None]]) -> int:
    error = None
    setup = None
    try:
        setup = _setup(args, world)
    except UsageError as exc:
        error = str(exc)
    error = _agree(world, error)
    if error:
        raise UsageError(error)
    assert setup is not None
    state = _broadcast_state(world, setup.state)
    cfg, dev = setup.config, world.device
    for key in ("ignored",):
        if key in setup.notes:
            _log(world, setup.notes[key])

    per_rank = cfg.batch_size // world.size
    train_set = setup.train_set
    sampler = ResumableDistributedSampler(train_set, num_replicas=world.size, rank=world.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=False)
    steps = math.ceil(sampler.num_samples / per_rank)
    num_classes = len(setup.classes)

    seed_everything(cfg.seed)  # the same seed on every rank: the same initial weights
    model = build_cam_model(args.model, num_classes, pretrained=args.pretrained, width=args.width).to(dev)
    net = model
    model = wrap_ddp(net, world)
    hnc_fn = cfg.hnc()
    optimizer = _make_optimizer(net, cfg)
    scheduler = _make_scheduler(optimizer, cfg, steps)
    amp_dtype = _amp_dtype(dev, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    sum_dtype = torch.float32 if dev.type == "mps" else torch.float64

    history: Dict[str, List[float]] = {}
    epoch, step, global_step = 0, 0, 0
    sums = torch.zeros(5, dtype=sum_dtype, device=dev)  # loss, base, hnc (each x images), correct, images
    if state is not None:
        unwrap(net).load_state_dict(state["model"])
        history = {k: list(v) for k, v in state["history"].items()}
        epoch, step, global_step = int(state["epoch"]), int(state["step"]), int(state["global_step"])
        if epoch >= cfg.epochs:
            _log(world, f"{args.out} holds a finished run ({epoch} epochs): nothing to do; choose another --out to "
                        "train again")
            _log(world, _epoch_line(history, len(history.get("epoch", [])) - 1, cfg.epochs))
            return 0
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if dev.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"])
        if step:
            sums = torch.tensor(state["sums"][world.rank], dtype=sum_dtype, device=dev)

    extras = ", ".join(v for k, v in setup.notes.items() if k in ("lr", "lambda", "k"))
    what = "ce" if cfg.loss == "ce" else f"{cfg.loss} k={cfg.k} lambda={cfg.hnc_lambda:g}"
    _log(world, f"train: {args.data} ({len(train_set)} train / {len(setup.val_set) if setup.val_set else 0} val images, "
                f"{num_classes} classes), {args.model}{' (pretrained)' if args.pretrained else ''}, loss {what}"
                f"{'; ' + extras if extras else ''}")
    _log(world, f"world: {world.size} process(es) on {dev}{' (' + world.backend + ')' if world.backend else ''}, "
                f"batch {cfg.batch_size} = {world.size} x {per_rank}, {steps} steps per epoch, {cfg.optimizer} lr "
                f"{cfg.lr:g} {cfg.schedule} schedule, {cfg.epochs} epochs, out {args.out}")
    if state is not None:
        _log(world, f"resuming from {args.out / CHECKPOINT}: epoch {epoch + 1}, step {step}/{steps}")

    ckpt_path = args.out / CHECKPOINT
    bad = torch.zeros((), dtype=torch.int64, device=dev)
    workers = cfg.num_workers
    progress = world.main and not args.no_progress

    def checkpoint(epoch_done: int, step_done: int) -> None:
        _check_finite(world, bad, epoch)
        gathered = _gather_sums(world, sums) if step_done else []
        failure = None
        if world.main:
            payload = {
                "format": FORMAT, "model": unwrap(net).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch_done,
                "step": step_done, "global_step": global_step, "world_size": world.size, "sums": gathered,
                "history": history, "settings": setup.settings, "classes": setup.classes, "model_name": args.model,
                "num_classes": num_classes, "rng_cpu": torch.get_rng_state(),
            }
            if dev.type == "cuda":
                payload["rng_cuda"] = torch.cuda.get_rng_state()
            try:
                save_checkpoint(payload, ckpt_path)
            except OSError as exc:
                failure = f"could not write {ckpt_path} ({exc.strerror or exc}); free space or fix --out, then resume"
        failure = _agree(world, failure)  # also the barrier after rank 0's write
        if failure:
            raise UsageError(failure)

    from tqdm.auto import tqdm

    while epoch < cfg.epochs:
        sampler.set_epoch(epoch)
        sampler.set_start(step * per_rank)
        train_set.epoch = epoch
        loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler, num_workers=workers,
                            pin_memory=dev.type == "cuda", drop_last=False)
        model.train()
        t0 = time.perf_counter()
        bar = tqdm(total=steps, initial=step, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for batch in loader:
            # fit's own training step (loss, backward, optimizer and scheduler); its sums stay on the device:
            # no step waits for the host
            step_sums, ok, _ = _train_step(model, unwrap(net), batch[0], batch[1], cfg, hnc_fn, optimizer, scheduler,
                                           scaler, dev, amp_dtype)
            bad += (~ok).long()
            sums += torch.cat([step_sums, step_sums.new_full((1,), float(len(batch[1])))]).to(sum_dtype)
            step += 1
            global_step += 1
            bar.update(1)
            if args.checkpoint_every and global_step % args.checkpoint_every == 0 and step < steps:
                checkpoint(epoch, step)
            if on_step is not None:
                on_step(global_step)
        bar.close()
        if cfg.schedule == "step":
            scheduler.step()
        seconds = time.perf_counter() - t0
        _check_finite(world, bad, epoch)
        total = sums.clone()
        if world.distributed:
            dist.all_reduce(total)
        loss_sum, base_sum, hnc_sum, correct, n = total.tolist()
        row = {"epoch": float(epoch + 1), "lr": float(optimizer.param_groups[0]["lr"]), "train_loss": loss_sum / n,
               "train_ce": base_sum / n, "train_hnc": hnc_sum / n, "train_acc": 100 * correct / n, "seconds": seconds}
        if setup.val_set is not None:
            row.update(_evaluate(unwrap(net), setup.val_set, world, cfg.eval_batch_size, workers))
        for key, val in row.items():
            history.setdefault(key, []).append(val)
        epoch, step = epoch + 1, 0
        sums.zero_()
        checkpoint(epoch, 0)
        _log(world, _epoch_line(history, epoch - 1, cfg.epochs))
        if world.main:
            _write_history(args.out / "history.json", {"settings": setup.settings, "world_size": world.size,
                                                    "history": history})
    _log(world, f"done: {ckpt_path} (load it with hncam_utils.distributed.load_model)")
    return 0


def _epoch_line(history: Dict[str, List[float]], i: int, epochs: int) -> str:
    if i < 0:
        return ""
    h = {k: v[i] for k, v in history.items()}
    line = (f"epoch {int(h['epoch'])}/{epochs}: train loss {h['train_loss']:.4f} (ce {h['train_ce']:.4f}, hnc "
            f"{h['train_hnc']:.4f}) acc {h['train_acc']:.1f}%")
    if "val_top1" in h:
        line += (f" | val loss {h['val_loss']:.4f} top-1 {h['val_top1']:.2f}% top-5 {h['val_top5']:.2f}% "
                 f"({int(h['val_images'])} images)")
    return line + f" | {h['seconds']:.1f} s"


def load_model(path, map_location: str = "cpu") -> Tuple[GAPClassifier, Dict[str, Any]]:
    """Rebuild the trained model of a ``train`` checkpoint on one device (no process group needed).

    Args:
        path: ``--out/checkpoint.pt`` (or the ``--out`` folder).

    Returns:
        ``(model, state)``: the model in eval mode with the saved weights, and the whole checkpoint (``history``,
        ``classes``, ``settings``...). Read with ``weights_only=True``.

    Raises:
        FileNotFoundError: no checkpoint there. RuntimeError: an unreadable file. ValueError: a checkpoint that
            this command did not write.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    state = load_checkpoint(path, map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by `python -m hncam_utils train` (no {FORMAT!r} format mark); "
                         "for a checkpoint of hncam_utils.train.fit use load_checkpoint and the model it was trained "
                         "with")
    s = state["settings"]
    model = build_cam_model(s["model"], s["num_classes"], pretrained=False, width=s.get("width"))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def main(argv: Optional[Sequence[str]] = None, on_step: Optional[Callable[[int], None]] = None) -> int:
    """``python -m hncam_utils train ...`` without the rest of the command line (used by tests)."""
    parser = argparse.ArgumentParser(prog="python -m hncam_utils train", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv), on_step=on_step)
