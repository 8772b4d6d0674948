"""WSOL metrics (Choe et al.) on hand-made maps and boxes, checked against hand counts and an independent
brute-force box finder; the stride-1 ResNet-50 and its weights' error; evaluate_wsol on the CUB fixture."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision.models._api
from torch.utils.data import DataLoader

from hncam_utils.wsol import (
    WSOLEvaluator,
    box_iou_matrix,
    boxes_from_cam,
    cam_thresholds,
    evaluate_wsol,
    gt_box_pixels,
    prepare_cams,
)


def _rect(h, w, *rects):
    m = np.zeros((h, w), dtype=np.float32)
    for x0, y0, x1, y1, v in rects:
        m[y0:y1, x0:x1] = v
    return m


def test_iou_by_hand():
    a = np.array([[0, 0, 9, 9]])  # 10 x 10 pixels in the integer convention
    assert box_iou_matrix(a, a)[0, 0] == 1.0
    assert box_iou_matrix(a, [[5, 0, 14, 9]])[0, 0] == pytest.approx(50 / 150)
    assert box_iou_matrix(a, [[20, 20, 29, 29]])[0, 0] == 0.0
    assert box_iou_matrix(a, [[0, 0, 4, 4]])[0, 0] == pytest.approx(25 / 100)
    m = box_iou_matrix([[0, 0, 9, 9], [5, 0, 14, 9]], [[0, 0, 9, 9], [20, 20, 29, 29], [5, 0, 14, 9]])
    assert m.shape == (2, 3) and m[1, 2] == 1.0 and m[0, 1] == 0.0


def test_prepare_cams_resizes_and_min_max_normalises():
    cams = torch.tensor([[[1.0, 2.0], [3.0, 5.0]], [[-4.0, -4.0], [-4.0, -4.0]]])
    out = prepare_cams(cams, (2, 2))
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # a constant map becomes all zeros
    big = prepare_cams(torch.randn(3, 7, 7), (224, 224))
    assert big.shape == (3, 224, 224) and float(big.min()) == 0.0 and float(big.max()) == 1.0
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        prepare_cams(torch.zeros(7, 7), (224, 224))


def test_boxes_from_cam_regions_and_thresholds():
    cam = _rect(40, 50, (2, 3, 12, 9, 1.0), (20, 10, 45, 35, 0.6))  # small strong blob, large weaker one
    low, high = boxes_from_cam(cam, [0.3, 0.8], all_regions=True)
    assert sorted(map(tuple, low.tolist())) == [(2, 3, 12, 9), (20, 10, 45, 35)]
    assert high.tolist() == [[2, 3, 12, 9]]  # 0.6 * 255 = 153 is not above int(0.8 * 255)
    largest = boxes_from_cam(cam, [0.3, 0.8], all_regions=False)
    assert largest[0].tolist() == [[20, 10, 45, 35]] and largest[1].tolist() == [[2, 3, 12, 9]]
    # a region touching the border is clipped to W - 1 / H - 1, as Choe et al.'s code does
    edge = boxes_from_cam(_rect(10, 10, (5, 5, 10, 10, 1.0)), [0.5])[0]
    assert edge.tolist() == [[5, 5, 9, 9]]
    # nothing above the threshold (an all-zero map): the empty box
    assert boxes_from_cam(np.zeros((8, 8)), [0.0, 0.5])[0].tolist() == [[0, 0, 0, 0]]
    # diagonal neighbours are one region (8-connectivity, like OpenCV's contours)
    diag = np.eye(6, dtype=np.float32)
    assert boxes_from_cam(diag, [0.5])[0].tolist() == [[0, 0, 5, 5]]


def _brute_force_box(cam, tau):
    """Independent check for maps with one region: the tight box of every pixel above the cut."""
    q = (cam * 255).astype(np.uint8)
    ys, xs = np.nonzero(q > int(tau * q.max()))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    h, w = cam.shape
    return [xs.min(), ys.min(), min(xs.max() + 1, w - 1), min(ys.max() + 1, h - 1)]


def test_threshold_sweep_matches_brute_force_on_a_blob():
    yy, xx = np.mgrid[0:64, 0:64]
    cam = np.exp(-(((xx - 30) / 9.0) ** 2 + ((yy - 26) / 6.0) ** 2)).astype(np.float32)
    gt = np.array([[20, 19, 40, 33]])
    taus = cam_thresholds(0.05)
    boxes = boxes_from_cam(cam / cam.max(), taus, all_regions=False)
    for tau, b in zip(taus, boxes):
        assert b.tolist() == [_brute_force_box(cam / cam.max(), tau)], tau
    ious = [box_iou_matrix(b, gt).max() for b in boxes]
    best = int(np.argmax(ious))
    assert ious[0] < ious[best] - 0.3 and ious[best] > 0.8 and 0.1 < taus[best] < 0.7  # too low: far too large a box


def test_evaluator_counts_by_hand():
    h = w = 32
    gt = torch.tensor([[4.0, 4.0, 12.0, 12.0]] * 3)  # every image's object in the same place
    cams = torch.from_numpy(np.stack([
        _rect(h, w, (4, 4, 12, 12, 1.0)),                            # A: on the object
        _rect(h, w, (20, 20, 30, 30, 1.0)),                          # B: elsewhere
        _rect(h, w, (4, 4, 12, 12, 1.0), (14, 14, 32, 32, 1.0)),     # C: on it, and a larger wrong region
    ]))
    ev = WSOLEvaluator()
    ev.accumulate(cams[:2], gt[:2], correct=torch.tensor([True, True]))
    ev.accumulate(cams[2:], gt[2:], correct=torch.tensor([True]))
    r = ev.compute()
    assert r.n == 3
    assert r.maxboxacc == pytest.approx(100 / 3)  # largest region: only A
    assert r.maxboxacc_v2 == pytest.approx(200 / 3)  # best box over all regions: A and C, at every IoU
    assert r.maxboxacc_at == {0.3: pytest.approx(200 / 3), 0.5: pytest.approx(200 / 3), 0.7: pytest.approx(200 / 3)}
    assert r.gt_known_loc == pytest.approx(100 / 3) and r.top1_loc == pytest.approx(100 / 3)
    assert r.iou.tolist() == [1.0, 0.0, pytest.approx(0.0)]
    assert len(r.box_acc[0.5]) == len(r.thresholds) == 100

    ev = WSOLEvaluator()
    ev.accumulate(cams, gt, correct=torch.tensor([False, True, True]))
    r2 = ev.compute()
    assert r2.gt_known_loc == pytest.approx(100 / 3) and r2.top1_loc == 0.0  # A found but misclassified
    summary = r2.summary()
    assert set(summary) >= {"maxboxacc", "maxboxacc_v2", "gt_known_loc", "top1_loc", "maxboxacc_iou70"}


def test_iou_thresholds_separate_and_fixed_threshold():
    """A box half the object's size counts at IoU 0.3 and 0.5 but not 0.7."""
    gt = torch.tensor([[0.0, 0.0, 19.0, 19.0]])  # 20 x 20 pixels
    cam = torch.from_numpy(_rect(40, 40, (0, 0, 20, 12, 1.0)))[None]  # pixels 0..19 x 0..11
    ev = WSOLEvaluator(loc_threshold=0.2)
    ev.accumulate(cam, gt, correct=torch.tensor([True]))
    r = ev.compute()
    # its box is (0, 0, 20, 12): the region's end as in OpenCV's boundingRect, counted inclusively as in
    # their IoU (21 x 13 = 273 pixels); 20 x 13 of them inside the 400-pixel ground truth
    iou = 260 / (400 + 273 - 260)
    assert r.iou[0] == pytest.approx(iou)
    assert r.maxboxacc_at[0.3] == 100 and r.maxboxacc_at[0.5] == 100 and r.maxboxacc_at[0.7] == 0
    assert r.maxboxacc_v2 == pytest.approx(200 / 3) and r.loc_threshold == pytest.approx(0.2)


