"""The HNC loss against an independent loop-based reference, closed forms, gradients and input checks."""

import math
import zlib

import pytest
import torch
from torch import nn

from hncam_utils.cam import compute_cams
from hncam_utils.losses import HNCLoss, hnc_loss, select_negatives
from hncam_utils.models import digits_cnn

from reference_hnc import reference_hnc, reference_selection

SHAPES = [  # (B, C, H, W)
    (1, 2, 1, 1),
    (3, 5, 3, 4),
    (7, 10, 7, 7),
    (3, 17, 3, 4),
    (7, 17, 1, 1),
    (1, 5, 7, 7),
    (7, 2, 3, 4),
    (3, 10, 1, 1),
]


def _ks(num_classes):
    """k in {None, 1, 2, C-1}, restricted to the valid range and deduplicated."""
    out = [None]
    for k in (1, 2, num_classes - 1):
        if 1 <= k <= num_classes - 1 and k not in out:
            out.append(k)
    return out


def _single_targets(gen, b, c):
    return torch.randint(0, c, (b,), generator=gen)


def _multi_targets(gen, b, c):
    """Random multi-hot rows, with special rows: all positive, only one negative, no positive."""
    t = (torch.rand(b, c, generator=gen) < 0.4).float()
    if b >= 1:
        t[0] = 1.0  # every class positive: no negative at all
    if b >= 2:
        t[1] = 1.0
        t[1, c - 1] = 0.0  # a single negative: fewer than k for k >= 2
    if b >= 3:
        t[2] = 0.0  # no positive: C negatives
    return t


def _loss(cams, targets, k, variant, temperature):
    return HNCLoss(k=k, variant=variant, temperature=temperature)(cams, targets)


# ----------------------------------------------------------------------------------------------------------
# Against the reference
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["mse", "kd"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("labels", ["single", "multi"])
def test_matches_reference(shape, variant, temperature, labels):
    b, c, h, w = shape
    gen = torch.Generator().manual_seed(zlib.crc32(repr((shape, variant, temperature, labels)).encode()))
    cams = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64) * 2.0 + 0.3
    targets = _single_targets(gen, b, c) if labels == "single" else _multi_targets(gen, b, c)
    for k in _ks(c):
        got = _loss(cams, targets, k, variant, temperature)
        want = torch.tensor(reference_hnc(cams, targets, k, variant, temperature), dtype=torch.float64)
        assert got.dtype == torch.float64
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), (
            f"HNC({variant}, k={k}, T={temperature}, {labels}) on {shape}: got {got.item()!r}, "
            f"reference {want.item()!r}"
        )


@pytest.mark.parametrize("labels", ["single", "multi"])
def test_selection_matches_reference(labels):
    gen = torch.Generator().manual_seed(11)
    b, c = 6, 9
    cams = torch.randn(b, c, 3, 3, generator=gen, dtype=torch.float64)
    targets = _single_targets(gen, b, c) if labels == "single" else _multi_targets(gen, b, c)
    positives = (
        torch.nn.functional.one_hot(targets, c).bool() if labels == "single" else targets.bool()
    )
    for k in (None, 1, 3, c - 1):
        index, valid = select_negatives(cams.sum((2, 3)), positives, k)
        ref = reference_selection(cams, targets, k)
        for n in range(b):
            got = [int(i) for i, v in zip(index[n], valid[n]) if v]
            assert got == ref[n], f"image {n}, k={k}: selected {got}, reference {ref[n]}"


@pytest.mark.parametrize("variant", ["mse", "kd"])
def test_close_but_distinct_scores(variant):
    """Class sums that differ by only ~1e-7 relative (no ties) must still be ranked exactly."""
    gen = torch.Generator().manual_seed(3)
    b, c, h, w = 4, 8, 4, 4
    pattern = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    pattern = pattern - pattern.mean(dim=(2, 3), keepdim=True)  # zero-mean shapes, all different
    offsets = torch.stack([torch.randperm(c, generator=gen) for _ in range(b)]).double()
    cams = pattern + (1.0 + 1e-7 * offsets)[:, :, None, None]
    targets = torch.tensor([0, 3, 7, 5])
    for k in (1, 2, 3, c - 1):
        got = _loss(cams, targets, k, variant, 1.0)
        want = reference_hnc(cams, targets, k, variant, 1.0)
        assert got.item() == pytest.approx(want, rel=1e-12, abs=1e-12), f"k={k}"
    # the selection really depends on those tiny gaps: reversing the offsets changes the result for k=1
    flipped = pattern + (1.0 - 1e-7 * offsets)[:, :, None, None]
    assert not torch.allclose(_loss(cams, targets, 1, variant, 1.0), _loss(flipped, targets, 1, variant, 1.0))


