"""CAMs: explicit loops, logits = mean of CAMs on real models, Grad-CAM (Captum) equivalence, display helpers."""

import pytest
import torch
import torchvision
from captum.attr import LayerGradCam
from torch import nn

from hncam_utils.cam import compute_cams, normalize_cams, shared_scale, unpack_classifier, upsample_cams
from hncam_utils.models import LogitsOnly, TorchvisionCAM, digits_cnn


def _setup(seed=0, b=3, d=5, c=6, h=4, w=3):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(b, d, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c, d, generator=gen, dtype=torch.float64)
    bias = torch.randn(c, generator=gen, dtype=torch.float64)
    return gen, f, weight, bias


def _loop_cams(f, weight, bias):
    b, _, h, w = f.shape
    c = weight.shape[0]
    out = torch.empty(b, c, h, w, dtype=f.dtype)
    for n in range(b):
        for cc in range(c):
            for i in range(h):
                for j in range(w):
                    out[n, cc, i, j] = weight[cc] @ f[n, :, i, j] + (0.0 if bias is None else bias[cc])
    return out


# ----------------------------------------------------------------------------------------------------------
# compute_cams
# ----------------------------------------------------------------------------------------------------------


def test_compute_cams_all_classes_equals_loop():
    _, f, weight, bias = _setup()
    want = _loop_cams(f, weight, bias)
    assert torch.allclose(compute_cams(f, (weight, bias)), want, rtol=1e-12, atol=1e-12)
    head = nn.Linear(5, 6).double()
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    assert torch.allclose(compute_cams(f, head), want, rtol=1e-12, atol=1e-12)
    # bias=None: no bias term
    assert torch.allclose(compute_cams(f, (weight, None)), _loop_cams(f, weight, None), rtol=1e-12, atol=1e-12)
    assert compute_cams(f, head).shape == (3, 6, 4, 3)


def test_compute_cams_class_subsets_are_slices():
    gen, f, weight, bias = _setup(1)
    full = compute_cams(f, (weight, bias))
    for classes in ([3], [5, 0, 2], (1, 1), torch.tensor([4, 2])):
        idx = torch.as_tensor(classes)
        got = compute_cams(f, (weight, bias), classes=classes)
        assert got.shape == (3, len(idx), 4, 3)
        assert torch.allclose(got, full[:, idx], rtol=1e-12, atol=1e-12)
    # an int gives one map
    assert torch.allclose(compute_cams(f, (weight, bias), classes=4), full[:, [4]], rtol=1e-12, atol=1e-12)
    # per-image (B, k) ids
    per_image = torch.randint(0, 6, (3, 4), generator=gen)
    got = compute_cams(f, (weight, bias), classes=per_image)
    want = torch.stack([full[n, per_image[n]] for n in range(3)])
    assert got.shape == (3, 4, 4, 3)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    # per-image ids without bias
    nob = compute_cams(f, (weight, None), classes=per_image)
    assert torch.allclose(nob, want - bias[per_image][:, :, None, None], rtol=1e-12, atol=1e-12)


