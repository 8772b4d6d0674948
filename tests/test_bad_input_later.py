"""Bad input in the modules added after the first bad-input pass (issue 7's catalogue, continued): wsol,
base_losses, robustness, distributed, data.noise, finegrained and widgets.

Each case calls a public function the wrong way and asserts the exception's type AND that its message names
the argument at fault (and, where it matters, the value or the fix). Most cases here used to pass silently,
or fail with a message from deep inside numpy / torch that named neither the argument nor the fix.
"""

import numpy as np
import pytest
import torch

from hncam_utils import base_losses as bl
from hncam_utils import distributed as D
from hncam_utils import finegrained as fg
from hncam_utils import robustness as rb
from hncam_utils import wsol
from hncam_utils.data import noise as nz
from hncam_utils.models import digits_cnn
from hncam_utils.widgets import CAMExplorer

NAN, INF = float("nan"), float("inf")
LOGITS, Y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
BOX = torch.tensor([[1.0, 1.0, 10.0, 10.0], [2.0, 2.0, 20.0, 20.0]])
IMAGES, LABELS = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])


def _model():
    torch.manual_seed(0)
    return digits_cnn(5, width=4).eval()


def _noise():
    return nz.make_noisy_labels([0, 1, 2, 0, 1, 2], 0.3, num_classes=3)


def _wsol_result(n=3):
    ev = wsol.WSOLEvaluator(thresholds=[0.5])
    ev.accumulate(torch.rand(n, 3, 3), BOX[:1].expand(n, 4), (28, 28))
    return ev.compute()


def _explorer(**kwargs):
    return CAMExplorer({"ce": _model()}, IMAGES, targets=LABELS, **kwargs)


def _curve():
    return rb.RobustnessCurve((0.0, 0.1), (90.0, 10.0), 10, "fgsm", "Linf", 1, None)


