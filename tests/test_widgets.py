"""The CAM explorer's logic, without a browser: what it computes, what it caches, how it treats bad input.

The real-browser test (JupyterLab + Chromium) is tests/test_browser.py.
"""

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn

from hncam_utils.cam import compute_cams, shared_scale
from hncam_utils.models import LogitsOnly, digits_cnn
from hncam_utils.widgets import METHODS, CAMExplorer, rank_label


class CountingBody(nn.Module):
    """Wraps a backbone and counts how often it runs."""

    def __init__(self, body):
        super().__init__()
        self.body = body
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.body(x)


def _models(n=3, num_classes=10, counting=True):
    out = {}
    for i, label in enumerate(["ce", "hnc_mse", "hnc_kd"][:n]):
        torch.manual_seed(i)
        m = digits_cnn(num_classes=num_classes)
        with torch.no_grad():  # a non-zero bias, so that CAM - b and Grad-CAM differ visibly
            m.classifier.bias.normal_()
        if counting:
            m.body = CountingBody(m.body)
        out[label] = m.eval()
    return out


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 48, 48, generator=gen)
    targets = torch.tensor([3, 1, 4, 1, 5, 9])
    return images, targets


@pytest.fixture
def explorer(data):
    images, targets = data
    return CAMExplorer(_models(), images, targets=targets, class_names=[f"c{i}" for i in range(10)], ig_steps=16)


def _calls(ex):
    return {k: m.body.calls for k, m in ex.models.items()}


def test_rank_labels():
    assert [rank_label(r) for r in (0, 1, 2, 3, 4, 11, 21)] == [
        "ground truth", "1st negative", "2nd negative", "3rd negative", "4th negative", "11th negative", "21st negative"]


def test_what_it_computes_for_a_selection(explorer, data):
    images, targets = data
    ce = explorer.models["ce"]
    with torch.no_grad():
        logits, feats = ce(images[2:3])
    order = [int(c) for c in logits[0].argsort(descending=True) if int(c) != 4]
    # rank 0 is the ground truth; rank 2 is the reference model's 2nd highest-scoring negative
    assert explorer.compute(index=2, rank=0).class_id == 4
    view = explorer.compute(index=2, rank=2, method="cam")
    assert view.class_id == order[1] and view.class_name == f"c{order[1]}" and view.rank == 2
    assert view.target == 4 and view.models == ["ce", "hnc_mse", "hnc_kd"]
    want = compute_cams(feats, ce.classifier, [order[1]])[0, 0]
    assert torch.allclose(view.raw["ce"], want, atol=1e-6)
    assert view.raw["ce"].shape == (12, 12) and view.maps["ce"].shape == (48, 48)
    # the scores are the model's own: logit, softmax probability, rank among its classes, prediction
    for label, model in explorer.models.items():
        with torch.no_grad():
            lg = model(images[2:3])[0][0]
        sc = view.scores[label]
        assert sc["logit"] == pytest.approx(float(lg[order[1]]), abs=1e-5)
        assert sc["prob"] == pytest.approx(float(lg.softmax(0)[order[1]]), abs=1e-6)
        assert sc["rank"] == int((lg > lg[order[1]]).sum()) + 1
        assert sc["pred"] == int(lg.argmax())
        assert sc["peak"] == pytest.approx(float(view.raw[label].max()))
    # mean of a CAM is the logit (GAP network)
    assert float(view.raw["ce"].mean()) == pytest.approx(view.scores["ce"]["logit"], abs=1e-5)


def test_a_class_name_selects_the_class_for_every_model(explorer):
    view = explorer.update(index=1, class_name=" C7 ")  # case and spaces do not matter
    assert view.class_id == 7 and explorer.state["rank"] is None
    assert view.rank == explorer.ranking(1).index(7)
    view = explorer.update(rank=0)
    assert view.class_id == 1 and explorer.state["class_name"] is None


