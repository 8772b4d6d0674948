"""Bad input across hncam_utils (issue 7): every mistake a learner can make gets a clear error at the call.

The catalogue: each case calls a public function the wrong way and asserts the exception's type AND that its
message names the argument at fault (and, where it matters, the value and the fix). The regression tests
below it pin the cases that used to be silently wrong or cryptic.
"""

import math

import pytest
import torch
from torch import nn

from hncam_utils import cam, losses, runtime
from hncam_utils.paths import data_home

NAN, INF = float("nan"), float("inf")


def _feats(b=2, d=4, h=3, w=3):
    return torch.randn(b, d, h, w)


HEAD = nn.Linear(4, 5)
CAMS = torch.randn(2, 5, 3, 3)
Y = torch.tensor([0, 3])

# (id, call, exception type, text the message must contain: the argument's name)
CASES = [
    # ---------------------------------------------------------------- losses
    ("HNCLoss k=0", lambda: losses.HNCLoss(k=0), ValueError, "k"),
    ("HNCLoss k=2.5", lambda: losses.HNCLoss(k=2.5), TypeError, "k"),
    ("HNCLoss variant", lambda: losses.HNCLoss(variant="l2"), ValueError, "variant"),
    ("HNCLoss T=inf", lambda: losses.HNCLoss(variant="kd", temperature=INF), ValueError, "temperature"),
    ("HNCLoss T=nan", lambda: losses.HNCLoss(variant="kd", temperature=NAN), ValueError, "temperature"),
    ("HNCLoss T='1'", lambda: losses.HNCLoss(temperature="1"), TypeError, "temperature"),
    ("HNCLoss int cams", lambda: losses.HNCLoss(k=2)(torch.ones(2, 5, 3, 3, dtype=torch.long), Y), TypeError, "cams"),
    ("HNCLoss 3-D cams", lambda: losses.HNCLoss(k=2)(torch.randn(2, 5, 9), Y), ValueError, "cams"),
    ("HNCLoss float targets", lambda: losses.HNCLoss(k=2)(CAMS, Y.float()), TypeError, "targets"),
    ("HNCLoss list targets", lambda: losses.HNCLoss(k=2)(CAMS, [0, 3]), TypeError, "targets"),
    ("HNCLoss targets out of range", lambda: losses.HNCLoss(k=2)(CAMS, torch.tensor([0, 5])), ValueError, "class indices"),
    ("HNCLoss k > C-1", lambda: losses.HNCLoss(k=5)(CAMS, Y), ValueError, "k = 5"),
    ("from_features int features",
     lambda: losses.HNCLoss(k=2).from_features(torch.ones(2, 4, 3, 3, dtype=torch.long), HEAD, Y), TypeError, "features"),
    ("from_features wrong width", lambda: losses.HNCLoss(k=2).from_features(_feats(d=6), HEAD, Y), ValueError, "features"),
    ("from_features classifier", lambda: losses.HNCLoss(k=2).from_features(_feats(), nn.Conv2d(4, 5, 1), Y),
     TypeError, "classifier"),
    ("from_features bias type", lambda: losses.HNCLoss(k=2).from_features(_feats(), (HEAD.weight, 0.0), Y),
     TypeError, "bias"),
    ("from_features logits shape",
     lambda: losses.HNCLoss(k=2).from_features(_feats(), HEAD, Y, logits=torch.randn(2, 4)), ValueError, "logits"),
    ("positive_mask num_classes", lambda: losses.positive_mask(Y, 0), ValueError, "num_classes"),
    ("select_negatives scores 1-D", lambda: losses.select_negatives(torch.randn(5), torch.zeros(5, dtype=torch.bool), 2),
     ValueError, "scores"),
    ("select_negatives positives dtype", lambda: losses.select_negatives(torch.randn(2, 5), torch.zeros(2, 5), 2),
     TypeError, "positives"),
    ("select_negatives k=0", lambda: losses.select_negatives(torch.randn(2, 5), torch.zeros(2, 5, dtype=torch.bool), 0),
     ValueError, "k"),
    # ---------------------------------------------------------------- cam
    ("compute_cams int features", lambda: cam.compute_cams(torch.ones(2, 4, 3, 3, dtype=torch.int32), HEAD),
     TypeError, "features"),
    ("compute_cams float classes", lambda: cam.compute_cams(_feats(), HEAD, torch.tensor([0.0, 1.0])), ValueError, "classes"),
    ("compute_cams class id", lambda: cam.compute_cams(_feats(), HEAD, [7]), ValueError, "class ids"),
    ("upsample_cams size 0", lambda: cam.upsample_cams(CAMS, 0), ValueError, "size"),
    ("upsample_cams size str", lambda: cam.upsample_cams(CAMS, "48"), TypeError, "size"),
    ("upsample_cams mode", lambda: cam.upsample_cams(CAMS, 8, mode="linear"), ValueError, "mode"),
    ("upsample_cams numpy", lambda: cam.upsample_cams(CAMS.numpy(), 8), TypeError, "cams"),
    ("shared_scale quantile 0", lambda: cam.shared_scale([CAMS], quantile=0.0), ValueError, "quantile"),
    ("shared_scale quantile 99", lambda: cam.shared_scale([CAMS], quantile=99), ValueError, "quantile"),
    ("shared_scale empty", lambda: cam.shared_scale([]), ValueError, "maps"),
    ("shared_scale all NaN", lambda: cam.shared_scale([torch.full((2, 2), NAN)]), ValueError, "maps"),
    ("shared_scale list of lists", lambda: cam.shared_scale([[1.0, 2.0]]), TypeError, "maps[0]"),
    ("normalize_cams reversed scale", lambda: cam.normalize_cams(CAMS, "shared", scale=(5.0, -5.0)), ValueError, "scale"),
    ("normalize_cams NaN scale", lambda: cam.normalize_cams(CAMS, "shared", scale=(NAN, 1.0)), ValueError, "scale"),
    ("normalize_cams scale str", lambda: cam.normalize_cams(CAMS, "shared", scale="auto"), TypeError, "scale"),
    ("normalize_cams mode", lambda: cam.normalize_cams(CAMS, "global"), ValueError, "mode"),
    ("normalize_cams eps", lambda: cam.normalize_cams(CAMS, eps=0), ValueError, "eps"),
    ("normalize_cams 1-D", lambda: cam.normalize_cams(torch.randn(5)), ValueError, "cams"),
    # ---------------------------------------------------------------- runtime, paths
    ("get_device bogus", lambda: runtime.get_device("bogus"), ValueError, "device"),
    ("get_device int", lambda: runtime.get_device(0), TypeError, "device"),
    ("get_device meta", lambda: runtime.get_device("meta"), ValueError, "device"),
    ("get_profile bogus", lambda: runtime.get_profile("laptop"), ValueError, "profile"),
    ("get_profile int", lambda: runtime.get_profile(1), TypeError, "profile"),
    ("pick list", lambda: runtime.pick([1, 2, 3], "cpu"), TypeError, "options"),
    ("seed_everything float", lambda: runtime.seed_everything(1.5), TypeError, "seed"),
    ("seed_everything negative", lambda: runtime.seed_everything(-1), ValueError, "seed"),
]


