"""The attack loop: epsilon 0 is the clean accuracy, FGSM checked by hand, the model left as it was, PGD inside
its ball, and clear errors for bad input."""

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hncam_utils.data import ClutteredDigits
from hncam_utils.metrics import predict, topk_accuracy
from hncam_utils.models import CAMNet, digits_cnn
from hncam_utils.robustness import (
    Normalized,
    RobustnessCurve,
    accuracy_under_attack,
    adversarial_examples,
    default_step_size,
)
from hncam_utils.runtime import seed_everything


def mean_threshold_model(alpha: float = 4.0) -> CAMNet:
    """A CAM model whose decision is known in closed form: class 1 iff the image's mean pixel exceeds 0.5.

    Features = the image (1x1 conv, weight 1, bias 0); logit_1 - logit_0 = alpha * (2 * mean(x) - 1). So the
    gradient of CE w.r.t. every pixel is negative for label 1 and positive for label 0: FGSM moves every
    pixel by -eps (label 1) or +eps (label 0), then clamps to [0, 1].
    """
    body = nn.Conv2d(1, 1, kernel_size=1)
    head = nn.Linear(1, 2)
    with torch.no_grad():
        body.weight.fill_(1.0)
        body.bias.zero_()
        head.weight.copy_(torch.tensor([[-alpha], [alpha]]))
        head.bias.copy_(torch.tensor([alpha / 2, -alpha / 2]))
    return CAMNet(body, head).eval()


def flat_images(values, size=6):
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 1, size, size).clone()


# mean pixel values and labels: margins 0.2, 0.05, 0.2, 0.12 from the threshold 0.5
VALUES, LABELS = [0.3, 0.45, 0.7, 0.62], [0, 0, 1, 1]


def toy_loader(batch_size=3):
    return DataLoader(TensorDataset(flat_images(VALUES), torch.tensor(LABELS)), batch_size=batch_size)


def test_one_fgsm_step_checked_by_hand():
    model = mean_threshold_model()
    x, y = flat_images(VALUES), torch.tensor(LABELS)
    eps = 0.1
    direction = torch.where(y == 1, -1.0, 1.0)[:, None, None, None]   # sign of dCE/dx, from the closed form
    expected = (x + eps * direction).clamp(0, 1)
    adv = adversarial_examples(model, x, y, eps, attack="fgsm")
    assert torch.allclose(adv, expected, atol=1e-6)
    # clamping: a large step pushes the label-1 images to 0 and the label-0 images to 1
    adv = adversarial_examples(model, x, y, 0.9, attack="fgsm")
    assert torch.equal(adv, (x + 0.9 * direction).clamp(0, 1))
    assert float(adv.min()) == 0.0 and float(adv.max()) == 1.0


def test_accuracy_curve_of_the_closed_form_model():
    curve = accuracy_under_attack(mean_threshold_model(), toy_loader(), [0.25, 0.0, 0.1], progress=False)
    assert curve.epsilons == (0.0, 0.1, 0.25)   # sorted
    # eps 0.1 flips only the image with margin 0.05; eps 0.25 exceeds every margin
    assert curve.accuracy == (100.0, 75.0, 0.0)
    assert curve.n_images == 4 and curve.correct.shape == (3, 4)
    assert curve.correct[1].tolist() == [True, False, True, True]
    assert curve.accuracy_at(0.1) == 75.0
    assert curve.epsilon_at(50.0) == pytest.approx(0.1 + (75 - 50) / 75 * 0.15)
    assert curve.epsilon_at(100.0) == 0.0
    assert math.isnan(accuracy_under_attack(mean_threshold_model(), toy_loader(), [0, 0.01],
                                            progress=False).epsilon_at(10.0))
    # PGD in the Linf ball reaches the same corner of the ball as FGSM on this linear model
    pgd = accuracy_under_attack(mean_threshold_model(), toy_loader(), [0.0, 0.1, 0.25], attack="pgd", steps=5,
                                progress=False)
    assert pgd.accuracy == (100.0, 75.0, 0.0) and pgd.steps == 5
    json.dumps(curve.as_dict())
    assert "FGSM" in curve.describe() and "4 images" in curve.describe()
    with pytest.raises(ValueError, match="not measured"):
        curve.accuracy_at(0.3)


def small_digits(n=24):
    data = ClutteredDigits("test", "hard", n_train=10, n_test=n)
    return data, DataLoader(data, batch_size=10)