def test_class_opacity_method_and_model_changes_do_not_rerun_the_backbone(explorer):
    explorer.update(index=0)
    assert _calls(explorer) == {"ce": 1, "hnc_mse": 1, "hnc_kd": 1}
    assert explorer.backbone_runs == 3
    for change in (dict(rank=1), dict(rank=3), dict(class_name="c8"), dict(opacity=0.2), dict(method="gradcam"),
                   dict(method="gradcam_relu"), dict(models=["hnc_kd"]), dict(models=["ce", "hnc_mse", "hnc_kd"]),
                   dict(method="cam", rank=0)):
        explorer.update(**change)
        assert _calls(explorer) == {"ce": 1, "hnc_mse": 1, "hnc_kd": 1}, change
    explorer.update(index=4)  # a new image runs each backbone once
    assert _calls(explorer) == {"ce": 2, "hnc_mse": 2, "hnc_kd": 2}
    explorer.update(index=0, rank=2)  # back to an image already seen: cached
    assert _calls(explorer) == {"ce": 2, "hnc_mse": 2, "hnc_kd": 2}
    assert explorer.backbone_runs == 6


def test_the_feature_cache_is_bounded(data):
    images, targets = data
    ex = CAMExplorer(_models(1), images, targets=targets, cache_size=2)
    for i in (0, 1, 2, 0):
        ex.update(index=i)
    assert len(ex._features) == 2 and ex.backbone_runs == 4  # image 0 had been dropped


def test_gradcam_from_cached_features_equals_captum_on_the_whole_model(explorer, data):
    images, _ = data
    for label in ("ce", "hnc_kd"):
        model = explorer.models[label]
        for c in (0, 5):
            ours = explorer.attribution(label, 3, c, "gradcam")
            captum = LayerGradCam(LogitsOnly(model), model.body).attribute(images[3:4], target=c)[0, 0]
            assert torch.allclose(ours, captum, atol=1e-6)
            # on a GAP + linear network: Grad-CAM x h*w == CAM - b (before the ReLU)
            cam = explorer.attribution(label, 3, c, "cam")
            assert torch.allclose(ours * cam.numel(), cam - model.classifier.bias[c].detach(), atol=1e-5)
            relu = explorer.attribution(label, 3, c, "gradcam_relu")
            assert torch.allclose(relu, ours.clamp_min(0)) and (ours < 0).any()


def test_integrated_gradients_is_computed_once_per_image_model_and_class(explorer, data):
    images, _ = data
    explorer.update(index=0, method="ig", rank=1)
    assert explorer.pixel_runs == 3
    view = explorer.update(opacity=0.3)
    assert explorer.pixel_runs == 3
    assert view.raw["ce"].shape == (48, 48)
    # completeness: the attributions sum to logit(x) - logit(baseline 0), up to the integration error
    model = explorer.models["ce"]
    with torch.no_grad():
        gap = model(images[0:1])[0][0, view.class_id] - model(torch.zeros_like(images[0:1]))[0][0, view.class_id]
    assert float(view.raw["ce"].sum()) == pytest.approx(float(gap), rel=0.05, abs=0.02)
    explorer.update(rank=2)
    assert explorer.pixel_runs == 6


def test_maps_share_one_scale():
    images = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    strong = digits_cnn().eval()
    weak = digits_cnn().eval()
    weak.load_state_dict(strong.state_dict())
    with torch.no_grad():  # the same network with a 10x weaker head: maps 10x weaker
        weak.classifier.weight.mul_(0.1)
        weak.classifier.bias.mul_(0.1)
    ex = CAMExplorer({"strong": strong, "weak": weak}, images, targets=torch.tensor([2, 3]))
    for method in ("cam", "gradcam", "ig"):
        view = ex.update(index=0, rank=1, method=method, opacity=1.0)
        lo, hi = view.scale
        assert (lo, hi) == shared_scale(view.raw.values()) and lo == -hi
        assert hi == pytest.approx(max(float(r.abs().max()) for r in view.raw.values()))
        assert torch.allclose(view.raw["weak"], 0.1 * view.raw["strong"], rtol=1e-3, atol=1e-6)
        # drawn on the shared scale, the weak map stays close to the colour of 0; the strong one does not
        panels = ex.panels(view, opacity=1.0)
        zero = np.array(__import__("matplotlib").colormaps["RdBu_r"](0.5)[:3]) * 255
        dist = {k: np.abs(panels[k].astype(float) - zero).sum(-1).max() for k in ("strong", "weak")}
        assert dist["weak"] < 0.3 * dist["strong"], (method, dist)


