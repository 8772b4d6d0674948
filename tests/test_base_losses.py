"""Base losses other than CE: generalized cross-entropy, focal loss, CosFace and the cosine CAM head; and
training with them (and HNC) through the one engine."""

import math

import pytest
import torch
import torch.nn.functional as F

from hncam_utils.base_losses import cosface_loss, focal_loss, generalized_cross_entropy
from hncam_utils.cam import compute_cams
from hncam_utils.data import ClutteredDigits
from hncam_utils.losses import HNCLoss
from hncam_utils.models import build_model, digits_cnn, digits_cnn_cosine
from hncam_utils.runtime import seed_everything
from hncam_utils.train import TrainConfig, fit, run_name


@pytest.fixture()
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 10, (16,), generator=gen)
    return logits, targets


def test_gce_matches_its_definition(batch):
    logits, y = batch
    p_y = torch.softmax(logits, 1)[torch.arange(16), y]
    for q in (0.3, 0.7, 1.0):
        expected = ((1 - p_y**q) / q).mean()
        assert torch.allclose(generalized_cross_entropy(logits, y, q=q), expected, atol=1e-12)


def test_gce_is_near_ce_for_small_q(batch):
    logits, y = batch
    ce = F.cross_entropy(logits, y, reduction="none")
    gce = generalized_cross_entropy(logits, y, q=1e-4, reduction="none")
    # (1 - e^{-q CE}) / q = CE - q CE^2 / 2 + ...: relative gap about q * CE / 2
    assert torch.allclose(gce, ce, rtol=1e-3)
    assert (gce <= ce).all()  # 1 - e^{-x} <= x
    # and the gap shrinks with q
    gaps = [float((ce - generalized_cross_entropy(logits, y, q=q, reduction="none")).abs().max()) for q in (0.1, 0.01, 0.001)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_gce_at_q_1_is_mae(batch):
    logits, y = batch
    p = torch.softmax(logits, 1)
    mae = (F.one_hot(y, 10).double() - p).abs().sum(1)  # L1 distance to the one-hot label = 2 (1 - p_y)
    assert torch.allclose(generalized_cross_entropy(logits, y, q=1.0, reduction="none"), mae / 2, atol=1e-12)


def test_gce_gradient_is_ce_gradient_times_p_y_to_the_q(batch):
    logits, y = batch
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    generalized_cross_entropy(a, y, q=0.7, reduction="sum").backward()
    per = F.cross_entropy(b, y, reduction="none")
    p_y = torch.exp(-per.detach())
    (per * p_y**0.7).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_focal_loss_definition_and_gamma_0_is_ce(batch):
    logits, y = batch
    assert torch.allclose(focal_loss(logits, y, gamma=0.0), F.cross_entropy(logits, y), atol=1e-12)
    p_y = torch.softmax(logits, 1)[torch.arange(16), y]
    expected = (-(1 - p_y) ** 2 * torch.log(p_y)).mean()
    assert torch.allclose(focal_loss(logits, y, gamma=2.0), expected, atol=1e-12)
    assert torch.allclose(focal_loss(logits, y, reduction="sum"), 16 * expected, atol=1e-10)


def test_cosface_shifts_only_the_label_logit(batch):
    cos = torch.tanh(batch[0])  # in (-1, 1)
    y = batch[1]
    s, m = 16.0, 0.35
    z = s * cos
    expected = torch.stack([
        -(s * (cos[i, y[i]] - m)) + torch.logsumexp(torch.cat([s * (cos[i, y[i]:y[i] + 1] - m), s * torch.cat([cos[i, :y[i]], cos[i, y[i] + 1:]])]), 0)
        for i in range(16)
    ]).mean()
    assert torch.allclose(cosface_loss(z, y, scale=s, margin=m), expected, atol=1e-10)
    assert torch.allclose(cosface_loss(z, y, scale=s, margin=0.0), F.cross_entropy(z, y), atol=1e-12)
    assert cosface_loss(z, y, scale=s, margin=m) > F.cross_entropy(z, y)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda l, y: generalized_cross_entropy(l, y, q=0.0), r"\(0, 1\]"),
        (lambda l, y: generalized_cross_entropy(l, y, q=1.5), r"\(0, 1\]"),
        (lambda l, y: focal_loss(l, y, gamma=-1), ">= 0"),
        (lambda l, y: cosface_loss(l, y, scale=0.0), "scale"),
        (lambda l, y: cosface_loss(l, y, scale=16, margin=1.0), "margin"),
        (lambda l, y: generalized_cross_entropy(l, y[:3]), "matching logits"),
        (lambda l, y: focal_loss(l, y, reduction="avg"), "reduction"),
        (lambda l, y: generalized_cross_entropy(l, F.one_hot(y, 10)), "single-label"),
    ],
)
def test_bad_arguments_raise(batch, call, match):
    with pytest.raises(ValueError, match=match):
        call(*batch)


