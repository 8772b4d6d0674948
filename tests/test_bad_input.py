"""Bad input across hncam_utils (issue 7): every mistake a learner can make gets a clear error at the call.

The catalogue: each case calls a public function the wrong way and asserts the exception's type AND that its
message names the argument at fault (and, where it matters, the value and the fix). The regression tests
below it pin the cases that used to be silently wrong or cryptic.
"""

import math

import pytest
import torch
from torch import nn

from hncam_utils import cam, download, experiments, losses, metrics, models, plots, runtime
from hncam_utils import train as tr
from hncam_utils.data import ClutteredDigits, ClutteredDigitsConfig, make_cluttered_digits, source_split
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
    # ---------------------------------------------------------------- train
    ("TrainConfig hnc without lambda", lambda: tr.TrainConfig(loss="hnc_kd"), ValueError, "hnc_lambda"),
    ("TrainConfig lr nan", lambda: tr.TrainConfig(lr=NAN), ValueError, "lr"),
    ("TrainConfig lr inf", lambda: tr.TrainConfig(lr=INF), ValueError, "lr"),
    ("TrainConfig hnc_lambda nan", lambda: tr.TrainConfig(loss="hnc_mse", hnc_lambda=NAN), ValueError, "hnc_lambda"),
    ("TrainConfig epochs float", lambda: tr.TrainConfig(epochs=2.5), TypeError, "epochs"),
    ("TrainConfig batch_size 0", lambda: tr.TrainConfig(batch_size=0), ValueError, "batch_size"),
    ("TrainConfig amp str", lambda: tr.TrainConfig(amp="no"), TypeError, "amp"),
    ("TrainConfig label_smoothing 1", lambda: tr.TrainConfig(label_smoothing=1.0), ValueError, "label_smoothing"),
    ("TrainConfig momentum 1", lambda: tr.TrainConfig(optimizer="sgd", momentum=1.0), ValueError, "momentum"),
    ("TrainConfig nesterov adamw", lambda: tr.TrainConfig(nesterov=True), ValueError, "nesterov"),
    ("TrainConfig k str", lambda: tr.TrainConfig(k="3"), TypeError, "k"),
    ("TrainConfig seed negative", lambda: tr.TrainConfig(seed=-1), ValueError, "seed"),
    ("TrainConfig num_workers", lambda: tr.TrainConfig(num_workers=-2), ValueError, "num_workers"),
    ("TrainConfig pct_start", lambda: tr.TrainConfig(pct_start=1.5), ValueError, "pct_start"),
    ("TrainConfig T inf", lambda: tr.TrainConfig(loss="hnc_kd", hnc_lambda=0.1, temperature=INF), ValueError,
     "temperature"),
    ("run_name dataset", lambda: tr.run_name("", "digits_cnn", tr.TrainConfig()), ValueError, "dataset"),
    ("run_name config dict", lambda: tr.run_name("d", "m", {"epochs": 1}), TypeError, "config"),
    ("checkpoint_path traversal", lambda: tr.checkpoint_path("../../etc/x"), ValueError, "name"),
    ("run_name model None", lambda: tr.run_name("d", None, tr.TrainConfig()), TypeError, "model must be a string"),
    ("checkpoint_path hidden", lambda: tr.checkpoint_path(".x"), ValueError, "leading '.'"),
    ("train_or_load build_model", lambda: tr.train_or_load(nn.Linear(2, 2), [], tr.TrainConfig(), "x"),
     TypeError, "build_model"),
    # ---------------------------------------------------------------- data
    ("ClutteredDigitsConfig noise nan", lambda: ClutteredDigitsConfig(noise=NAN), ValueError, "noise"),
    ("ClutteredDigitsConfig noise inf", lambda: ClutteredDigitsConfig(noise=INF), ValueError, "noise"),
    ("ClutteredDigitsConfig fragment_size int", lambda: ClutteredDigitsConfig(fragment_size=8), TypeError,
     "fragment_size"),
    ("ClutteredDigitsConfig n_train float", lambda: ClutteredDigitsConfig(n_train=100.0), TypeError, "n_train"),
    ("ClutteredDigitsConfig ink", lambda: ClutteredDigitsConfig(min_fragment_ink=2.0), ValueError, "min_fragment_ink"),
    ("ClutteredDigitsConfig seed", lambda: ClutteredDigitsConfig(seed=-3), ValueError, "seed"),
    ("ClutteredDigitsConfig multi_label str", lambda: ClutteredDigitsConfig(multi_label="yes"), TypeError,
     "multi_label"),
    ("ClutteredDigitsConfig digits_per_canvas", lambda: ClutteredDigitsConfig(multi_label=True, digits_per_canvas=(3, 2)),
     ValueError, "digits_per_canvas"),
    ("ClutteredDigits unknown option", lambda: ClutteredDigits("train", "easy", n_trian=10), TypeError, "n_trian"),
    ("ClutteredDigits split", lambda: ClutteredDigits("val"), ValueError, "split"),
    ("ClutteredDigits config", lambda: ClutteredDigits("train", config=3), TypeError, "config"),
    ("make_cluttered_digits cfg", lambda: make_cluttered_digits("easy", "train"), TypeError, "cfg"),
    ("source_split test_fraction", lambda: source_split(0, test_fraction=1.0), ValueError, "test_fraction"),
    # ---------------------------------------------------------------- models
    ("digits_cnn num_classes 0", lambda: models.digits_cnn(num_classes=0), ValueError, "num_classes"),
    ("digits_cnn width float", lambda: models.digits_cnn(width=8.0), TypeError, "width"),
    ("cifar_resnet18 num_classes", lambda: models.cifar_resnet18(num_classes=1), ValueError, "num_classes"),
    ("CAMNet body", lambda: models.CAMNet("conv", nn.Linear(4, 2)), TypeError, "body"),
    ("TorchvisionCAM not a module", lambda: models.TorchvisionCAM("resnet18"), TypeError, "model"),
    ("build_model name", lambda: models.build_model("vgg99", 10), ValueError, "vgg99"),
    ("LogitsOnly", lambda: models.LogitsOnly(None), TypeError, "model"),
    # ---------------------------------------------------------------- metrics
    ("topk_accuracy float targets", lambda: metrics.topk_accuracy(torch.randn(4, 3), torch.zeros(4)), TypeError,
     "targets"),
    ("topk_accuracy k float", lambda: metrics.topk_accuracy(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), (1.5,)),
     TypeError, "ks"),
    ("negative_cam_stats k 0", lambda: metrics.negative_cam_stats(CAMS, Y, k=0), ValueError, "k"),
    ("negative_cam_stats 3-D", lambda: metrics.negative_cam_stats(CAMS[0], Y), ValueError, "cams"),
    ("cam_to_box threshold", lambda: metrics.cam_to_box(torch.rand(8, 8), threshold=1.5), ValueError, "threshold"),
    ("pointing_game 3-D", lambda: metrics.pointing_game(torch.rand(1, 8, 8), torch.tensor([0, 0, 4, 4])), ValueError,
     "cam"),
    ("box_iou 3 values", lambda: metrics.box_iou((0, 0, 1), (0, 0, 1, 1)), ValueError, "box a"),
    ("localization_stats boxes", lambda: metrics.localization_stats(torch.rand(2, 4, 4), torch.zeros(3, 4), (8, 8)),
     ValueError, "boxes"),
    ("gt_and_top_negative_cams n", lambda: metrics.gt_and_top_negative_cams(models.digits_cnn(width=2),
                                                                            torch.rand(2, 1, 16, 16), Y, n=0),
     ValueError, "n"),
    ("gt_and_top_negative_cams float targets", lambda: metrics.gt_and_top_negative_cams(
        models.digits_cnn(width=2), torch.rand(2, 1, 16, 16), Y.float()), TypeError, "targets"),
    ("evaluate threshold", lambda: metrics.evaluate(models.digits_cnn(width=2), [], threshold=NAN), ValueError,
     "threshold"),
    ("most_confused_pairs n", lambda: metrics.most_confused_pairs([[1, 2], [3, 4]], n=-1), ValueError, "n"),
    # ---------------------------------------------------------------- download
    ("verify_file md5 None", lambda: download.verify_file(__file__, None), TypeError, "md5"),
    ("verify_file md5 short", lambda: download.verify_file(__file__, "abc"), ValueError, "md5"),
    ("download_url urls None", lambda: download.download_url(None, "x.bin", None), TypeError, "urls"),
    ("download_url timeout", lambda: download.download_url("file:///nonexistent", "x.bin", None, timeout=0),
     ValueError, "timeout"),
    ("get_spec None", lambda: download.get_spec(None), TypeError, "name"),
    ("get_spec unknown", lambda: download.get_spec("imagenet"), ValueError, "imagenet"),
    ("safe_extract dest is a file", lambda: download.safe_extract(__file__, __file__), NotADirectoryError, "dest"),
    # ---------------------------------------------------------------- experiments, plots
    ("LossSpec hnc without lambda", lambda: experiments.LossSpec("hnc_kd"), ValueError, "hnc_lambda"),
    ("LossSpec loss", lambda: experiments.LossSpec("focal"), ValueError, "loss"),
    ("run_experiment data", lambda: experiments.run_experiment("medium", [experiments.LossSpec()], [0],
                                                               tr.TrainConfig()), ValueError, "data"),
    ("run_experiment seeds int", lambda: experiments.run_experiment("easy", [experiments.LossSpec()], 3,
                                                                    tr.TrainConfig()), TypeError, "seeds"),
    ("run_experiment specs", lambda: experiments.run_experiment("easy", ["ce"], [0], tr.TrainConfig()), TypeError,
     "specs"),
    ("run_experiment train", lambda: experiments.run_experiment("easy", [experiments.LossSpec()], [0], {"epochs": 1}),
     TypeError, "train"),
    ("plot_history keys", lambda: plots.plot_history({"ce": [{"train_loss": [1.0]}]}, keys=("acc",)), ValueError, "keys"),
    ("plot_history single history", lambda: plots.plot_history({"ce": {"train_loss": [1.0]}}), TypeError, "histories"),
    ("plot_cam_grid classes", lambda: plots.plot_cam_grid(torch.rand(1, 1, 8, 8), {"ce": torch.rand(1, 2, 4, 4)},
                                                          {"hnc": torch.zeros(1, 2)}), ValueError, "classes"),
    ("plot_canvases titles", lambda: plots.plot_canvases(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), titles=["a"]),
     ValueError, "titles"),
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
    modules = {c[1].__code__.co_names[0] for c in CASES if c[1].__code__.co_names}
    assert {"losses", "cam", "runtime", "tr", "models", "metrics", "download", "experiments", "plots"} <= modules


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


