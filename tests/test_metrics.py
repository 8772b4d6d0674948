"""Metrics on hand-made maps whose answers are known."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from hncam_utils.data import ClutteredDigits
from hncam_utils.metrics import (
    box_iou,
    cam_to_box,
    energy_in_box,
    evaluate,
    gt_and_top_negative_cams,
    localization_stats,
    mean_average_precision,
    negative_cam_stats,
    pointing_game,
    topk_accuracy,
)
from hncam_utils.models import digits_cnn
from hncam_utils.runtime import seed_everything


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    y = torch.tensor([1, 2, 0])
    acc = topk_accuracy(logits, y, (1, 2, 3))
    assert acc[1] == pytest.approx(100 / 3) and acc[2] == pytest.approx(200 / 3) and acc[3] == 100
    with pytest.raises(ValueError, match="k = 4"):
        topk_accuracy(logits, y, (4,))
    with pytest.raises(ValueError):
        topk_accuracy(logits, y[:2])


def test_mean_average_precision_perfect_and_reversed():
    y = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]]).float()
    assert mean_average_precision(y * 2 - 1, y) == pytest.approx(100)
    assert mean_average_precision(-(y * 2 - 1), y) < 60


def test_negative_cam_stats_on_known_maps():
    cams = torch.zeros(1, 4, 2, 2)
    cams[0, 0] = torch.tensor([[5.0, 0.0], [0.0, 0.0]])  # ground truth, peak 5
    cams[0, 1] = torch.tensor([[2.0, 1.0], [-1.0, 0.0]])  # sum 2, peak 2
    cams[0, 2] = torch.tensor([[4.0, -3.0], [-3.0, -3.0]])  # sum -5, peak 4
    cams[0, 3] = torch.tensor([[0.5, 0.5], [0.5, 0.5]])  # sum 2.0, ties with class 1? no: 2.0 vs 2.0
    cams[0, 3] += 0.1  # sum 2.4 > 2: ranked first
    stats = negative_cam_stats(cams, torch.tensor([0]), k=2)
    assert float(stats["neg_peak"]) == pytest.approx(0.6)  # top-1 negative by score is class 3
    assert float(stats["neg_peak_topk"]) == pytest.approx((0.6 + 2.0) / 2)
    assert float(stats["gt_peak"]) == 5.0 and float(stats["neg_ratio"]) == pytest.approx(0.6 / 5)
    assert float(stats["num_posi"]) == 2 + 1 + 4  # positive pixels over all negative classes
    assert float(stats["posi_frac"]) == pytest.approx(7 / 12)


def test_localization_on_known_maps():
    cam = torch.zeros(10, 10)
    cam[2:5, 3:7] = 1.0
    cam[3, 4] = 2.0
    cam[8, 8] = 0.5
    box = torch.tensor([3, 2, 7, 5])  # x0, y0, x1, y1
    assert pointing_game(cam, box) == 1.0
    assert pointing_game(cam, torch.tensor([0, 0, 2, 2])) == 0.0
    total = 12 + 1 + 0.5
    assert energy_in_box(cam, box) == pytest.approx(13 / total)
    assert cam_to_box(cam, threshold=0.4) == (3, 2, 7, 5)  # largest region; the lone pixel is dropped
    assert box_iou((3, 2, 7, 5), box.tolist()) == 1.0
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0
    assert energy_in_box(-cam, box) == 0.0


def test_localization_stats_upsamples_to_the_image():
    gt = torch.zeros(2, 4, 4)
    gt[0, 0, 0] = 1.0  # top-left quadrant of a 16x16 image
    gt[1, 3, 3] = 1.0
    boxes = torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4]])
    stats = localization_stats(gt, boxes, (16, 16))
    assert stats["pointing"].tolist() == [1.0, 0.0]
    assert float(stats["energy_in_box"][0]) > 0.5 and float(stats["energy_in_box"][1]) < 0.05


def test_evaluate_and_top_negative_cams_on_a_model():
    seed_everything(0)
    model = digits_cnn(width=4).eval()
    test = ClutteredDigits("test", "easy", with_boxes=True, n_train=10, n_test=40)
    res = evaluate(model, DataLoader(test, batch_size=16))
    for key in ("top1", "top5", "loss", "neg_peak", "neg_ratio", "num_posi", "posi_frac", "pointing", "energy_in_box", "box_iou"):
        assert key in res and math.isfinite(res[key]), key
    assert 0 <= res["pointing"] <= 1 and 0 <= res["posi_frac"] <= 1
    cams, classes = gt_and_top_negative_cams(model, test.images[:5], test.targets[:5], n=3)
    assert cams.shape == (5, 4, 12, 12) and classes.shape == (5, 4)
    assert torch.equal(classes[:, 0], test.targets[:5])
    assert not (classes[:, 1:] == classes[:, :1]).any()  # negatives never include the ground truth
    with torch.no_grad():
        logits = model(test.images[:5]).logits
    assert torch.allclose(cams.mean(dim=(2, 3)), logits.gather(1, classes), atol=1e-5)
    expected = logits.scatter(1, test.targets[:5, None], float("-inf")).topk(3, dim=1).indices
    assert torch.equal(classes[:, 1:], expected)


def test_collect_outputs_matches_one_big_forward():
    from hncam_utils.metrics import collect_outputs

    seed_everything(0)
    model = digits_cnn(width=4).eval()
    test = ClutteredDigits("test", "easy", with_boxes=True, n_train=10, n_test=20)
    out = collect_outputs(model, DataLoader(test, batch_size=7))
    with torch.no_grad():
        ref = model(test.images)
    assert torch.allclose(out["logits"], ref.logits, atol=1e-5)
    assert out["cams"].shape == (20, 10, 12, 12) and torch.equal(out["targets"], test.targets)
    assert torch.equal(out["boxes"], test.boxes)
    assert torch.allclose(out["cams"].mean(dim=(2, 3)), ref.logits, atol=1e-5)


def test_most_confused_pairs():
    import numpy as np

    from hncam_utils.metrics import most_confused_pairs

    cm = np.array([[9, 3, 0], [1, 8, 5], [3, 0, 7]])
    assert most_confused_pairs(cm, 3) == [(1, 2, 5), (0, 1, 3), (2, 0, 3)]
    assert most_confused_pairs(np.eye(3, dtype=int), 2) == []
    with pytest.raises(ValueError, match="square"):
        most_confused_pairs(np.zeros((2, 3)))


def test_plots_draw_without_error():
    from hncam_utils.plots import plot_canvases, plot_cam_grid, plot_history

    ds = ClutteredDigits("test", "multilabel", with_boxes=True, n_train=10, n_test=5)
    fig = plot_canvases(ds.images, ds.targets, ds.boxes, ncols=3)
    assert len(fig.axes) == 6 and len(fig.axes[0].patches) == int(ds.targets[0].sum())
    hist = {"ce": [{"train_loss": [2.0, 1.0], "test_acc": [50.0, 60.0]}] * 2}
    assert len(plot_history(hist).axes) == 2
    cams = {"a": torch.randn(2, 3, 4, 4), "b": torch.randn(2, 3, 4, 4)}
    classes = {"a": torch.tensor([[0, 1, 2], [1, 0, 2]]), "b": torch.tensor([[0, 2, 1], [1, 2, 0]])}
    fig = plot_cam_grid(torch.rand(2, 1, 8, 8), cams, classes)
    images = [a for a in fig.axes if a.images][1:7]
    scales = {im.get_clim() for a in images for im in a.images if im.get_cmap().name == "RdBu_r"}
    assert len(scales) == 1  # one shared colour scale for every CAM panel


def test_cam_grid_marks_predictions_draws_boxes_and_shows_peaks():
    from hncam_utils.plots import plot_cam_grid

    images = torch.rand(2, 1, 8, 8)
    cams = {"ce": torch.zeros(2, 2, 4, 4), "kd": torch.zeros(2, 2, 4, 4)}
    cams["ce"][0, 1, 1, 1] = 3.0
    classes = {"ce": torch.tensor([[4, 5], [6, 7]]), "kd": torch.tensor([[4, 8], [6, 5]])}
    boxes = torch.tensor([[1, 1, 5, 6], [2, 2, 7, 7]])
    fig = plot_cam_grid(images, cams, classes, boxes=boxes, targets=torch.tensor([1, 2]), first_is_gt=False,
                        show_peak=True, predictions={"ce": torch.tensor([1, 3]), "kd": torch.tensor([1, 2])})
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles[0] == "y = 1" and "neg 1: 4" in titles[1] and "GT" not in " ".join(titles)
    assert "ce, pred 3 (wrong)" in " ".join(titles) and "kd, pred 2\n" in " ".join(titles)
    assert any("neg 2: 5, peak 3.0" in t for t in titles)
    assert all(len(a.patches) == 1 for a in fig.axes[:-1])  # the box on the image and on every map
    with pytest.raises(ValueError, match="targets"):
        plot_cam_grid(images, cams, classes, first_is_gt=False)
    with pytest.raises(ValueError, match="predictions lacks"):
        plot_cam_grid(images, cams, classes, predictions={"ce": torch.tensor([1, 3])})


def test_peak_regions_sorts_maxima_into_target_other_ink_and_background():
    from hncam_utils.metrics import PEAK_REGIONS, peak_regions

    ink = torch.zeros(3, 8, 8, dtype=torch.bool)
    ink[:, 0:2, 6:8] = True                      # a fragment in the top-right corner
    boxes = torch.tensor([[0, 4, 4, 8]] * 3)     # the target: bottom-left quarter
    cams = torch.zeros(3, 8, 8)
    cams[0, 6, 1] = 5.0                          # inside the box
    cams[1, 2, 5] = 5.0                          # one pixel off the fragment: within the margin
    cams[2, 5, 6] = 5.0                          # far from any ink
    codes = peak_regions(cams, boxes, ink, margin=1)
    assert [PEAK_REGIONS[c] for c in codes] == ["target", "other ink", "background"]
    assert peak_regions(cams, boxes, ink, margin=0)[1] == 2
    with pytest.raises(ValueError, match="expected cams"):
        peak_regions(cams[0], boxes, ink)