def test_cams_are_resized_to_the_image():
    cam = torch.zeros(1, 7, 7)
    cam[0, 2:5, 2:5] = 1.0  # the middle of a 7 x 7 map -> about the middle of a 224 x 224 image
    ev = WSOLEvaluator()
    ev.accumulate(cam, torch.tensor([[64.0, 64.0, 160.0, 160.0]]), image_size=(224, 224))
    assert ev.compute().maxboxacc_at[0.5] == 100.0


def test_bad_arguments():
    with pytest.raises(ValueError):
        WSOLEvaluator(thresholds=[0.5, 1.2])
    with pytest.raises(ValueError):
        WSOLEvaluator(iou_thresholds=[0.0])
    with pytest.raises(ValueError, match="no CAMs"):
        WSOLEvaluator().compute()
    with pytest.raises(ValueError, match="box rows"):
        WSOLEvaluator().accumulate(torch.zeros(2, 4, 4), torch.zeros(3, 4))
    assert gt_box_pixels(torch.tensor([[1.9, 2.2, 10.99, 5.0]])).tolist() == [[1, 2, 10, 5]]


# ------------------------------------------------------------------------------- ResNet-50 and the loop


def test_resnet50_stride_one_gives_14x14_cams_and_weights_error(monkeypatch):
    from hncam_utils.models import WeightsUnavailableError, check_num_classes, resnet50_cam

    x = torch.randn(1, 3, 96, 96)  # 224 px gives 7x7 and 14x14; 96 px gives 3x3 and 6x6
    with torch.no_grad():
        assert resnet50_cam(5).eval()(x).features.shape == (1, 2048, 3, 3)
        model = resnet50_cam(5, last_stride=1).eval()
        out = model(x)
    assert out.features.shape == (1, 2048, 6, 6) and out.logits.shape == (1, 5)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        resnet50_cam(200, weights="DEFAULT", progress=False)
    msg = str(info.value)
    assert "resnet50-" in msg and "checkpoints" in msg and "weights=None" in msg
    with pytest.raises(ValueError, match="unknown ResNet-50 weights"):
        resnet50_cam(200, weights="IMAGENET9K")
    with pytest.raises(ValueError, match="has 5 outputs but CUB-200-2011 has 200 classes.*num_classes=200"):
        check_num_classes(model, 200, "CUB-200-2011")
    check_num_classes(model, 5)