# ------------------------------------------------------------------ fit: checks up front, fingerprints, nothing lost


class Pairs(torch.utils.data.Dataset):
    """A tiny data set of (image, label) pairs without a ``targets`` attribute (first-sample check)."""

    def __init__(self, labels, n=8):
        self.labels = labels
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.rand(1, 16, 16), self.labels[i % len(self.labels)]


@pytest.fixture(scope="module")
def digits():
    from hncam_utils.data import ClutteredDigits

    return ClutteredDigits("train", "easy", n_train=64, n_test=16)


def tiny_model(num_classes=10):
    from hncam_utils.models import digits_cnn

    runtime.seed_everything(0)
    return digits_cnn(num_classes=num_classes, width=4)


CE1 = tr.TrainConfig(epochs=1, batch_size=32)
KD1 = tr.TrainConfig(epochs=1, batch_size=32, loss="hnc_kd", hnc_lambda=0.1, k=3)


def test_hnc_with_lambda_zero_is_refused_not_trained_as_ce():
    """Used to train plain CE and cache it under an hnc_kd name."""
    with pytest.raises(ValueError, match=r"loss='hnc_kd' with hnc_lambda=0 would train plain CE"):
        tr.TrainConfig(loss="hnc_kd")
    with pytest.raises(ValueError, match="hnc_lambda"):
        tr.TrainConfig(loss="hnc_kd", hnc_lambda=0.1).replace(hnc_lambda=0.0)