def random_digits_model(seed=0):
    seed_everything(seed)
    return digits_cnn().eval()


@pytest.mark.parametrize("attack,norm", [("fgsm", "Linf"), ("pgd", "Linf"), ("pgd", "L2")])
def test_epsilon_zero_gives_the_clean_accuracy(attack, norm):
    data, loader = small_digits()
    model = random_digits_model()
    logits, targets = predict(model, loader)
    clean = topk_accuracy(logits, targets, (1,))[1]
    curve = accuracy_under_attack(model, loader, [0.0, 0.05], attack=attack, norm=norm, steps=2,
                                  random_start=attack == "pgd", progress=False)
    assert curve.accuracy_at(0.0) == pytest.approx(clean)
    assert torch.equal(curve.correct[0], logits.argmax(1) == targets)
    assert curve.accuracy_at(0.05) <= clean


def test_captum_fgsm_equals_autograd_sign_step_on_a_cnn():
    data, _ = small_digits(8)
    model = random_digits_model(1)
    x, y = data.images[:8], data.targets[:8]
    eps = 0.03
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xg).logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xg)
    # Captum leaves elements whose gradient is at most 1e-6 in magnitude unchanged
    expected = torch.where(grad.abs() > 1e-6, (x + eps * grad.sign()).clamp(0, 1), x)
    adv = adversarial_examples(model, x, y, eps)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert (adv != x).float().mean() > 0.5   # the step really moved most pixels


@pytest.mark.parametrize("was_training", [True, False])
def test_mode_parameters_and_grads_untouched(was_training):
    data, loader = small_digits(24)
    model = random_digits_model(2)
    model.train(was_training)
    model.body[0].weight.requires_grad_(False)          # a frozen layer stays frozen
    model.classifier.weight.grad = torch.full_like(model.classifier.weight, 0.5)   # a stale gradient stays as is
    before = {k: v.clone() for k, v in model.state_dict().items()}   # weights and BatchNorm statistics
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    seen_modes = []
    hook = model.register_forward_pre_hook(lambda m, args: seen_modes.append(m.training))

    curve = accuracy_under_attack(model, loader, [0.0, 0.1], attack="pgd", steps=2, progress=False)
    adversarial_examples(model, data.images[:4], data.targets[:4], 0.1)
    hook.remove()

    assert seen_modes and not any(seen_modes), "the attack must run the model in eval mode"
    assert model.training == was_training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert torch.equal(model.classifier.weight.grad, torch.full_like(model.classifier.weight, 0.5))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "classifier.weight")
    assert curve.n_images == 24


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_within_the_radius(random_start):
    data, _ = small_digits(6)
    model = random_digits_model(3)
    x, y = data.images[:6], data.targets[:6]
    eps = 0.05
    adv = adversarial_examples(model, x, y, eps, attack="pgd", norm="Linf", steps=5, random_start=random_start, seed=0)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float((adv - x).abs().max()) > eps / 2       # it moved, up to the ball's edge
    radius = 1.5
    adv = adversarial_examples(model, x, y, radius, attack="pgd", norm="L2", steps=5, step_size=0.05,
                               random_start=random_start, seed=0)
    norms = (adv - x).flatten(1).norm(dim=1)
    assert bool((norms <= radius * (1 + 1e-5)).all()), norms
    assert bool((norms > radius / 2).all()), norms     # a step of 0.05 on 2304 pixels is 2.4 in L2: projected
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


def test_pgd_random_start_is_reproducible_with_a_seed():
    data, _ = small_digits(4)
    model = random_digits_model(4)
    x, y = data.images[:4], data.targets[:4]
    kw = dict(attack="pgd", steps=2, random_start=True)
    state = torch.get_rng_state()
    a = adversarial_examples(model, x, y, 0.05, seed=7, **kw)
    assert torch.equal(torch.get_rng_state(), state), "a seeded attack must not consume the global generator"
    assert torch.equal(a, adversarial_examples(model, x, y, 0.05, seed=7, **kw))


def test_a_model_that_returns_logits_is_accepted():
    plain = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    curve = accuracy_under_attack(plain, toy_loader(), [0, 0.1], progress=False)
    assert curve.n_images == 4 and len(curve.accuracy) == 2


def test_default_step_size():
    assert default_step_size(0.1, 10) == pytest.approx(0.025)
    assert default_step_size(1.0, 10, "L2", numel=100) == pytest.approx(0.025)