def test_opacity_blends_image_and_map(explorer):
    view = explorer.update(index=0)
    img = explorer.panels(view, opacity=0.0)
    assert np.abs(img["ce"].astype(int) - img["image"]).max() <= 1  # opacity 0: the image alone
    full = explorer.panels(view, opacity=1.0)["ce"]
    half = explorer.panels(view, opacity=0.5)["ce"]
    assert np.abs(half.astype(int) - (full.astype(int) + img["image"].astype(int)) / 2).max() <= 1
    with pytest.raises(ValueError, match="opacity"):
        explorer.update(opacity=1.5)


def test_image_lists(data):
    images, targets = data
    ex = CAMExplorer(_models(), images, targets=targets, class_names=[f"c{i}" for i in range(10)])
    logits = {k: torch.stack([ex.features(k, i)[1] for i in range(6)]) for k in ex.models}
    probs = {k: v.softmax(1) for k, v in logits.items()}
    gt = {k: p[torch.arange(6), targets] for k, p in probs.items()}
    neg = probs["ce"].scatter(1, targets[:, None], -1).max(1).values
    confused = [i for i, _ in ex.most_confused()]
    assert confused == torch.argsort(neg - gt["ce"], descending=True, stable=True).tolist()
    gain = (gt["hnc_mse"] + gt["hnc_kd"]) / 2 - gt["ce"]
    assert [i for i, _ in ex.most_improved(3)] == torch.argsort(gain, descending=True, stable=True)[:3].tolist()
    assert "says" in ex.most_confused(1)[0][1]
    with pytest.raises(ValueError, match="at least two models"):
        CAMExplorer(_models(1), images, targets=targets).most_improved()


# ----------------------------------------------------------------------------------------------------------
# bad input: a clear exception from Python, a message (never a traceback) in the widget
# ----------------------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(explorer, data):
    images, targets = data
    with pytest.raises(ValueError, match="no models to show"):
        CAMExplorer({}, images, targets=targets)
    with pytest.raises(ValueError, match=r"different numbers of classes \(ce: 10, other: 5\)"):
        CAMExplorer({"ce": digits_cnn(10), "other": digits_cnn(5)}, images, targets=targets)
    with pytest.raises(TypeError, match="not a CAM model"):
        CAMExplorer({"plain": nn.Linear(3, 3)}, images, targets=targets)
    with pytest.raises(ValueError, match="6 images but 2 targets"):
        CAMExplorer(_models(1), images, targets=targets[:2])
    with pytest.raises(ValueError, match="3 class names for models with 10 classes"):
        CAMExplorer(_models(1), images, targets=targets, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="empty"):
        CAMExplorer(_models(1), images[:0], targets=targets[:0])
    explorer.update(index=2)
    before = dict(explorer.state)
    with pytest.raises(IndexError, match="image index 6 is out of range: choose 0 to 5"):
        explorer.update(index=6)
    with pytest.raises(IndexError, match="out of range"):
        explorer.update(index=-1)
    with pytest.raises(ValueError, match="unknown class name 'zebra'; choose one of: c0, c1"):
        explorer.update(class_name="zebra")
    with pytest.raises(ValueError, match="no model selected"):
        explorer.update(models=[])
    with pytest.raises(ValueError, match="unknown model"):
        explorer.update(models=["nope"])
    with pytest.raises(ValueError, match="unknown method"):
        explorer.update(method="lime")
    with pytest.raises(ValueError, match="rank must be"):
        explorer.update(rank=10)
    assert explorer.state == before  # a failed update changes nothing


def test_the_widget_turns_bad_input_into_messages(explorer):
    w = explorer.widget
    c = explorer._controls
    assert "hncam-explorer" in w._dom_classes
    assert c["message"].value == ""
    first = c["panels"].children[1].children[1].value
    # each of these would raise from Python; in the widget each becomes a message, and nothing raises
    c["index"].value = 99
    assert "out of range: choose 0 to 5" in c["message"].value and "Traceback" not in c["message"].value
    assert explorer.state["index"] == 0
    c["name"].value = "zebra"
    assert "unknown class name" in c["message"].value
    c["models"].value = ()
    assert "no model selected" in c["message"].value
    # good input clears the message and redraws
    c["models"].value = ("ce", "hnc_kd")
    assert c["message"].value == ""
    assert [b._hncam_key for b in c["panels"].children[:-1]] == ["image", "ce", "hnc_kd"]
    c["rank"].value = 2
    assert c["panels"].children[1].children[1].value != first
    assert "2nd negative" in c["scores"].value