def test_ranking_uses_spatial_sum_not_peak():
    """Class 1 has the highest peak but the lowest sum; with k=1 class 2 (highest sum) must be chosen."""
    cams = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    cams[0, 1, 0, 0] = 10.0
    cams[0, 1, 1, 1] = -9.5  # sum 0.5, max 10
    cams[0, 2] = 1.0  # sum 4, max 1
    y = torch.tensor([0])
    assert HNCLoss(k=1, variant="mse")(cams, y).item() == pytest.approx(1.0)  # mean of 1^2 over class 2
    assert reference_hnc(cams, y, 1, "mse") == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------------
# Closed forms
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(1, 1), (3, 4), (7, 7)])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_kd_of_constant_maps_is_k_log_hw(hw, temperature):
    b, c = 5, 6
    gen = torch.Generator().manual_seed(0)
    consts = torch.randn(b, c, 1, 1, generator=gen, dtype=torch.float64) * 5
    cams = consts.expand(b, c, *hw).clone()
    y = torch.randint(0, c, (b,), generator=gen)
    for k in (1, 2, c - 1):
        got = HNCLoss(k=k, variant="kd", temperature=temperature)(cams, y)
        assert got.item() == pytest.approx(k * math.log(hw[0] * hw[1]), abs=1e-12)
    got = HNCLoss(k=None, variant="kd", temperature=temperature)(cams, y)
    assert got.item() == pytest.approx((c - 1) * math.log(hw[0] * hw[1]), abs=1e-12)


def test_kd_invariant_to_constant_shift():
    gen = torch.Generator().manual_seed(1)
    b, c = 4, 7
    cams = torch.randn(b, c, 5, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=gen)
    # k=None: every negative is selected, so any per-map constant may be added
    shift = torch.randn(b, c, 1, 1, generator=gen, dtype=torch.float64) * 10
    for t in (1.0, 0.5, 3.0):
        base = HNCLoss(variant="kd", temperature=t)(cams, y)
        assert torch.allclose(HNCLoss(variant="kd", temperature=t)(cams + shift, y), base, rtol=1e-12, atol=1e-12)
    # top-k: one constant per image keeps the ranking, so the loss is unchanged
    per_image = torch.randn(b, 1, 1, 1, generator=gen, dtype=torch.float64) * 10
    for k in (1, 3):
        base = HNCLoss(k=k, variant="kd")(cams, y)
        assert torch.allclose(HNCLoss(k=k, variant="kd")(cams + per_image, y), base, rtol=1e-12, atol=1e-12)
    # ... whereas mse is not invariant
    assert not torch.allclose(HNCLoss(variant="mse")(cams + shift, y), HNCLoss(variant="mse")(cams, y))