def test_bad_input_gets_clear_errors():
    model = mean_threshold_model()
    x, y = flat_images(VALUES), torch.tensor(LABELS)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
        adversarial_examples(model, x, y, -0.1)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
        accuracy_under_attack(model, toy_loader(), [0.0, float("nan")], progress=False)
    with pytest.raises(ValueError, match="epsilons is empty"):
        accuracy_under_attack(model, toy_loader(), [], progress=False)
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        accuracy_under_attack(model, toy_loader(), [0.1], attack="cw", progress=False)
    with pytest.raises(ValueError, match="unknown norm 'L1'"):
        accuracy_under_attack(model, toy_loader(), [0.1], attack="pgd", norm="L1", progress=False)
    with pytest.raises(ValueError, match="use attack='pgd' for norm='L2'"):
        adversarial_examples(model, x, y, 0.1, attack="fgsm", norm="L2")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        adversarial_examples(model, x, y, 0.1, attack="pgd", steps=0)
    with pytest.raises(ValueError, match="step_size must be a number > 0"):
        adversarial_examples(model, x, y, 0.1, attack="pgd", step_size=-1.0)
    with pytest.raises(ValueError, match="lower < upper"):
        adversarial_examples(model, x, y, 0.1, bounds=(1, 0))
    with pytest.raises(ValueError, match="normalisation inside the model"):
        adversarial_examples(model, (x - 0.5) / 0.2, y, 0.1)
    with pytest.raises(ValueError, match="single-label"):
        adversarial_examples(model, x, torch.zeros(4, 2), 0.1)
    empty = DataLoader(TensorDataset(torch.zeros(0, 1, 6, 6), torch.zeros(0, dtype=torch.long)), batch_size=2)
    with pytest.raises(ValueError, match="yielded no images"):
        accuracy_under_attack(model, empty, [0.1], progress=False)
    with pytest.raises(ValueError, match="no images"):
        accuracy_under_attack(model, [], [0.1], progress=False)
    # the model is still usable and unchanged after the failures
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_curve_is_plain_data():
    curve = RobustnessCurve((0.0, 0.1), (90.0, 10.0), 10, "pgd", "L2", 10, None)
    assert curve.epsilon_at(10.0) == 0.1 and "PGD-L2" in curve.describe()


def test_normalized_puts_the_normalisation_inside_the_model():
    seed_everything(5)
    model = digits_cnn().eval()
    x = torch.rand(4, 1, 48, 48)
    wrapped = Normalized(model, 0.3, 0.2)
    with torch.no_grad():
        assert torch.allclose(wrapped(x).logits, model((x - 0.3) / 0.2).logits, atol=1e-6)
    assert wrapped.classifier is model.classifier and list(wrapped.state_dict()) == [
        "model." + k for k in model.state_dict()]
    loader = DataLoader(TensorDataset(x, torch.tensor([0, 1, 2, 3])), batch_size=2)
    curve = accuracy_under_attack(wrapped, loader, [0.0, 0.01], progress=False)
    assert curve.n_images == 4
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalized(model, 0.3, 0.0)
    with pytest.raises(ValueError, match="one value per channel"):
        Normalized(model, [0.1, 0.2, 0.3], [0.2])


def test_wrong_types_name_the_argument():
    """Settings of the wrong type are refused by name before any attack runs (both public functions share
    one checked set-up)."""
    model = mean_threshold_model()
    x, y = flat_images(VALUES), torch.tensor(LABELS)
    with pytest.raises(TypeError, match="step_size must be a number"):
        adversarial_examples(model, x, y, 0.1, attack="pgd", step_size="0.01")
    with pytest.raises(TypeError, match="random_start must be True or False"):
        adversarial_examples(model, x, y, 0.1, attack="pgd", random_start="yes")
    with pytest.raises(TypeError, match="seed must be an int"):
        adversarial_examples(model, x, y, 0.1, seed=1.5)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        adversarial_examples(lambda t: t, x, y, 0.1)
    with pytest.raises(TypeError, match="random_start must be True or False"):
        accuracy_under_attack(model, toy_loader(), [0.1], attack="pgd", random_start=1, progress=False)
    with pytest.raises(TypeError, match="progress must be True or False"):
        accuracy_under_attack(model, toy_loader(), [0.1], progress="no")
    with pytest.raises(TypeError, match="seed must be an int"):
        accuracy_under_attack(model, toy_loader(), [0.1], seed="0", progress=False)