def test_labels_outside_the_models_classes_fail_before_training(digits, tmp_path):
    """Used to fail inside the loop with 'IndexError: Target 5 is out of bounds'."""
    ckpt = tmp_path / "r.pt"
    with pytest.raises(ValueError) as info:
        tr.fit(tiny_model(num_classes=5), digits, CE1, checkpoint=ckpt, progress=False)
    msg = str(info.value)
    assert "train_data's labels lie in [0, 9]" in msg and "5 outputs" in msg and "num_classes=10" in msg
    assert not ckpt.exists()  # nothing written


def test_labels_checked_on_the_first_sample_without_targets():
    with pytest.raises(ValueError, match=r"train_data\[0\]'s label is 12 but model.classifier has 10 outputs"):
        tr.fit(tiny_model(), Pairs([12]), CE1, progress=False)
    with pytest.raises(TypeError, match=r"train_data\[0\]'s label must be integer class indices"):
        tr.fit(tiny_model(), Pairs([1.0]), CE1, progress=False)
    with pytest.raises(TypeError, match=r"train_data\[0\] must be an \(image, target\)"):
        tr.fit(tiny_model(), [torch.rand(1, 16, 16)], CE1, progress=False)


def test_test_data_labels_are_checked_too(digits):
    with pytest.raises(ValueError, match=r"test_data\[0\]'s label is -1 .*class indices start at 0"):
        tr.fit(tiny_model(), digits, CE1, test_data=Pairs([-1]), progress=False)