def test_compute_cams_gradients_match_full_path():
    gen, f, weight, bias = _setup(2)
    idx = torch.randint(0, 6, (3, 2), generator=gen)
    tensors = [t.clone().requires_grad_(True) for t in (f, weight, bias)]
    g = torch.randn(3, 2, 4, 3, generator=gen, dtype=torch.float64)
    (compute_cams(tensors[0], (tensors[1], tensors[2]), classes=idx) * g).sum().backward()
    tensors2 = [t.clone().requires_grad_(True) for t in (f, weight, bias)]
    full = compute_cams(tensors2[0], (tensors2[1], tensors2[2]))
    (torch.stack([full[n, idx[n]] for n in range(3)]) * g).sum().backward()
    for a, b in zip(tensors, tensors2):
        assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_compute_cams_bad_inputs():
    _, f, weight, bias = _setup()
    clf = (weight, bias)
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 5\]"):
        compute_cams(f, clf, classes=[6])
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 5\]"):
        compute_cams(f, clf, classes=[-1, 2])
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 5\]"):
        compute_cams(f, clf, classes=torch.tensor([[0, 9], [1, 1], [2, 2]]))
    with pytest.raises(ValueError, match="integer class ids"):
        compute_cams(f, clf, classes=[1.0, 2.0])
    with pytest.raises(ValueError, match="integer class ids"):
        compute_cams(f, clf, classes=torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"per-image class ids must have shape \(B, k\) with B = 3"):
        compute_cams(f, clf, classes=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="classes must be None, an int, a"):
        compute_cams(f, clf, classes=torch.zeros(3, 1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"features must have shape \(B, D, H, W\)"):
        compute_cams(f[0], clf)
    with pytest.raises(ValueError, match="features have D = 5 channels but the classifier expects 4"):
        compute_cams(f, (weight[:, :4], bias))
    with pytest.raises(TypeError, match="classifier must be"):
        compute_cams(f, nn.Conv2d(5, 6, 1))
    with pytest.raises(ValueError, match=r"classifier weight must be \(C, D\)"):
        unpack_classifier((weight[0], bias))
    with pytest.raises(ValueError, match=r"classifier bias must be \(C,\)"):
        unpack_classifier((weight, bias[:2]))


# ----------------------------------------------------------------------------------------------------------
# logits == spatial mean of the CAMs, on real models
# ----------------------------------------------------------------------------------------------------------


def _digits_model():
    torch.manual_seed(0)
    model = digits_cnn()
    # non-trivial BatchNorm statistics so that eval mode is not the identity
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 48, 48))
    return model.double().eval()


def _resnet_model():
    torch.manual_seed(1)
    return TorchvisionCAM(torchvision.models.resnet18(weights=None, num_classes=7)).double().eval()