def test_resnet50_pretrained_weights_load_into_the_backbone(monkeypatch):
    from torchvision.models import resnet50

    from hncam_utils.models import resnet50_cam

    reference = resnet50().state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: reference)
    model = resnet50_cam(7, weights="IMAGENET1K_V1", last_stride=1)
    assert torch.equal(model.model.conv1.weight, reference["conv1.weight"])
    assert torch.equal(model.model.layer4[0].conv2.weight, reference["layer4.0.conv2.weight"])
    assert model.classifier.out_features == 7


def test_evaluate_wsol_on_the_cub_fixture(tmp_path):
    from hncam_utils.data import CUB200, cub_transforms, make_cub_fixture
    from hncam_utils.models import digits_cnn

    make_cub_fixture(tmp_path, num_classes=3, per_class=4)
    data = CUB200(tmp_path, "test", transform=cub_transforms(train=False, size=48), return_box=True)
    torch.manual_seed(0)
    model = digits_cnn(num_classes=3, in_channels=3)
    out = evaluate_wsol(model, DataLoader(data, batch_size=4), k=2)
    r = out["wsol"]
    assert r.n == len(data) == 6 and 0 <= r.maxboxacc <= r.maxboxacc_at[0.5] + 1e-9 <= 100  # largest <= best of all
    assert 0 <= out["top1"] <= 100 and out["per_image"]["neg_peak"].shape == (6,)
    assert out["per_image"]["label"].tolist() == data.targets
    with pytest.raises(ValueError, match="label 2 but the model has 2 outputs"):
        evaluate_wsol(digits_cnn(num_classes=2, in_channels=3), DataLoader(data, batch_size=6))


def test_most_changed_picks_the_largest_iou_changes():
    from hncam_utils.finegrained import most_changed

    def result(ious):
        ev = WSOLEvaluator(thresholds=[0.5])
        r = None
        for iou in ious:  # a box of the right width gives each IoU exactly
            w = int(round(iou * 10))
            cam = torch.from_numpy(_rect(12, 12, (0, 0, max(w, 1), 10, 1.0)))[None] if w else torch.zeros(1, 12, 12)
            ev.accumulate(cam, torch.tensor([[0.0, 0.0, 9.0, 9.0]]))
        r = ev.compute()
        return r

    base, other = result([0.5, 0.5, 0.5, 0.5]), result([0.9, 0.5, 0.2, 0.7])
    changed = most_changed(base, other, n=2)
    assert changed["improved"] == [0, 3] and changed["damaged"] == [2]
