"""plots.visualize_attr: Captum's visualize_image_attr without its traps (all-zero maps, per-map scale)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from captum.attr import visualization as viz

from hncam_utils.plots import CAM_CMAP, visualize_attr


def test_captum_itself_raises_on_an_all_zero_map():
    # the trap the wrapper exists for (captum 0.9); if Captum fixes it, this test tells us the wrapper's
    # special case is no longer needed
    fig, ax = plt.subplots()
    with pytest.raises(AssertionError, match="scale factor = 0"):
        viz.visualize_image_attr(np.zeros((8, 8, 1)), sign="all", plt_fig_axis=(fig, ax), use_pyplot=False)
    plt.close(fig)


@pytest.mark.parametrize("sign,attr", [
    ("all", torch.zeros(8, 8)),
    ("absolute_value", torch.zeros(1, 8, 8)),
    ("positive", -torch.rand(8, 8)),   # nothing positive left
    ("negative", torch.rand(8, 8)),    # nothing negative left
])
def test_a_map_with_nothing_to_show_is_drawn_flat_not_raised(sign, attr):
    fig, ax = plt.subplots()
    image = torch.rand(1, 8, 8)
    out = visualize_attr(attr, image, ax=ax, sign=sign)
    assert out is ax
    heat = ax.get_images()[-1]
    assert np.all(np.asarray(heat.get_array()) == 0)  # drawn at the colour of zero
    note = [t.get_text() for t in ax.texts]
    assert note == (["all zero"] if not attr.any() else [f"no {sign} values"])
    plt.close(fig)


def test_per_map_view_delegates_to_captum_and_shared_view_uses_the_given_scale():
    fig, axes = plt.subplots(1, 2)
    strong = torch.zeros(8, 8)
    strong[2, 3] = 10.0
    weak = strong / 100
    image = torch.rand(1, 8, 8)
    visualize_attr(strong, image, ax=axes[0])
    visualize_attr(weak, image, ax=axes[1])
    # Captum's per-map normalisation: the two maps look the same although one is 100x weaker
    a, b = (np.asarray(ax.get_images()[-1].get_array()) for ax in axes)
    assert np.allclose(a, b)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2)
    visualize_attr(strong, image, ax=axes[0], scale=(-10, 10))
    visualize_attr(weak, image, ax=axes[1], scale=(-10, 10), title="weak")
    ims = [ax.get_images()[-1] for ax in axes]
    assert all(im.get_clim() == (-10, 10) and im.get_cmap().name == CAM_CMAP for im in ims)
    assert np.asarray(ims[1].get_array()).max() == pytest.approx(0.1)
    assert axes[1].get_title() == "weak"
    plt.close(fig)


def test_bad_input():
    with pytest.raises(ValueError, match="sign must be"):
        visualize_attr(torch.ones(4, 4), sign="both")
    with pytest.raises(ValueError, match="differ in size"):
        visualize_attr(torch.ones(4, 4), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\)"):
        visualize_attr(torch.ones(4))
    plt.close("all")