def test_the_widget_controls_drive_the_view(explorer):
    explorer.widget
    c = explorer._controls
    assert [v for _, v in c["rank"].options] == [0, 1, 2, 3]
    assert c["rank"].options[0][0] == "ground truth: c3"
    c["index"].value = 4
    assert c["rank"].options[0][0] == "ground truth: c5" and explorer.state["index"] == 4
    c["rank"].value = 1
    assert explorer.last_view.class_id == explorer.ranking(4)[1]
    c["name"].value = "c0"
    assert explorer.last_view.class_id == 0
    assert c["rank"].value == (explorer.last_view.rank if explorer.last_view.rank < 4 else None)
    c["method"].value = "gradcam"
    assert explorer.last_view.method == "gradcam" and "Grad-CAM" in c["scores"].value
    c["opacity"].value = 0.25
    assert explorer.state["opacity"] == 0.25
    c["source"].value = "most confused"
    assert c["pick"].layout.display is None and len(c["pick"].options) == 6
    assert explorer.state["index"] == explorer.most_confused(1)[0][0]
    c["source"].value = "by index"
    assert c["pick"].layout.display == "none"
    assert set(METHODS) == {v for _, v in c["method"].options}


def test_any_cam_model_and_data_set():
    """A torchvision ResNet (wrapped) on 3-channel 32x32 images from a data set with its own class names."""
    from torchvision.models import resnet18

    from hncam_utils.models import TorchvisionCAM

    class Tiny(torch.utils.data.Dataset):
        classes = ["cat", "dog", "ship"]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)), i % 3

    torch.manual_seed(0)
    models = {"a": TorchvisionCAM(resnet18(num_classes=3)).eval(), "b": TorchvisionCAM(resnet18(num_classes=3)).eval()}
    ex = CAMExplorer(models, Tiny())
    view = ex.update(index=1, class_name="ship", method="gradcam")
    assert view.class_name == "ship" and view.target == 1 and view.raw["a"].shape == (1, 1)
    panels = ex.panels(view)
    assert panels["image"].shape == (180, 180, 3) and panels["a"].shape == (180, 180, 3)
    fig = ex.static_grid([0, 1], n_negatives=1)
    assert len(fig.axes) == 2 * (1 + 2 * 2) + 1  # rows x (image + models x maps) + colour bar


def test_static_grid_uses_the_reference_ranking_and_one_scale(explorer):
    import matplotlib.pyplot as plt

    fig = explorer.static_grid([0, 2], n_negatives=2)
    images = [im for ax in fig.axes for im in ax.get_images()]
    maps = [im for im in images if im.get_cmap().name == "RdBu_r"]
    assert len(maps) == 2 * 3 * 3 and len({im.get_clim() for im in maps}) == 1
    titles = [ax.get_title() for ax in fig.axes[1:4]]
    first_neg = explorer.class_names[explorer.ranking(0)[1]]
    assert titles[0].startswith("ce") and titles[1].endswith(f"neg 1: {first_neg}")
    plt.close(fig)
    with pytest.raises(IndexError):
        explorer.static_grid([7])


def test_an_update_from_python_moves_the_controls(explorer):
    explorer.update(index=3, rank=2, method="gradcam", opacity=0.4)  # before the widget exists
    c = explorer.widget and explorer._controls
    assert (c["index"].value, c["rank"].value, c["method"].value, c["opacity"].value) == (3, 2, "gradcam", 0.4)
    assert c["rank"].options[0][0] == "ground truth: c1"
    explorer.update(index=5, class_name="c2", models=["hnc_kd"])       # after
    assert c["index"].value == 5 and c["name"].value == "c2" and c["models"].value == ("hnc_kd",)
    assert c["rank"].options[0][0] == "ground truth: c9"
    old = c["panels"].children[1]
    explorer.update(models=["ce", "hnc_kd"])
    assert old.comm is None  # the panel no longer shown was closed (no leak of front-end models)
