"""Models whose forward gives ``(logits, features)``: what CAMs and the HNC loss need.

Every model here ends in global average pooling (GAP) and a linear classifier, so
``logits = classifier(features.mean((2, 3)))`` equals the spatial mean of the CAMs (see :mod:`hncam_utils.cam`).

* :class:`CAMNet`: any feature extractor ``body`` + ``nn.Linear`` head.
* :class:`TorchvisionCAM`: wraps a torchvision ResNet-family model (ResNet, ResNeXt, Wide ResNet, RegNet)
  without copying or changing its weights; the original model stays inside as ``.model``, so
  ``wrapped.model.load_state_dict(torchvision_state_dict)`` loads pretrained weights unchanged.
* :func:`cifar_resnet18`: ResNet-18 with a 3x3 stem and no max-pool, for 32x32 inputs (4x4 CAMs).
* :func:`resnet50_cam`: torchvision's ResNet-50 with a new head, ImageNet weights through torchvision's weights
  API, and optionally a stride-1 last stage (14x14 CAMs at 224 px, as Choe et al.'s CAM ResNet-50).
* :func:`digits_cnn`: the small (about 70k parameters) GAP CNN for Cluttered Digits (12x12 CAMs on 48x48).
* :class:`CosineCAMNet` / :func:`digits_cnn_cosine`: the same body with a *cosine* head (unit-norm class
  weights, pooled features scaled to unit norm, logits ``s cos(theta)``), for margin losses such as CosFace.
"""

from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ._checks import check_int, check_module
from .cam import compute_cams

__all__ = [
    "CAMOutput",
    "GAPClassifier",
    "CAMNet",
    "CosineCAMNet",
    "TorchvisionCAM",
    "LogitsOnly",
    "cifar_resnet18",
    "resnet50_cam",
    "WeightsUnavailableError",
    "check_num_classes",
    "check_k",
    "digits_cnn",
    "digits_cnn_cosine",
    "digits_cnn_small",
    "digits_cnn_cosine_small",
    "build_model",
    "MODELS",
    "unwrap",
]


class CAMOutput(NamedTuple):
    """What a CAM-ready model returns: ``logits`` (B, C) and the last ``features`` map (B, D, H, W)."""

    logits: Tensor
    features: Tensor


class GAPClassifier(nn.Module):
    """Base class: subclasses implement :meth:`forward_features` and set ``self.classifier`` (``nn.Linear``)."""

    classifier: nn.Linear

    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> CAMOutput:
        features = self.forward_features(x)
        logits = self.classifier(features.mean(dim=(2, 3)))
        return CAMOutput(logits, features)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def cams(self, x: Tensor, classes: Optional[Union[Tensor, Sequence[int], int]] = None) -> Tensor:
        """CAMs of images ``x`` for all classes or the chosen ``classes`` (see :func:`compute_cams`)."""
        return compute_cams(self.forward_features(x), self.classifier, classes)


class CAMNet(GAPClassifier):
    """``body`` (images -> ``(B, D, H, W)``) followed by GAP and ``nn.Linear(D, num_classes)``.

    Args:
        body: the feature extractor.
        classifier: the linear head; its ``in_features`` must equal the body's output channels ``D``.
    """

    def __init__(self, body: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        check_module("body", body, fix="the feature extractor, e.g. nn.Sequential(conv layers...)")
        if not isinstance(classifier, nn.Linear):
            raise TypeError(f"classifier must be nn.Linear, got {type(classifier).__name__}")
        self.body = body
        self.classifier = classifier

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)