def test_mse_is_logit_squared_plus_spatial_variance():
    gen = torch.Generator().manual_seed(2)
    b, c, h, w = 3, 6, 4, 5
    cams = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64) + 0.7
    y = torch.randint(0, c, (b,), generator=gen)
    logits = cams.mean(dim=(2, 3))
    var = cams.var(dim=(2, 3), unbiased=False)
    for k in (1, 2, None):
        sel = reference_selection(cams, y, k)
        want = sum(logits[n, cc] ** 2 + var[n, cc] for n in range(b) for cc in sel[n]) / sum(map(len, sel))
        got = HNCLoss(k=k, variant="mse")(cams, y)
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    # a single selected map: exactly its logit^2 + variance
    one = cams[:1]
    top = reference_selection(one, y[:1], 1)[0][0]
    got = HNCLoss(k=1, variant="mse")(one, y[:1])
    assert torch.allclose(got, logits[0, top] ** 2 + var[0, top], rtol=1e-12, atol=1e-12)
    # a negative logit is pulled up: d loss / d M > 0 on a constant negative map
    neg = torch.full((1, 2, 2, 2), -3.0, dtype=torch.float64, requires_grad=True)
    HNCLoss(variant="mse")(neg, torch.tensor([0])).backward()
    assert (neg.grad[0, 1] < 0).all()  # descent raises a negative map toward 0


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("labels", ["single", "multi"])
def test_kd_gradient_closed_form(temperature, labels):
    gen = torch.Generator().manual_seed(5)
    b, c, h, w = 4, 6, 3, 4
    hw = h * w
    cams = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64).requires_grad_(True)
    targets = _single_targets(gen, b, c) if labels == "single" else _multi_targets(gen, b, c)
    k = 2
    HNCLoss(k=k, variant="kd", temperature=temperature)(cams, targets).backward()
    grad = cams.grad
    selected = reference_selection(cams, targets, k)
    expected = torch.zeros_like(cams)
    for n in range(b):
        for cc in selected[n]:
            p = torch.softmax(cams[n, cc].detach().flatten() / temperature, dim=0).view(h, w)
            expected[n, cc] = (p - 1.0 / hw) / (b * temperature)
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-14)
    # unselected and ground-truth maps get exactly zero gradient
    for n in range(b):
        for cc in range(c):
            if cc not in selected[n]:
                assert torch.equal(grad[n, cc], torch.zeros(h, w, dtype=torch.float64)), (n, cc)
    if labels == "single":
        assert torch.equal(grad[torch.arange(b), targets], torch.zeros(b, h, w, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------------
# from_features == loss(compute_cams(...)) in value and gradients
# ----------------------------------------------------------------------------------------------------------


def _features_and_head(seed, b=5, d=8, c=7, h=3, w=4, bias=True):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(b, d, h, w, generator=gen, dtype=torch.float64)
    head = nn.Linear(d, c, bias=bias).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(c, d, generator=gen, dtype=torch.float64))
        if bias:
            head.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
    return gen, f, head


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


@pytest.mark.parametrize("variant", ["mse", "kd"])
@pytest.mark.parametrize("labels", ["single", "multi"])
@pytest.mark.parametrize("k", [None, 1, 2])
@pytest.mark.parametrize("form", ["linear", "tuple", "no_bias", "logits"])
def test_from_features_matches_full_path(variant, labels, k, form):
    gen, f, head = _features_and_head(100 + (k or 0), bias=form != "no_bias")
    b, c = f.shape[0], head.out_features
    targets = _single_targets(gen, b, c) if labels == "single" else _multi_targets(gen, b, c)
    loss_fn = HNCLoss(k=k, variant=variant, temperature=0.7)

    f1 = f.clone().requires_grad_(True)
    full = loss_fn(compute_cams(f1, head), targets)
    params = [head.weight] + ([head.bias] if head.bias is not None else [])
    g_full = _grads(full, [f1] + params)

    f2 = f.clone().requires_grad_(True)
    if form == "linear" or form == "no_bias":
        fast = loss_fn.from_features(f2, head, targets)
    elif form == "tuple":
        fast = loss_fn.from_features(f2, (head.weight, head.bias), targets)
    else:
        logits = head(f2.mean(dim=(2, 3)))
        fast = loss_fn.from_features(f2, head, targets, logits=logits)
    g_fast = _grads(fast, [f2] + params)

    assert torch.allclose(fast, full, rtol=1e-12, atol=1e-12), (fast.item(), full.item())
    for name, a, bb in zip(["features", "weight", "bias"], g_fast, g_full):
        assert a is not None and bb is not None, name
        assert torch.allclose(a, bb, rtol=1e-10, atol=1e-13), f"gradient w.r.t. {name} differs"
    if form == "no_bias":
        wb = loss_fn.from_features(f, (head.weight, None), targets)
        assert torch.allclose(wb, full, rtol=1e-12, atol=1e-12)


def test_from_features_uses_given_logits_for_ranking():
    """Passing logits that rank the classes differently changes the selection (the argument is used)."""
    gen, f, head = _features_and_head(7)
    y = torch.zeros(f.shape[0], dtype=torch.long)
    loss_fn = HNCLoss(k=1, variant="mse")
    true_logits = head(f.mean(dim=(2, 3))).detach()
    same = loss_fn.from_features(f, head, y, logits=true_logits)
    assert torch.allclose(same, loss_fn.from_features(f, head, y), rtol=1e-12, atol=1e-12)
    flipped = loss_fn.from_features(f, head, y, logits=-true_logits)
    assert not torch.allclose(flipped, same)
    with pytest.raises(ValueError, match="logits must have shape"):
        loss_fn.from_features(f, head, y, logits=true_logits[:, :3])


def test_ranking_by_logits_equals_ranking_by_cam_sum_on_digits_cnn():
    torch.manual_seed(0)
    model = digits_cnn().double().eval()
    x = torch.randn(3, 1, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        logits, features = model(x)
        cams = compute_cams(features, model.classifier)
    h, w = features.shape[-2:]
    assert (h, w) == (12, 12)
    sums = cams.sum(dim=(2, 3))
    assert torch.allclose(sums, h * w * logits, rtol=1e-10, atol=1e-10)
    assert torch.equal(sums.argsort(dim=1, descending=True), logits.argsort(dim=1, descending=True))
    y = logits.argmax(dim=1)
    for variant in ("mse", "kd"):
        for k in (1, 3, None):
            loss_fn = HNCLoss(k=k, variant=variant)
            a = loss_fn(cams, y)
            assert torch.allclose(loss_fn.from_features(features, model.classifier, y), a, rtol=1e-10)
            assert torch.allclose(loss_fn.from_features(features, model.classifier, y, logits=logits), a, rtol=1e-10)


# ----------------------------------------------------------------------------------------------------------
# Mixed precision
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["mse", "kd"])
def test_autocast_bfloat16_gives_float32(variant):
    gen = torch.Generator().manual_seed(9)
    b, d, c = 4, 16, 6
    f = torch.randn(b, d, 5, 5, generator=gen)
    head = nn.Linear(d, c)
    with torch.no_grad():
        head.bias.copy_(torch.arange(c, dtype=torch.float32) * 3.0)  # well-separated ranking, robust to bf16
    y = torch.tensor([0, 1, 2, 3])
    loss_fn = HNCLoss(k=2, variant=variant)
    ref = loss_fn(compute_cams(f, head), y)
    ref_fast = loss_fn.from_features(f, head, y)
    assert ref.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cams16 = compute_cams(f, head).bfloat16()
        out = loss_fn(cams16, y)
        out_fast = loss_fn.from_features(f.bfloat16(), (head.weight, head.bias), y)
        out_fast32 = loss_fn.from_features(f, head, y)
    for o in (out, out_fast, out_fast32):
        assert o.dtype == torch.float32, o.dtype
        assert torch.isfinite(o)
        assert torch.allclose(o, ref, rtol=5e-2, atol=5e-2), (o.item(), ref.item())
    assert torch.allclose(ref_fast, ref, rtol=1e-5, atol=1e-5)


def test_from_features_ranking_under_autocast_is_full_precision():
    f = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    head = nn.Linear(1, 3)
    with torch.no_grad():
        head.weight[:, 0] = torch.tensor([0.0, 0.5, -0.5])
        head.bias.copy_(torch.tensor([0.0, 1.25, 2.754]))  # logits 0, 2.000, 2.004: class 2 is the top negative
    y = torch.tensor([0])
    loss_fn = HNCLoss(k=1, variant="mse")
    want = loss_fn(compute_cams(f, head), y)  # selects class 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss_fn.from_features(f, head, y)
    assert torch.allclose(got, want, rtol=1e-6), (
        f"from_features under bf16 autocast selected another negative: {got.item()} != {want.item()}"
    )


# ----------------------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------------------


def test_bad_cams_and_targets():
    cams = torch.randn(3, 5, 2, 2)
    loss_fn = HNCLoss(k=2)
    with pytest.raises(ValueError, match=r"cams must have shape \(B, C, H, W\)"):
        loss_fn(torch.randn(3, 5, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"cams must have shape \(B, C, H, W\)"):
        loss_fn(torch.randn(1, 3, 5, 2, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="batch mismatch"):
        loss_fn(cams, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="batch mismatch"):
        loss_fn(cams, torch.tensor(1))
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 4\]"):
        loss_fn(cams, torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 4\]"):
        loss_fn(cams, torch.tensor([0, 5, 2]))
    with pytest.raises(TypeError, match="must be integers"):
        loss_fn(cams, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"multi-hot targets must have shape \(B, 5\)"):
        loss_fn(cams, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        loss_fn(cams, torch.tensor([[0, 1, 0, 0, 0], [0.5, 0, 0, 0, 0], [1, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        loss_fn(cams, torch.full((3, 5), 2))  # integer multi-hot with a 2
    with pytest.raises(TypeError, match="targets must be a torch.Tensor"):
        loss_fn(cams, [0, 1, 2])
    with pytest.raises(ValueError, match="at least 2 classes"):
        HNCLoss()(torch.randn(2, 1, 2, 2), torch.tensor([0, 0]))


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="k must be >= 1"):
        HNCLoss(k=0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        HNCLoss(k=-3)
    for bad in (2.5, True, "2"):
        with pytest.raises(TypeError, match="k must be a positive int"):
            HNCLoss(k=bad)
    with pytest.raises(ValueError, match="unknown HNC variant 'l2'"):
        HNCLoss(variant="l2")
    for t in (0, -1, 0.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            HNCLoss(variant="kd", temperature=t)
    # k > C - 1 is only known at call time
    loss_fn = HNCLoss(k=5)
    cams = torch.randn(2, 5, 2, 2)
    with pytest.raises(ValueError, match=r"k = 5 is larger than the number of negative classes.*C - 1 = 4"):
        loss_fn(cams, torch.tensor([0, 1]))
    assert torch.isfinite(HNCLoss(k=4)(cams, torch.tensor([0, 1])))  # k = C - 1 is fine
    with pytest.raises(ValueError, match="k = 5 is larger"):
        loss_fn.from_features(torch.randn(2, 3, 2, 2), nn.Linear(3, 5), torch.tensor([0, 1]))


def test_bad_from_features_inputs():
    loss_fn = HNCLoss(k=1)
    f = torch.randn(2, 4, 3, 3)
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="features have D = 4 channels but the classifier expects 6"):
        loss_fn.from_features(f, nn.Linear(6, 5), y)
    with pytest.raises(TypeError, match="classifier must be the model's nn.Linear head"):
        loss_fn.from_features(f, nn.Conv2d(4, 5, 1), y)
    with pytest.raises(TypeError, match="classifier must be"):
        loss_fn.from_features(f, torch.randn(5, 4), y)
    with pytest.raises(ValueError, match=r"classifier bias must be \(C,\)"):
        loss_fn.from_features(f, (torch.randn(5, 4), torch.randn(4)), y)
    with pytest.raises(ValueError, match=r"features must have shape \(B, D, H, W\)"):
        loss_fn.from_features(torch.randn(2, 4), nn.Linear(4, 5), y)
    with pytest.raises(ValueError, match="batch mismatch"):
        loss_fn.from_features(f, nn.Linear(4, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="class indices must lie in"):
        loss_fn.from_features(f, nn.Linear(4, 5), torch.tensor([0, 5]))


# ----------------------------------------------------------------------------------------------------------
# Functional form, repr, edge cases
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["mse", "kd"])
def test_functional_matches_module(variant):
    gen = torch.Generator().manual_seed(4)
    cams = torch.randn(4, 6, 3, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 6, (4,), generator=gen)
    multi = _multi_targets(gen, 4, 6)
    for k in (None, 1, 3):
        for t in (1.0, 2.0):
            for targets in (y, multi):
                a = hnc_loss(cams, targets, k=k, variant=variant, temperature=t)
                bb = HNCLoss(k=k, variant=variant, temperature=t)(cams, targets)
                assert torch.equal(a, bb)
    with pytest.raises(ValueError, match="unknown HNC variant"):
        hnc_loss(cams, y, variant="nope")


def test_all_positive_multi_hot_gives_zero_and_no_nan():
    cams = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    t = torch.ones(2, 4)
    for variant in ("mse", "kd"):
        for k in (None, 2):
            out = HNCLoss(k=k, variant=variant)(cams, t)
            assert out.item() == 0.0
            (g,) = torch.autograd.grad(out, cams)
            assert torch.equal(g, torch.zeros_like(g))


def test_bool_and_integer_multi_hot_equal_float():
    gen = torch.Generator().manual_seed(8)
    cams = torch.randn(5, 6, 2, 3, generator=gen, dtype=torch.float64)
    t = _multi_targets(gen, 5, 6)
    for variant in ("mse", "kd"):
        a = HNCLoss(k=2, variant=variant)(cams, t)
        assert torch.equal(a, HNCLoss(k=2, variant=variant)(cams, t.bool()))
        assert torch.equal(a, HNCLoss(k=2, variant=variant)(cams, t.long()))


def test_repr_mentions_hyperparameters():
    r = repr(HNCLoss(k=3, variant="kd", temperature=2))
    assert "k=3" in r and "'kd'" in r and "temperature=2.0" in r


def test_k_accepts_numpy_integers():
    import numpy as np

    assert HNCLoss(k=np.int64(3)).k == 3