def test_cam_mean_equals_logits_digits_cnn():
    model = _digits_model()
    x = torch.randn(4, 1, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        logits, features = model(x)
        cams = model.cams(x)
    assert cams.shape == (4, 10, 12, 12)
    assert torch.allclose(cams.mean(dim=(2, 3)), logits, rtol=1e-10, atol=1e-10)
    assert torch.allclose(compute_cams(features, model.classifier), cams, rtol=1e-12, atol=1e-12)


def test_cam_mean_equals_logits_torchvision_resnet18():
    model = _resnet_model()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits, features = model(x)
        cams = model.cams(x)
        plain = model.model(x)
    assert features.shape == (2, 512, 2, 2)
    assert cams.shape == (2, 7, 2, 2)
    assert torch.allclose(cams.mean(dim=(2, 3)), logits, rtol=1e-10, atol=1e-10)
    assert torch.allclose(cams.mean(dim=(2, 3)), plain, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------------------
# Grad-CAM (Captum) times H*W == CAM - bias for GAP + linear networks
# ----------------------------------------------------------------------------------------------------------


def _check_gradcam(model, layer, x):
    with torch.no_grad():
        cams = model.cams(x)
    h, w = cams.shape[-2:]
    bias = model.classifier.bias.detach()
    gradcam = LayerGradCam(LogitsOnly(model), layer)
    num_classes = cams.shape[1]
    for targets in (torch.zeros(x.shape[0], dtype=torch.long), torch.arange(x.shape[0]) % num_classes):
        attr = gradcam.attribute(x, target=targets, relu_attributions=False)
        assert attr.shape == (x.shape[0], 1, h, w)
        want = cams[torch.arange(x.shape[0]), targets] - bias[targets][:, None, None]
        assert torch.allclose(attr[:, 0] * (h * w), want, rtol=1e-8, atol=1e-10), (
            f"Grad-CAM * HW differs from CAM - b by {(attr[:, 0] * h * w - want).abs().max().item():.3g}"
        )
        # signed maps: the CAMs have negative values, so relu would change them
        assert (want < 0).any()


def test_gradcam_equals_cam_minus_bias_digits_cnn():
    model = _digits_model()
    x = torch.randn(3, 1, 48, 48, dtype=torch.float64)
    _check_gradcam(model, model.body, x)


def test_gradcam_equals_cam_minus_bias_resnet18():
    model = _resnet_model()
    with torch.no_grad():
        model.model.fc.bias.normal_()  # a non-zero bias, so the "- b" part is tested
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    _check_gradcam(model, model.model.layer4, x)


# ----------------------------------------------------------------------------------------------------------
# Display helpers
# ----------------------------------------------------------------------------------------------------------


def test_upsample_cams_shapes():
    gen = torch.Generator().manual_seed(0)
    m4 = torch.randn(2, 3, 4, 5, generator=gen)
    assert upsample_cams(m4, 16).shape == (2, 3, 16, 16)
    assert upsample_cams(m4, (8, 10)).shape == (2, 3, 8, 10)
    assert upsample_cams(m4[0], 12).shape == (3, 12, 12)
    assert upsample_cams(m4[0, 0], (7, 9)).shape == (7, 9)
    # same size: unchanged; a constant map stays constant
    assert torch.allclose(upsample_cams(m4, (4, 5)), m4)
    const = torch.full((1, 1, 3, 3), 2.5)
    assert torch.allclose(upsample_cams(const, 9), torch.full((1, 1, 9, 9), 2.5))
    assert upsample_cams(m4[0, 0], 8, mode="nearest").shape == (8, 8)
    with pytest.raises(ValueError, match=r"cams must be \(h, w\), \(K, h, w\) or \(B, K, h, w\)"):
        upsample_cams(torch.randn(5), 4)
    with pytest.raises(ValueError):
        upsample_cams(torch.randn(1, 1, 1, 2, 2), 4)


def test_normalize_cams_per_map():
    gen = torch.Generator().manual_seed(1)
    maps = torch.randn(2, 3, 5, 4, generator=gen) * 7 - 3
    maps[1, 2] = 4.2  # an all-constant map
    out = normalize_cams(maps)
    assert out.shape == maps.shape
    assert not torch.isnan(out).any()
    flat = out.flatten(2)
    for n in range(2):
        for c in range(3):
            if (n, c) == (1, 2):
                assert torch.equal(out[n, c], torch.zeros(5, 4))
            else:
                assert flat[n, c].min().item() == pytest.approx(0.0, abs=1e-6)
                assert flat[n, c].max().item() == pytest.approx(1.0, abs=1e-6)
    # order-preserving within a map
    assert torch.equal(out[0, 0].flatten().argsort(), maps[0, 0].flatten().argsort())


def test_normalize_cams_shared():
    maps = torch.tensor([[[-2.0, 0.0], [1.0, 6.0]]])
    out = normalize_cams(maps, mode="shared", scale=(-1.0, 1.0))
    assert torch.allclose(out, torch.tensor([[[0.0, 0.5], [1.0, 1.0]]]))  # clamped to [0, 1]
    auto = normalize_cams(maps, mode="shared")
    assert auto.min().item() == 0.0 and auto.max().item() == 1.0
    assert auto[0, 0, 1].item() == pytest.approx(0.25)
    const = normalize_cams(torch.full((2, 2), 3.0), mode="shared")
    assert not torch.isnan(const).any()
    with pytest.raises(ValueError, match="mode must be 'per_map' or 'shared'"):
        normalize_cams(maps, mode="global")


def test_shared_scale():
    a = torch.tensor([[-3.0, 1.0], [0.5, 2.0]])
    b = torch.tensor([2.5, -1.0, 4.0])
    c = torch.tensor([[[-7.5]]], dtype=torch.float64)
    assert shared_scale([a, b]) == (-4.0, 4.0)
    assert shared_scale([a, b, c]) == (-7.5, 7.5)
    assert shared_scale([a, b], symmetric=False) == (-3.0, 4.0)
    lo, hi = shared_scale([torch.zeros(3)])
    assert lo < hi  # all-zero maps still give a usable scale
    with pytest.raises(ValueError, match="at least one non-empty map"):
        shared_scale([torch.zeros(0)])
    # quantile trims an outlier
    many = torch.cat([torch.linspace(-1, 1, 1001), torch.tensor([100.0])])
    _, m = shared_scale([many], quantile=0.99)
    assert m < 2.0