class _ScaledUnitRows(nn.Module):
    """Parametrization ``W -> s * W / ||W_c||`` (each class's weight row scaled to norm ``s``)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, weight: Tensor) -> Tensor:
        return self.scale * F.normalize(weight, dim=1)


class CosineCAMNet(CAMNet):
    """A CAM model with a cosine head: ``logit_c = s cos(theta_c)`` between the pooled features and class ``c``.

    With body output ``f`` (B, D, H, W) and its GAP ``g = mean_ij f(i, j)``, the features this model exposes
    are ``f / ||g||`` (one positive scalar per image, the same for every class), and the head is an
    ``nn.Linear`` without bias whose weight is parametrized as ``s * w_c / ||w_c||``. Hence

    .. math::  M_c(i, j) = \\frac{s\\, \\hat w_c \\cdot f(i, j)}{\\lVert g \\rVert}, \\qquad
               \\mathrm{mean}_{ij} M_c(i, j) = s\\, \\hat w_c \\cdot \\hat g = s \\cos\\theta_c,

    so :func:`hncam_utils.cam.compute_cams`, the HNC loss and every CAM statistic work unchanged, and the
    maps still add up exactly to the logits. What differs from a GAP + linear head: each pixel's value is
    divided by the norm of the whole image's pooled features, so a map is not a function of its own pixel
    alone (it is relative to the image's total evidence), logits are bounded by ``s``, and Grad-CAM of a
    cosine logit is *not* this map (the normalisation's gradient removes the component along ``g``).

    Args:
        body: feature extractor (images -> ``(B, D, H, W)``, non-negative after a ReLU).
        in_features: ``D``.
        num_classes: ``C``.
        scale: ``s`` (16 by default; CosFace uses 30-64 for face embeddings with many classes).
        eps: floor of ``||g||``.

    Attributes:
        scale: ``s``, also on ``classifier.scale`` for the losses that need it.
    """

    def __init__(self, body: nn.Module, in_features: int, num_classes: int, scale: float = 16.0, eps: float = 1e-6) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        head = nn.Linear(in_features, num_classes, bias=False)
        parametrize.register_parametrization(head, "weight", _ScaledUnitRows(scale))
        head.scale = float(scale)
        super().__init__(body, head)
        self.scale = float(scale)
        self.eps = float(eps)

    def forward_features(self, x: Tensor) -> Tensor:
        f = self.body(x)
        norm = f.mean(dim=(2, 3)).norm(dim=1).clamp_min(self.eps)
        return f / norm[:, None, None, None]


class TorchvisionCAM(GAPClassifier):
    """Make a torchvision-style CNN return ``(logits, features)`` without touching its weights.

    Works for models whose children run in order and end with ``avgpool`` (global average pooling) then
    ``fc`` (``nn.Linear``): the ResNet family (``resnet*``, ``resnext*``, ``wide_resnet*``) and ``regnet_*``.
    The features are the input of ``avgpool``; the logits are ``fc(mean(features))``, identical to
    ``model(x)``.

    Args:
        model: e.g. ``torchvision.models.resnet50(weights=ResNet50_Weights.DEFAULT)``.

    Checked at construction, so a model this wrapper cannot serve fails here and not inside ``forward``:
    auxiliary classifiers among the children (GoogLeNet's ``aux1``/``aux2``, Inception-v3's ``AuxLogits``)
    would run inside the feature extractor; an input transform (``transform_input=True``) would be skipped;
    anything but dropout between ``avgpool`` and ``fc`` would be skipped; and (ResNet, RegNet) an ``fc`` whose
    input width differs from the body's last channels could never be applied.

    Raises:
        TypeError: not an ``nn.Module``, a model without the ``avgpool`` + ``fc: nn.Linear`` ending, whose
            ``avgpool`` is not a global average pooling, with auxiliary classifiers, an input transform, or
            other layers between ``avgpool`` and ``fc``.
        ValueError: ``fc.in_features`` differs from the body's last number of channels.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        check_module("model", model, fix="e.g. torchvision.models.resnet18(weights=None)")
        names = [name for name, _ in model.named_children()]
        fc = getattr(model, "fc", None)
        if "avgpool" not in names or not isinstance(fc, nn.Linear) or names[-1] != "fc":
            raise TypeError(
                f"{type(model).__name__} does not end in children 'avgpool' then 'fc' (nn.Linear); "
                "wrap it yourself with CAMNet(body, classifier) where body returns the last feature map"
            )
        pool = model.avgpool
        if not (isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))):
            raise TypeError(f"model.avgpool must be AdaptiveAvgPool2d(1) (global average pooling), got {pool}")
        kind = type(model).__name__
        aux = [n for n in names if "aux" in n.lower()]
        if aux:
            raise TypeError(f"model ({kind}) has auxiliary classifier(s) {aux} that would run inside the feature "
                            "extractor; build it with aux_logits=False, or wrap it yourself with CAMNet(body, classifier)")
        if getattr(model, "transform_input", False):
            raise TypeError(f"model ({kind}) transforms its input inside forward (transform_input=True), which this "
                            "wrapper would skip; build it with transform_input=False or normalise the images yourself")
        between = [n for n in names[names.index("avgpool") + 1: -1] if not isinstance(getattr(model, n), nn.Dropout)]
        if between:
            raise TypeError(f"model ({kind}) has {between} between avgpool and fc, which the wrapper would skip; "
                            "wrap it yourself with CAMNet(body, classifier)")
        # ResNet / RegNet blocks end in a batch norm that gives the block's output width (blocks that
        # concatenate branches, e.g. GoogLeNet's, do not: they are not checked)
        width = _last_channels([getattr(model, n) for n in names[: names.index("avgpool")]]) \
            if kind in ("ResNet", "RegNet") else None
        if width is not None and width != fc.in_features:
            raise ValueError(f"model.fc expects {fc.in_features} input features but the last layer before avgpool "
                             f"gives {width} channels; replace fc with nn.Linear({width}, num_classes)")
        self.model = model
        self._body_names: List[str] = names[: names.index("avgpool")]

    @property
    def classifier(self) -> nn.Linear:  # type: ignore[override]
        return self.model.fc

    def forward_features(self, x: Tensor) -> Tensor:
        for name in self._body_names:
            x = getattr(self.model, name)(x)
        return x