@pytest.mark.parametrize("call, error, names", [pytest.param(c, e, n, id=i) for i, c, e, n in CASES])
def test_catalogue(call, error, names):
    with pytest.raises(error) as info:
        call()
    assert names in str(info.value), f"the message does not name {names!r}: {info.value}"


def test_catalogue_is_large_and_its_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 40


# ------------------------------------------------------------------ environment variables


def test_hncam_device_bogus_names_the_variable(monkeypatch):
    monkeypatch.setenv("HNCAM_DEVICE", "bogus")
    with pytest.raises(ValueError) as info:
        runtime.get_device()
    msg = str(info.value)
    assert "HNCAM_DEVICE='bogus'" in msg and "unset HNCAM_DEVICE" in msg
    assert "xla" not in msg  # not torch's list of 20 device types


def test_hncam_profile_bogus_names_the_variable(monkeypatch):
    monkeypatch.setenv("HNCAM_PROFILE", "bogus")
    with pytest.raises(ValueError, match=r"HNCAM_PROFILE='bogus'.*smoke, cpu, gpu"):
        runtime.get_profile()


def test_hncam_home_pointing_at_a_file(monkeypatch, tmp_path):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    monkeypatch.setenv("HNCAM_HOME", str(f))
    with pytest.raises(NotADirectoryError, match=r"HNCAM_HOME.*is a file, not a folder"):
        data_home()
    monkeypatch.setenv("HNCAM_HOME", str(f / "below"))
    with pytest.raises(NotADirectoryError, match="HNCAM_HOME"):
        data_home()


