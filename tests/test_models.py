"""CAM-ready models: the torchvision wrapper keeps weights and outputs unchanged; shapes; registry; unwrap."""

import io

import pytest
import torch
import torchvision
from torch import nn

from hncam_utils.cam import compute_cams
from hncam_utils.models import (
    MODELS,
    CAMNet,
    CAMOutput,
    LogitsOnly,
    TorchvisionCAM,
    build_model,
    cifar_resnet18,
    digits_cnn,
    unwrap,
)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_torchvision_wrapper_same_logits_keys_and_shared_params():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    wrapped = TorchvisionCAM(tv).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = wrapped(x)
        plain = tv(x)
    assert isinstance(out, CAMOutput)
    assert out.logits.shape == (2, 5) and out.features.shape == (2, 512, 2, 2)
    assert torch.allclose(out.logits, plain, rtol=1e-6, atol=1e-6)  # bit-identical in practice
    # state_dict keys: the torchvision ones prefixed with "model."
    assert sorted(wrapped.state_dict().keys()) == sorted("model." + k for k in tv.state_dict().keys())
    # no copies: same parameter objects, same count
    assert wrapped.model is tv and wrapped.classifier is tv.fc
    assert _n_params(wrapped) == _n_params(tv)
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in tv.parameters()}
    assert wrapped.num_classes == 5


def test_torchvision_wrapper_loads_torchvision_state_dict_unchanged():
    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)  # stands in for pretrained weights
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    torch.manual_seed(2)
    wrapped = TorchvisionCAM(torchvision.models.resnet18(weights=None))
    assert not torch.equal(wrapped.model.conv1.weight, source.conv1.weight)
    result = wrapped.model.load_state_dict(state)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in state.items():
        assert torch.equal(wrapped.state_dict()["model." + key], value), key
    # and the wrapped model now computes what the source computes
    source.eval()
    wrapped.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(wrapped(x).logits, source(x), rtol=1e-5, atol=1e-5)
    # the wrapper's own state_dict round-trips too
    again = TorchvisionCAM(torchvision.models.resnet18(weights=None))
    again.load_state_dict(wrapped.state_dict())
    assert torch.equal(again.model.fc.weight, source.fc.weight)


def test_torchvision_wrapper_rejects_other_architectures():
    with pytest.raises(TypeError, match="does not end in children 'avgpool' then 'fc'"):
        TorchvisionCAM(torchvision.models.mobilenet_v3_small(weights=None))
    tv = torchvision.models.resnet18(weights=None, num_classes=3)
    tv.avgpool = nn.AdaptiveAvgPool2d(2)
    with pytest.raises(TypeError, match="global average pooling"):
        TorchvisionCAM(tv)


def test_cifar_resnet18_shapes():
    torch.manual_seed(0)
    model = cifar_resnet18(100).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, features = model(x)
    assert logits.shape == (2, 100)
    assert features.shape == (2, 512, 4, 4)
    assert model.num_classes == 100
    assert isinstance(model.model.maxpool, nn.Identity)
    assert model.model.conv1.kernel_size == (3, 3) and model.model.conv1.stride == (1, 1)
    assert torch.allclose(compute_cams(features, model.classifier).mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-4)


def test_digits_cnn_shapes_and_size():
    torch.manual_seed(0)
    model = digits_cnn().eval()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        logits, features = model(x)
    assert isinstance(model, CAMNet)
    assert logits.shape == (3, 10)
    assert features.shape == (3, 64, 12, 12)
    n = _n_params(model)
    assert 60_000 <= n <= 80_000, n
    other = digits_cnn(num_classes=4, in_channels=3)
    with torch.no_grad():
        assert other.eval()(torch.randn(1, 3, 48, 48)).logits.shape == (1, 4)


def test_camnet_requires_linear_head():
    with pytest.raises(TypeError, match="classifier must be nn.Linear"):
        CAMNet(nn.Identity(), nn.Conv2d(4, 3, 1))


def test_build_model_and_registry():
    assert set(MODELS) >= {"digits_cnn", "cifar_resnet18"}
    model = build_model("digits_cnn", num_classes=7)
    assert model.num_classes == 7
    assert build_model("cifar_resnet18", num_classes=3).num_classes == 3
    with pytest.raises(ValueError, match="unknown model 'vgg99'"):
        build_model("vgg99", num_classes=10)


def test_unwrap():
    model = digits_cnn()
    assert unwrap(model) is model
    assert unwrap(nn.DataParallel(model)) is model

    class Compiled(nn.Module):  # what torch.compile's OptimizedModule looks like
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert unwrap(Compiled(nn.DataParallel(model))) is model


def test_model_cams_class_subset_is_slice():
    torch.manual_seed(0)
    model = digits_cnn().double().eval()
    x = torch.randn(2, 1, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        all_cams = model.cams(x)
        three = model.cams(x, classes=[3])
        several = model.cams(x, classes=torch.tensor([[1, 9], [0, 4]]))
    assert all_cams.shape == (2, 10, 12, 12)
    assert three.shape == (2, 1, 12, 12)
    assert torch.allclose(three, all_cams[:, 3:4], rtol=1e-12, atol=1e-12)
    assert torch.allclose(several[0], all_cams[0, [1, 9]], rtol=1e-12, atol=1e-12)
    assert torch.allclose(several[1], all_cams[1, [0, 4]], rtol=1e-12, atol=1e-12)


def test_logits_only():
    torch.manual_seed(0)
    model = digits_cnn().eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        out = LogitsOnly(model)(x)
        assert isinstance(out, torch.Tensor)
        assert torch.equal(out, model(x).logits)