# (id, call, exception type, text the message must contain)
CASES = [
    # ---------------------------------------------------------------- wsol
    ("cam_thresholds step str", lambda: wsol.cam_thresholds("0.1"), TypeError, "step must be a number"),
    ("prepare_cams numpy", lambda: wsol.prepare_cams(np.zeros((2, 3, 3)), (8, 8)), TypeError, "cams must be a torch.Tensor"),
    ("prepare_cams size int", lambda: wsol.prepare_cams(torch.zeros(2, 3, 3), 8), TypeError, "size must be (H, W)"),
    ("prepare_cams size 0", lambda: wsol.prepare_cams(torch.zeros(2, 3, 3), (0, 8)), ValueError, "size[0] must be an int >= 1"),
    ("boxes_from_cam not normalised", lambda: wsol.boxes_from_cam(np.full((4, 4), 3.0), [0.5]), ValueError,
     "prepare_cams"),
    ("boxes_from_cam threshold 2", lambda: wsol.boxes_from_cam(np.full((4, 4), 0.5), [2.0]), ValueError,
     "thresholds must be a non-empty 1-D grid in [0, 1)"),
    ("box_iou_matrix 5 numbers", lambda: wsol.box_iou_matrix(np.zeros(5), np.zeros((1, 4))), ValueError,
     "a must have shape (..., 4)"),
    ("box_iou_matrix text", lambda: wsol.box_iou_matrix(np.zeros((1, 4)), "box"), TypeError, "b must be boxes"),
    ("gt_box_pixels 3 numbers", lambda: wsol.gt_box_pixels(torch.zeros(2, 3)), ValueError, "boxes must have shape (..., 4)"),
    ("WSOLEvaluator thresholds text", lambda: wsol.WSOLEvaluator(thresholds=["a"]), TypeError, "thresholds must be"),
    ("WSOLEvaluator one IoU", lambda: wsol.WSOLEvaluator(iou_thresholds=0.5), TypeError, "e.g. (0.3, 0.5, 0.7)"),
    ("WSOLEvaluator IoU 1.5", lambda: wsol.WSOLEvaluator(iou_thresholds=(0.5, 1.5)), ValueError, "iou_thresholds[1]"),
    ("WSOLEvaluator loc text", lambda: wsol.WSOLEvaluator(loc_threshold="0.2"), TypeError, "loc_threshold must be a number"),
    ("accumulate numpy cams", lambda: wsol.WSOLEvaluator().accumulate(np.zeros((2, 3, 3)), BOX), TypeError, "cams"),
    ("accumulate boxes of 3", lambda: wsol.WSOLEvaluator().accumulate(torch.zeros(2, 3, 3), torch.zeros(2, 3)),
     ValueError, "boxes must have shape (..., 4)"),
    ("accumulate image_size 0", lambda: wsol.WSOLEvaluator().accumulate(torch.zeros(2, 3, 3), BOX, (0, 0)), ValueError,
     "image_size[0]"),
    ("evaluate_wsol (images, labels)", lambda: wsol.evaluate_wsol(_model(), [(IMAGES, LABELS)]), TypeError,
     "(images, labels, boxes)"),
    ("evaluate_wsol function", lambda: wsol.evaluate_wsol(lambda x: x, [(IMAGES, LABELS, BOX)]), TypeError,
     "model must be a torch.nn.Module"),
    ("evaluate_wsol k 0", lambda: wsol.evaluate_wsol(_model(), [(IMAGES, LABELS, BOX)], k=0), ValueError, "k must be"),
    # ---------------------------------------------------------------- base_losses
    ("gce q text", lambda: bl.generalized_cross_entropy(LOGITS, Y, q="0.5"), TypeError, "q must be a number"),
    ("gce label 9 of 5 classes", lambda: bl.generalized_cross_entropy(LOGITS, torch.tensor([0, 1, 2, 9])), ValueError,
     "targets must be class indices in [0, 4]"),
    ("gce integer logits", lambda: bl.generalized_cross_entropy(LOGITS.long(), Y), TypeError, "logits.float()"),
    ("focal gamma NaN", lambda: bl.focal_loss(LOGITS, Y, gamma=NAN), ValueError, "gamma"),
    ("focal gamma inf", lambda: bl.focal_loss(LOGITS, Y, gamma=INF), ValueError, "gamma"),
    ("cosface scale text", lambda: bl.cosface_loss(LOGITS, Y, scale="s"), TypeError, "scale must be a number"),
    ("cosface margin None", lambda: bl.cosface_loss(LOGITS, Y, scale=10, margin=None), TypeError, "margin"),
    ("cosface label -1", lambda: bl.cosface_loss(LOGITS, torch.tensor([0, 1, 2, -1]), scale=10), ValueError,
     "class indices"),
    ("check_base_loss q text", lambda: bl.check_base_loss("gce", {"gce_q": "x"}), TypeError, "gce_q"),
    ("check_base_loss gamma NaN", lambda: bl.check_base_loss("focal", {"focal_gamma": NAN}), ValueError, "focal_gamma"),
    # ---------------------------------------------------------------- robustness
    ("Normalized not a model", lambda: rb.Normalized("model", 0.5, 0.5), TypeError, "model must be a torch.nn.Module"),
    ("Normalized std text", lambda: rb.Normalized(_model(), 0.5, "a"), TypeError, "std must be a number"),
    ("Normalized std NaN", lambda: rb.Normalized(_model(), 0.5, NAN), ValueError, "std must be > 0 and finite"),
    ("default_step_size 0 steps", lambda: rb.default_step_size(0.1, 0), ValueError, "steps must be an int >= 1"),
    ("default_step_size L1", lambda: rb.default_step_size(0.1, 10, "L1"), ValueError, "norm must be"),
    ("attack a device name", lambda: rb.accuracy_under_attack(_model(), [(IMAGES, LABELS)], [0.1], device="gpu",
                                                               progress=False), ValueError, "device must be"),
    ("attack label 7 of 5 classes", lambda: rb.adversarial_examples(_model(), IMAGES, torch.tensor([0, 7]), 0.1),
     ValueError, "targets must be class indices in [0, 4]"),
    ("attack epsilons text", lambda: rb.accuracy_under_attack(_model(), [(IMAGES, LABELS)], "0.1", progress=False),
     TypeError, "epsilons must be a number or a sequence"),
    ("curve accuracy_at text", lambda: _curve().accuracy_at("x"), TypeError, "epsilon must be a number"),
    ("curve epsilon_at text", lambda: _curve().epsilon_at("x"), TypeError, "level must be a number"),
    ("curve epsilon_at fraction", lambda: _curve().epsilon_at(101), ValueError, "an accuracy in %"),
    # ---------------------------------------------------------------- distributed (the pieces of the train command)
    ("ShardSampler negative size", lambda: D.ShardSampler(-1, 0, 2), ValueError, "n must be an int >= 0"),
    ("ShardSampler size text", lambda: D.ShardSampler("9", 0, 2), TypeError, "n must be an int"),
    ("ShardSampler world 0", lambda: D.ShardSampler(9, 0, 0), ValueError, "world_size must be an int >= 1"),
    ("ShardSampler rank 2 of 2", lambda: D.ShardSampler(9, 2, 2), ValueError, "rank must be an int in [0, 1]"),
    ("SeededAugmentation seed text", lambda: D.SeededAugmentation([1, 2], "a"), TypeError, "seed must be an int"),
    ("SeededAugmentation not a data set", lambda: D.SeededAugmentation(5, 0), TypeError, "base must be a map-style"),
    ("build_datasets image_size 0", lambda: D.build_datasets("cifar10", None, 0, True), ValueError, "image_size"),
    ("build_datasets hflip text", lambda: D.build_datasets("cifar10", None, 32, "yes"), TypeError, "hflip"),
    ("build_cam_model pretrained text", lambda: D.build_cam_model("digits_cnn", 10, pretrained="no"), TypeError,
     "pretrained must be True or False"),
    ("official_lambda ce", lambda: D.official_lambda("ce", "resnet101"), ValueError, "'ce') has no HNC term"),
    ("load_model of another checkpoint", lambda: D.load_model(_foreign_checkpoint()), ValueError,
     "not written by `python -m hncam_utils train`"),
    ("wrap_ddp not a model", lambda: D.wrap_ddp("model", D.World()), TypeError, "model must be a torch.nn.Module"),
    ("init_world timeout 0", lambda: D.init_world("cpu", 0), D.UsageError, "--dist-timeout must be"),
    # ---------------------------------------------------------------- data.noise
    ("noise seed text", lambda: nz.make_noisy_labels([0, 1, 2], 0.2, seed="a"), TypeError, "seed must be an int"),
    ("noise num_classes text", lambda: nz.make_noisy_labels([0, 1, 2], 0.2, num_classes="3"), TypeError, "num_classes"),
    ("noise flips as a list", lambda: nz.make_noisy_labels([0, 1, 2], 0.2, kind="asymmetric", flips=[1, 2]),
     TypeError, "flips must be a dict"),
    ("noise flip partner text", lambda: nz.make_noisy_labels([0, 1, 2], 0.2, kind="asymmetric", flips={0: "1"}),
     TypeError, "must name a partner class"),
    ("memorisation of logits", lambda: _noise().memorisation(torch.randn(6, 3)), ValueError, "logits.argmax(1)"),
    ("memorisation of floats", lambda: _noise().memorisation(torch.tensor([0.5, 1.2, 2.0, 0.0, 1.0, 2.0])), TypeError,
     "integer class indices"),
    ("memorisation of text", lambda: _noise().memorisation("abc"), TypeError, "predictions must be"),
    ("load_noisy_labels folder", lambda: nz.load_noisy_labels(_folder(), [0, 1]), IsADirectoryError, ".json file"),
    ("load_noisy_labels incomplete", lambda: nz.load_noisy_labels(_incomplete_noise_file(), [0, 1]), ValueError,
     "incomplete noisy-label file (no num_classes"),
    ("dataset_labels of a number", lambda: nz.dataset_labels(5), TypeError, "dataset must be a data set"),
    # ---------------------------------------------------------------- finegrained
    ("load_cub profile name", lambda: fg.load_cub("smoke"), TypeError, "CUB_SETTINGS['smoke']"),
    ("build_cub_model profile name", lambda: fg.build_cub_model("smoke", 10), TypeError, "setting must be a CUBSetting"),
    ("build_cub_model 1 class", lambda: fg.build_cub_model(fg.CUB_SETTINGS["smoke"], 1), ValueError, "num_classes"),
    ("run_cub without data", lambda: fg.run_cub(fg.CUB_SETTINGS["smoke"], None), TypeError, "data must be the CUBData"),
    ("most_changed of dicts", lambda: fg.most_changed({}, {}), TypeError, "base must be a WSOLResult"),
    ("most_changed n 0", lambda: fg.most_changed(_wsol_result(), _wsol_result(), n=0), ValueError, "n must be"),
    ("most_changed other test sets", lambda: fg.most_changed(_wsol_result(3), _wsol_result(4)), ValueError,
     "different test sets"),
    ("example_maps not models", lambda: fg.example_maps({"ce": "model"}, None, [0]), TypeError, "models['ce']"),
    # ---------------------------------------------------------------- widgets
    ("explorer float targets", lambda: CAMExplorer({"ce": _model()}, IMAGES, targets=LABELS.float()), TypeError,
     "targets must be integer class ids"),
    ("explorer target 7 of 5 classes", lambda: CAMExplorer({"ce": _model()}, IMAGES, targets=torch.tensor([0, 7])),
     ValueError, "targets must be class ids in [0, 4]"),
    ("explorer n_ranks 0", lambda: _explorer(n_ranks=0), ValueError, "n_ranks must be an int >= 1"),
    ("explorer ig_steps text", lambda: _explorer(ig_steps="32"), TypeError, "ig_steps must be an int"),
    ("explorer panel_px 2", lambda: _explorer(panel_px=2), ValueError, "panel_px"),
    ("compute one label as text", lambda: _explorer().compute(models="ce"), TypeError, "e.g. ['ce']"),
    ("update one label as text", lambda: _explorer().update(models="ce"), TypeError, "e.g. ['ce']"),
    ("panels opacity text", lambda: _explorer().panels(_explorer().compute(), opacity="0.5"), TypeError, "opacity"),
    ("most_confused n 0", lambda: _explorer().most_confused(0), ValueError, "n must be an int >= 1"),
    ("static_grid unknown model", lambda: _explorer().static_grid([0], models=["hnc"]), ValueError, "unknown model"),
    ("static_grid n_negatives text", lambda: _explorer().static_grid([0], n_negatives="2"), TypeError, "n_negatives"),
]