# ------------------------------------------------------------------ NaN / inf: documented behaviour


def test_loss_propagates_nan_and_a_nan_negative_is_selected():
    """A negative class whose map holds a NaN ranks first (torch.topk's order) and its NaN reaches the loss."""
    cams_ = torch.zeros(1, 4, 2, 2)
    cams_[0, 2, 0, 0] = NAN
    y = torch.tensor([0])
    pos = losses.positive_mask(y, 4)
    index, _ = losses.select_negatives(cams_.sum(dim=(2, 3)), pos, 1)
    assert index.tolist() == [[2]]
    for variant in ("mse", "kd"):
        assert math.isnan(float(losses.hnc_loss(cams_, y, k=1, variant=variant)))


def test_nan_in_a_positive_map_is_never_selected():
    cams_ = torch.randn(1, 4, 2, 2)
    cams_[0, 0] = NAN  # the ground-truth class
    index, _ = losses.select_negatives(cams_.sum(dim=(2, 3)), losses.positive_mask(torch.tensor([0]), 4), 3)
    assert 0 not in index.tolist()[0]
    assert torch.isfinite(losses.hnc_loss(cams_, torch.tensor([0]), k=3))


def test_infinite_cam_gives_a_non_finite_loss():
    cams_ = torch.zeros(1, 3, 2, 2)
    cams_[0, 1, 0, 0] = INF
    assert not torch.isfinite(losses.hnc_loss(cams_, torch.tensor([0]), k=1, variant="mse"))


def test_shared_scale_ignores_nan_and_inf():
    """Used to return (-1, 1) for maps with one NaN although the finite values reach about 200."""
    a = torch.tensor([[1.0, -200.0], [NAN, 3.0]])
    b = torch.tensor([[INF, 50.0]])
    assert cam.shared_scale([a, b]) == (-200.0, 200.0)
    assert cam.shared_scale([a, b], symmetric=False) == (-200.0, 50.0)
    assert cam.shared_scale(a) == (-200.0, 200.0)  # a single tensor is accepted too


def test_normalize_cams_nan_pixels_stay_nan_others_are_normalised():
    x = torch.tensor([[[0.0, 2.0], [NAN, 4.0]]])
    per_map = cam.normalize_cams(x)
    assert torch.isnan(per_map[0, 1, 0])
    assert per_map[0, 0].tolist() == [0.0, 0.5] and per_map[0, 1, 1].item() == 1.0
    shared = cam.normalize_cams(x, "shared")
    assert torch.isnan(shared[0, 1, 0]) and shared[0, 1, 1].item() == 1.0
    with pytest.raises(ValueError, match="no finite value"):
        cam.normalize_cams(torch.full((2, 2), NAN), "shared")


def test_normalize_cams_reversed_scale_is_refused_not_flattened():
    """Used to map every pixel to one value."""
    with pytest.raises(ValueError, match="swap the two values"):
        cam.normalize_cams(torch.randn(2, 4, 4), "shared", scale=(1.0, -1.0))


def test_kd_with_infinite_temperature_is_refused():
    """Used to give a constant loss (log HW per pair) that trains nothing."""
    with pytest.raises(ValueError, match="constant that trains nothing"):
        losses.HNCLoss(k=1, variant="kd", temperature=INF)


def test_top_k_path_checks_read_nothing_back_from_the_device(monkeypatch):
    """The new checks on from_features look at metadata only: no Tensor.item / __bool__ beyond the existing
    class-index check (a device read-back would stall a GPU pipeline)."""
    feats, y = _feats(), Y
    loss_fn = losses.HNCLoss(k=2, variant="kd")
    reads = []
    real_item, real_bool = torch.Tensor.item, torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append("item") or real_item(self))
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: reads.append("bool") or real_bool(self))
    loss_fn.from_features(feats, HEAD, y)
    assert reads.count("item") == 0 and reads.count("bool") <= 1, reads