def test_int32_and_uint8_labels_train_like_int64(digits):
    """int32 labels used to fail inside cross_entropy ('expected scalar type Long but found Int')."""
    hist64 = tr.fit(tiny_model(), Pairs([3, 1, 4, 1]), KD1, progress=False)
    hist32 = tr.fit(tiny_model(), Pairs([torch.tensor(v, dtype=torch.int32) for v in (3, 1, 4, 1)]), KD1,
                    progress=False)
    assert hist64["train_loss"] == hist32["train_loss"]


def test_empty_data_and_a_dataloader_are_refused(digits):
    with pytest.raises(ValueError, match=r"train_data is empty"):
        tr.fit(tiny_model(), Pairs([1], n=0), CE1, progress=False)
    with pytest.raises(TypeError, match="not a DataLoader"):
        tr.fit(tiny_model(), torch.utils.data.DataLoader(digits), CE1, progress=False)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        tr.fit(tiny_model(), digits, {"epochs": 1}, progress=False)


def test_hnc_needs_a_classifier_head(digits):
    class NoHead(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="model must have a 'classifier' nn.Linear"):
        tr.fit(NoHead(), digits, KD1, progress=False)


def test_finished_checkpoint_of_another_data_set_is_refused(digits, tmp_path):
    """Used to return the other data set's history without training."""
    from hncam_utils.data import ClutteredDigits

    ckpt = tmp_path / "done.pt"
    tr.fit(tiny_model(), digits, CE1, checkpoint=ckpt, progress=False)
    assert tr.load_checkpoint(ckpt)["data"]["length"] == 64
    other_len = ClutteredDigits("train", "easy", n_train=48, n_test=16)
    with pytest.raises(tr.CheckpointMismatchError, match=r"trained on other data \(samples: 64 saved, 48 now"):
        tr.fit(tiny_model(), other_len, CE1, checkpoint=ckpt, progress=False)
    same_len = ClutteredDigits("train", "easy", n_train=64, n_test=16, seed=1)  # same size, other labels
    with pytest.raises(tr.CheckpointMismatchError, match=r"labels \(SHA-1\)"):
        tr.fit(tiny_model(), same_len, CE1, checkpoint=ckpt, progress=False)
    assert len(tr.fit(tiny_model(), digits, CE1, checkpoint=ckpt, progress=False)["epoch"]) == 1  # same data: loads