def test_cosine_head_cams_add_up_to_the_cosine_logits():
    seed_everything(0)
    model = digits_cnn_cosine(width=4, scale=8.0).eval()
    x = torch.rand(3, 1, 48, 48)
    out = model(x)
    f = model.body(x)
    g = f.mean(dim=(2, 3))
    w = model.classifier.weight
    cos = F.normalize(g, dim=1) @ F.normalize(w, dim=1).T
    assert torch.allclose(out.logits, 8.0 * cos, atol=1e-5)
    assert torch.allclose(w.norm(dim=1), torch.full((10,), 8.0), atol=1e-5)
    cams = compute_cams(out.features, model.classifier)
    assert torch.allclose(cams.mean(dim=(2, 3)), out.logits, atol=1e-5)
    assert out.logits.abs().max() <= 8.0 + 1e-5
    # the same body (same seed) as the GAP + linear model: paired runs start from the same features
    seed_everything(0)
    plain = digits_cnn(width=4)
    for a, b in zip(plain.body.state_dict().values(), model.body.state_dict().values()):
        assert torch.equal(a, b)
    # HNC's top-k path works unchanged on the cosine head, gradients reach the raw weight
    loss = HNCLoss(k=3, variant="kd").from_features(out.features, model.classifier, torch.tensor([1, 2, 3]))
    loss.backward()
    assert model.classifier.parametrizations.weight.original.grad is not None


@pytest.fixture(scope="module")
def tiny():
    return (ClutteredDigits("train", "hard", n_train=64, n_test=32), ClutteredDigits("test", "hard", n_train=64, n_test=32))


@pytest.mark.parametrize("base, model", [("gce", "digits_cnn"), ("focal", "digits_cnn"), ("cosface", "digits_cnn_cosine")])
def test_engine_trains_each_base_loss_with_and_without_hnc(tiny, base, model):
    train, test = tiny
    for loss, lam in (("ce", 0.0), ("hnc_kd", 0.1)):
        seed_everything(0)
        net = build_model(model, 10, width=4)
        cfg = TrainConfig(epochs=1, batch_size=32, base_loss=base, loss=loss, hnc_lambda=lam)
        hist = fit(net, train, cfg, test_data=test, progress=False)
        assert math.isfinite(hist["train_loss"][0]) and math.isfinite(hist["test_loss"][0])
        assert (hist["train_hnc"][0] > 0) == (loss != "ce")


def test_engine_base_loss_value_is_the_named_loss(tiny):
    """One step at lr ~ 0 records exactly the base loss of the initial model on the (only) batch."""
    train, _ = tiny
    for base, fn in (("gce", lambda z, y: generalized_cross_entropy(z, y, q=0.7)),
                     ("focal", lambda z, y: focal_loss(z, y, gamma=2.0))):
        seed_everything(0)
        net = digits_cnn(width=4)
        net.train()
        with torch.no_grad():
            expected = float(fn(net(train.images).logits, train.targets))
        seed_everything(0)
        net = digits_cnn(width=4)
        hist = fit(net, train, TrainConfig(epochs=1, batch_size=64, base_loss=base, schedule="constant", lr=1e-12,
                                           weight_decay=0.0), progress=False)
        assert hist["train_ce"][0] == pytest.approx(expected, rel=1e-5)


def test_cosface_needs_a_cosine_head_and_multilabel_needs_ce(tiny):
    train, _ = tiny
    with pytest.raises(ValueError, match="digits_cnn_cosine"):
        fit(digits_cnn(width=4), train, TrainConfig(epochs=1, base_loss="cosface"), progress=False)
    ml = ClutteredDigits("train", "multilabel", n_train=32, n_test=8)
    with pytest.raises(ValueError, match="multi-hot targets train with 'ce'"):
        fit(digits_cnn(width=4), ml, TrainConfig(epochs=1, base_loss="gce"), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(base_loss="mae"), "unknown base loss"),
        (dict(base_loss="gce", gce_q=0.0), "gce_q"),
        (dict(base_loss="focal", focal_gamma=-2), "focal_gamma"),
        (dict(base_loss="cosface", margin=1.5), "margin"),
        (dict(base_loss="gce", label_smoothing=0.1), "label_smoothing"),
    ],
)
def test_bad_base_loss_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_run_names_unchanged_for_the_default_base_loss():
    cfg = TrainConfig(epochs=10, loss="hnc_kd", hnc_lambda=0.1, k=3, seed=2)
    assert run_name("digits-hard", "digits_cnn", cfg) == "digits-hard_digits_cnn_hnc_kd_k3_lam0.1_e10_s2"
    assert run_name("d", "m", TrainConfig(epochs=4)) == "d_m_ce_e4_s0"
    assert run_name("d", "m", TrainConfig(epochs=4, base_loss="gce")) == "d_m_ce_gce0.7_e4_s0"
    assert run_name("d", "m", TrainConfig(epochs=4, base_loss="focal", focal_gamma=1)) == "d_m_ce_focal1_e4_s0"
    assert run_name("d", "m", TrainConfig(epochs=4, base_loss="cosface")) == "d_m_ce_cosface0.35_e4_s0"


def test_half_width_models_for_laptop_budgets():
    x = torch.rand(2, 1, 48, 48)
    for name, cls in (("digits_cnn_small", "CAMNet"), ("digits_cnn_cosine_small", "CosineCAMNet")):
        net = build_model(name, 10).eval()
        out = net(x)
        assert type(net).__name__ == cls and out.features.shape == (2, 32, 12, 12) and out.logits.shape == (2, 10)
        assert sum(p.numel() for p in net.parameters()) < 20_000