def _last_channels(body: Sequence[nn.Module]) -> Optional[int]:
    """The number of channels the last convolution or batch norm of ``body`` produces (``None``: none found)."""
    for child in reversed(list(body)):
        for module in reversed(list(child.modules())):
            if isinstance(module, nn.BatchNorm2d):
                return module.num_features
            if isinstance(module, nn.Conv2d):
                return module.out_channels
    return None


class LogitsOnly(nn.Module):
    """Expose only the logits of a CAM model, for tools that expect ``model(x) -> Tensor`` (Captum)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = check_module("model", model, fix="a CAM model whose forward returns (logits, features)")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).logits


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def cifar_resnet18(num_classes: int = 10) -> TorchvisionCAM:
    """torchvision's ResNet-18 adapted to 32x32 images: 3x3 stride-1 stem, no max-pool (4x4 CAMs)."""
    from torchvision.models import resnet18

    check_int("num_classes", num_classes, min=2, fix="a classifier needs at least 2 classes")
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return TorchvisionCAM(model)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had (no network, a blocked host, a damaged download)."""


def _load_weights(weights, progress: bool, timeout: float):
    """``weights.get_state_dict()`` with a bounded network wait and an error that says what to do."""
    import socket

    import torch.hub

    filename = weights.url.rsplit("/", 1)[-1]
    cached = f"{torch.hub.get_dir()}/checkpoints/{filename}"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        return weights.get_state_dict(progress=progress, check_hash=True)
    except Exception as exc:  # URLError, timeouts, hash mismatch, a truncated file...
        raise WeightsUnavailableError(
            f"could not get the pretrained weights {weights} ({type(exc).__name__}: {exc}).\n"
            f"How to fix it:\n"
            f"  * on a machine with internet, download {weights.url}\n"
            f"    and put it at exactly {cached} (torch hub's cache; $TORCH_HOME moves it), then run this again;\n"
            f"  * a damaged file there is refused (hash check): delete it and download it again;\n"
            f"  * or build the model from random weights with weights=None (expect far lower accuracy on small\n"
            f"    data sets such as CUB: fine-tuning from ImageNet is what makes them learnable)."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def resnet50_cam(
    num_classes: int = 200,
    weights: Optional[str] = None,
    last_stride: int = 2,
    progress: bool = True,
    timeout: float = 30,
) -> TorchvisionCAM:
    """torchvision's ResNet-50 with a new ``Linear(2048, num_classes)`` head, ready for CAMs and HNC.

    Args:
        num_classes: outputs of the new head (200 for CUB).
        weights: ``None`` (random), ``"DEFAULT"``, ``"IMAGENET1K_V1"`` or ``"IMAGENET1K_V2"`` (torchvision's
            ``ResNet50_Weights``); the backbone gets them, the head is new.
        last_stride: 2 (torchvision's, 7x7 CAMs at 224 px) or 1 (Choe et al.'s CAM ResNet-50: the last stage
            keeps the resolution, 14x14 CAMs at 224 px; the weights fit unchanged, the cost of the last stage is 4x).
        progress: show the download's progress bar.
        timeout: seconds allowed to connect and for each read when downloading the weights.

    Raises:
        WeightsUnavailableError: the weights could not be downloaded or read; the message says where to
            put the file by hand, or to use ``weights=None``.
        ValueError: ``last_stride`` not 1 or 2, an unknown weights name, ``num_classes < 1``.
    """
    from torchvision.models import ResNet50_Weights, resnet50

    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    enum = None
    if weights is not None:
        try:
            enum = ResNet50_Weights.verify(weights)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"unknown ResNet-50 weights {weights!r}; use None, 'DEFAULT', 'IMAGENET1K_V1' or 'IMAGENET1K_V2'") from exc
    model = resnet50(weights=None)
    if enum is not None:
        model.load_state_dict(_load_weights(enum, progress, timeout))
    if last_stride == 1:
        block = model.layer4[0]
        block.conv2.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return TorchvisionCAM(model)


def check_num_classes(model: nn.Module, num_classes: int, dataset: str = "the data set", k: Optional[int] = None) -> None:
    """Check, before training, that a CAM model has one output per class of the data set and that HNC's ``k``
    (negatives per image) fits it: ``k <= num_classes - 1``.

    Raises:
        ValueError: the model's outputs differ from ``num_classes``, or ``k`` is too large; the message says
            what to use instead.
    """
    net = unwrap(model)
    head = getattr(net, "classifier", None)
    outputs = getattr(head, "out_features", None)
    if outputs is None:
        raise TypeError(f"{type(net).__name__} has no nn.Linear 'classifier'; use a model from hncam_utils.models")
    if outputs != num_classes:
        raise ValueError(
            f"the model has {outputs} outputs but {dataset} has {num_classes} classes: build it with "
            f"num_classes={num_classes} (e.g. build_model(name, num_classes={num_classes})), or, to fine-tune a "
            f"trained model, replace its head with nn.Linear(in_features, {num_classes})"
        )
    check_k(k, num_classes, dataset)


def check_k(k: Optional[int], num_classes: int, dataset: str = "the data set") -> None:
    """Check that HNC's ``k`` (negatives per image) fits a data set of ``num_classes`` classes.

    Raises:
        ValueError: ``k > num_classes - 1``; the message gives the largest usable ``k``.
    """
    if k is not None and k > num_classes - 1:
        raise ValueError(
            f"k = {k} negatives per image is too large for {dataset}: with {num_classes} classes each image has "
            f"{num_classes - 1} negative classes, so use k <= {num_classes - 1} (or k=None for all of them). "
            "k = 100 is the official value for ImageNet's 1,000 classes; a smaller k focuses on the most "
            "confusable classes"
        )


def _conv_bn_relu(cin: int, cout: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def digits_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> CAMNet:
    """The small GAP CNN for Cluttered Digits (about 70k parameters at ``width=16``).

    conv(1->16), max-pool, conv(16->32), conv(32->32), max-pool, conv(32->64), conv(64->64), each conv
    3x3 + BatchNorm + ReLU; a 48x48 canvas gives a 64 x 12 x 12 feature map (12x12 CAMs); GAP;
    ``Linear(64, num_classes)``.
    """
    check_int("num_classes", num_classes, min=2, fix="a classifier needs at least 2 classes")
    check_int("in_channels", in_channels, min=1, fix="1 for grey images, 3 for colour")
    w = check_int("width", width, min=1)
    body = nn.Sequential(
        *_conv_bn_relu(in_channels, w),
        nn.MaxPool2d(2),
        *_conv_bn_relu(w, 2 * w),
        *_conv_bn_relu(2 * w, 2 * w),
        nn.MaxPool2d(2),
        *_conv_bn_relu(2 * w, 4 * w),
        *_conv_bn_relu(4 * w, 4 * w),
    )
    return CAMNet(body, nn.Linear(4 * w, num_classes))


def digits_cnn_cosine(num_classes: int = 10, in_channels: int = 1, width: int = 16, scale: float = 16.0) -> CosineCAMNet:
    """:func:`digits_cnn`'s body with a cosine head of scale ``scale`` (see :class:`CosineCAMNet`)."""
    body = digits_cnn(num_classes, in_channels, width).body
    return CosineCAMNet(body, 4 * width, num_classes, scale=scale)