def test_checkpoint_without_a_fingerprint_still_loads(digits, tmp_path):
    ckpt = tmp_path / "old.pt"
    tr.fit(tiny_model(), digits, CE1, checkpoint=ckpt, progress=False)
    state = tr.load_checkpoint(ckpt)
    del state["data"]  # as written before fingerprints existed
    tr.save_checkpoint(state, ckpt)
    assert len(tr.fit(tiny_model(), digits, CE1, checkpoint=ckpt, progress=False)["epoch"]) == 1


def test_plain_state_dict_is_not_reported_as_other_settings(tmp_path, digits):
    """Used to say 'written with other settings' and list every default."""
    path = tmp_path / "pretrained.pt"
    torch.save(tiny_model().state_dict(), path)
    with pytest.raises(tr.CheckpointMismatchError, match="not a training checkpoint written by fit") as info:
        tr.fit(tiny_model(), digits, CE1, checkpoint=path, progress=False)
    assert "model.load_state_dict" in str(info.value)


def test_checkpoint_of_another_model_says_so(digits, tmp_path):
    from hncam_utils.models import digits_cnn

    ckpt = tmp_path / "m.pt"
    tr.fit(tiny_model(), digits, CE1, checkpoint=ckpt, progress=False)
    with pytest.raises(tr.CheckpointMismatchError, match="weights of another model"):
        tr.fit(digits_cnn(width=8), digits, CE1, checkpoint=ckpt, progress=False)


def test_a_folder_as_checkpoint(digits, tmp_path):
    with pytest.raises(IsADirectoryError, match="checkpoint="):
        tr.fit(tiny_model(), digits, CE1, checkpoint=tmp_path, progress=False)


# ------------------------------------------------------------------ models: fail at construction, not in forward


def test_torchvision_cam_refuses_models_it_cannot_serve():
    """Used to accept GoogLeNet / Inception-v3 (auxiliary classifiers) and a ResNet whose fc has the wrong width,
    and fail later inside forward with a shape error."""
    from torchvision import models as tvm

    with pytest.raises(TypeError, match=r"auxiliary classifier\(s\) \['aux1', 'aux2'\]"):
        models.TorchvisionCAM(tvm.googlenet(weights=None, aux_logits=True, init_weights=False))
    resnet = tvm.resnet18(weights=None)
    resnet.fc = nn.Linear(100, 10)
    with pytest.raises(ValueError, match=r"model.fc expects 100 input features.*nn.Linear\(512, num_classes\)"):
        models.TorchvisionCAM(resnet)
    ok = tvm.googlenet(weights=None, aux_logits=False, init_weights=False, transform_input=False).eval()
    wrapped = models.TorchvisionCAM(ok).eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(wrapped(x).logits, ok(x), atol=1e-5)


# ------------------------------------------------------------------ data: silent cases


def test_cluttered_digits_noise_nan_is_refused_not_noise_free():
    """noise=NaN used to build noise-free images (NaN < 0 is False, NaN > 0 is False)."""
    with pytest.raises(ValueError, match="noise must be a finite number >= 0, got nan"):
        ClutteredDigits("train", "easy", n_train=8, n_test=8, noise=NAN)


def test_cluttered_digits_config_lists_become_tuples_and_stay_hashable():
    cfg = ClutteredDigitsConfig(n_train=8, n_test=8, fragment_size=[8, 10])
    assert cfg.fragment_size == (8, 10) and hash(cfg)
    assert len(ClutteredDigits("train", cfg)) == 8


# ------------------------------------------------------------------ download: nothing half-done is trusted


def test_fetch_dataset_single_url_string_is_one_source(tmp_path, monkeypatch):
    """A URL passed as a string (not a list) used to be tried character by character."""
    seen = []

    def fake_download(urls, dest, md5, **kw):
        seen.append(list(urls))
        raise download.DownloadError("no", dest=dest, md5=md5, attempts=[])

    monkeypatch.setattr(download, "download_url", fake_download)
    monkeypatch.delenv("HNCAM_CIFAR10_URL", raising=False)
    with pytest.raises(download.DownloadError):
        download.fetch_dataset("cifar10", tmp_path, urls="http://127.0.0.1:9/cifar.tgz", progress=False)
    assert seen == [["http://127.0.0.1:9/cifar.tgz"]]