def _foreign_checkpoint():
    import tempfile

    path = tempfile.mkdtemp() + "/weights.pt"
    torch.save({"model": {}, "epoch": 1}, path)
    return path


def _folder():
    import tempfile

    return tempfile.mkdtemp()


def _incomplete_noise_file():
    import json
    import tempfile

    path = tempfile.mkdtemp() + "/noise.json"
    with open(path, "w") as f:
        json.dump({"format": nz._FORMAT, "version": nz._VERSION}, f)
    return path


@pytest.mark.parametrize("call, error, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_the_problem(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value), str(info.value)


def test_good_input_still_works():
    """The checks refuse only what is wrong: the same functions on good input."""
    maps = wsol.prepare_cams(torch.rand(2, 3, 3), torch.Size([8, 8]))
    assert maps.shape == (2, 8, 8) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert len(wsol.boxes_from_cam(maps[0].numpy(), wsol.cam_thresholds(0.25))) == 4
    assert wsol.box_iou_matrix([[0, 0, 9, 9]], BOX.numpy()).shape == (1, 2)
    ev = wsol.WSOLEvaluator(iou_thresholds=[0.5], loc_threshold=0.2)
    ev.accumulate(torch.rand(2, 3, 3), BOX, (28, 28), torch.tensor([True, False]))
    assert ev.compute().n == 2
    assert float(bl.focal_loss(LOGITS, Y.int(), gamma=0)) == pytest.approx(float(torch.nn.functional.cross_entropy(LOGITS, Y)))
    assert rb.default_step_size(0.1, 10, "L2", numel=4) == pytest.approx(0.0125)
    assert _curve().epsilon_at(50.0) == pytest.approx(0.05) and _curve().accuracy_at(0) == 90.0
    assert list(D.ShardSampler(5, 1, 2)) == [1, 3] and D.official_lambda("hnc_kd", "resnet152") == 0.0048
    assert _noise().memorisation([0, 1, 2, 0, 1, 2])["clean_fit"] == 100.0
    ex = _explorer(n_ranks=9)
    assert ex.n_ranks == 5 and ex.compute(models=("ce",)).models == ["ce"] and len(ex.most_confused(1)) == 1
    changed = fg.most_changed(_wsol_result(), _wsol_result(), n=2)
    assert set(changed) == {"improved", "damaged"}