def digits_cnn_small(num_classes: int = 10, in_channels: int = 1) -> CAMNet:
    """:func:`digits_cnn` at half width (8-16-16-32-32 channels, about 18k parameters; 12x12 CAMs): about
    2.5 times faster on a CPU, for experiments that need many runs on a laptop budget."""
    return digits_cnn(num_classes, in_channels, width=8)


def digits_cnn_cosine_small(num_classes: int = 10, in_channels: int = 1, scale: float = 16.0) -> CosineCAMNet:
    """:func:`digits_cnn_small`'s body with a cosine head (see :class:`CosineCAMNet`)."""
    return digits_cnn_cosine(num_classes, in_channels, width=8, scale=scale)


MODELS: Dict[str, Callable[..., GAPClassifier]] = {
    "digits_cnn": digits_cnn,
    "digits_cnn_cosine": digits_cnn_cosine,
    "digits_cnn_small": digits_cnn_small,
    "digits_cnn_cosine_small": digits_cnn_cosine_small,
    "cifar_resnet18": cifar_resnet18,
    "resnet50_cam": resnet50_cam,
}


def build_model(name: str, num_classes: int, **kwargs) -> GAPClassifier:
    """Build a registered model by name (``MODELS``).

    Raises:
        ValueError: an unknown name.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes, **kwargs)