def test_failed_extraction_leaves_nothing_a_later_call_would_trust(tmp_path, monkeypatch):
    """An extraction that fails half-way (disk full, Ctrl-C) leaves neither the data folder nor a temporary one;
    the next call unpacks the archive again and succeeds."""
    import tarfile

    spec = download.DatasetSpec(name="toy", title="Toy", filename="toy.tar.gz", urls=(), md5="0" * 32, size=None,
                                folder="toy", markers=("a.txt", "b.txt"), env_var="HNCAM_TOY_URL")
    src = tmp_path / "src" / "toy"
    src.mkdir(parents=True)
    for name in ("a.txt", "b.txt"):
        (src / name).write_text(name)
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "toy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="toy")
    monkeypatch.setitem(download.DATASETS, "toy", spec.__class__(**{**spec.__dict__, "md5": download.md5sum(archive)}))
    monkeypatch.setitem(download._ALIASES, "toy", "toy")

    real_extract = tarfile.TarFile.extract
    calls = []

    def failing_extract(self, member, *args, **kwargs):
        calls.append(member.name)
        if member.name.endswith("b.txt"):
            raise OSError(28, "No space left on device")
        return real_extract(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", failing_extract)
    with pytest.raises(OSError, match="No space left"):
        download.fetch_dataset("toy", root, progress=False)
    assert sorted(p.name for p in root.iterdir()) == ["toy.tar.gz"]  # no 'toy', no hidden temporary folder
    monkeypatch.setattr(tarfile.TarFile, "extract", real_extract)
    folder = download.fetch_dataset("toy", root, progress=False)
    assert (folder / "b.txt").read_text() == "b.txt"


# ------------------------------------------------------------------ command line: one line, exit status 2


def _main(args, capsys):
    from hncam_utils.cli import main

    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "env, args, expect",
    [
        ({"HNCAM_PROFILE": "bogus"}, ["env"], "HNCAM_PROFILE='bogus'"),
        ({"HNCAM_DEVICE": "bogus"}, ["env"], "HNCAM_DEVICE='bogus'"),
        ({"HNCAM_PROFILE": "bogus"}, ["compare"], "HNCAM_PROFILE='bogus'"),
        ({"HNCAM_DEVICE": "bogus"}, ["compare", "--profile", "smoke"], "HNCAM_DEVICE='bogus'"),
        ({}, ["compare", "--profile", "smoke", "--device", "tpu"], "device='tpu'"),
        ({}, ["compare", "--profile", "smoke", "--lambda-kd", "nan"], "hnc_lambda"),
        ({}, ["compare", "--profile", "smoke", "--lambda-kd", "0"], "hnc_lambda=0"),
        ({}, ["compare", "--profile", "smoke", "-k", "0"], "k must be >= 1"),
        ({}, ["compare", "--profile", "smoke", "--n-train", "0"], "--n-train"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(env, args, expect, capsys, monkeypatch, tmp_path):
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    code, err = _main(args + (["--out", str(tmp_path / "out")] if args[0] == "compare" else []), capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expect in err, err
    assert "Traceback" not in err


def test_cli_hncam_home_pointing_at_a_file(capsys, monkeypatch, tmp_path):
    home = tmp_path / "file"
    home.write_text("x")
    monkeypatch.setenv("HNCAM_HOME", str(home))
    code, err = _main(["compare", "--profile", "smoke", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1 and "HNCAM_HOME" in err and "is a file" in err


@pytest.mark.parametrize("where", ["below a file", "in /proc"])
def test_cli_unwritable_out_fails_before_training(where, capsys, tmp_path, monkeypatch):
    """An unwritable --out used to end in a traceback, after every run had trained."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub" if where == "below a file" else "/proc/hncam-test-out"
    trained = []
    monkeypatch.setattr(experiments, "run_experiment", lambda *a, **k: trained.append(1))
    code, err = _main(["compare", "--profile", "smoke", "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--out=" in err and trained == []


def test_cli_subprocess_prints_no_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HNCAM_DEVICE": "bogus", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "hncam_utils", "env"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "HNCAM_DEVICE='bogus'" in proc.stderr
