"""Notebook 10's claim table and figure, from saved results (hncam_utils.claims, hncam_utils.claimplots)."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from hncam_utils.claimplots import plot_claim_differences  # noqa: E402
from hncam_utils.claims import (CLAIMS, claims_markdown, collect_claims, improvement, loss_label,  # noqa: E402
                                missing_markdown)
from hncam_utils.experiments import paired_verdict  # noqa: E402
from hncam_utils.results import claim_row, save_results  # noqa: E402


def _row(claim, diffs, data="Cluttered Digits (hard)", notebook="03_hnc_loss", loss="hnc_kd", baseline="ce",
         metric="test accuracy %", higher=True, headline=True, profile="cpu"):
    return claim_row(claim, paired_verdict(diffs, higher_is_better=higher), notebook=notebook, data=data,
                     model="digits_cnn", budget="10 epochs", profile=profile, metric=metric, loss=loss,
                     baseline=baseline, baseline_mean=80.0, loss_mean=80.0 + sum(diffs) / len(diffs),
                     headline=headline)


@pytest.fixture
def saved(tmp_path):
    save_results("03_hnc_loss", "cpu", [
        _row("classification", [1.0, 2.0, 3.0]),
        _row("negative_cams", [-4.0, -5.0, -6.0], metric="top-1 negative CAM peak (lower is better)", higher=False),
    ], root=tmp_path)
    save_results("07_adversarial", "cpu", [
        _row("adversarial", [0.5, -0.5, 0.2], notebook="07_adversarial", metric="clean test accuracy %",
             headline=False),
        _row("adversarial", [9.0, 11.0, 10.0], notebook="07_adversarial", metric="accuracy % under PGD"),
    ], root=tmp_path)
    save_results("08_noisy_labels", "cpu", [
        _row("noisy_labels", [-12.0, -11.0, -13.0], notebook="08_noisy_labels", loss="gce", metric="final test acc %"),
        _row("noisy_labels", [-1.0, -2.0, -1.5], notebook="08_noisy_labels", loss="gce+hnc", baseline="gce",
             metric="final test acc %"),
    ], root=tmp_path)
    save_results("04_real_images", "gpu", [
        _row("classification", [0.3, 0.4, 0.5], notebook="04_real_images", data="CIFAR-10", profile="gpu"),
    ], root=tmp_path)
    return tmp_path


def test_rows_are_sorted_by_claim_and_gpu_rows_join_a_cpu_report(saved):
    report = collect_claims("cpu", root=saved)
    assert [len(report.rows[c.key]) for c in CLAIMS] == [1, 2, 0, 0, 2, 2]
    assert any(r["data"] == "CIFAR-10" and r["profile"] == "gpu" for r in report.rows["classification"])
    assert len(report.sources) == 4


def test_table_shows_headline_hnc_rows_only_and_the_figure_every_hnc_row(saved):
    report = collect_claims("cpu", root=saved)
    table = report.table_rows()
    assert all("hnc" in r["loss"] for r in table)  # GCE vs CE is not an HNC comparison
    assert not any(r["metric"] == "clean test accuracy %" for r in table)  # marked secondary
    assert any(r["metric"] == "clean test accuracy %" for r in report.figure_rows())
    assert len(report.figure_rows()) == len(table) + 1
    assert report.summary()["adversarial"] == {"better": 1}


def test_markdown_carries_the_saved_numbers_and_the_untested_claims(saved):
    text = claims_markdown(collect_claims("cpu", root=saved))
    assert "+2.00 [-0.48, +4.48]" in text and "3/3 | no clear difference" in text  # n=3: t=4.30, se=0.577
    assert "GCE 80.00 → GCE + HNC 78.50" in text
    assert "ImageNet" in text and "torchrun" in text
    assert "HNC does better than other loss functions | not measured yet" in text


def test_missing_settings_say_what_to_run(saved):
    report = collect_claims("cpu", root=saved)
    missing = {(m["notebook"], m["data"]): m["reason"] for m in report.missing}
    assert missing[("04_real_images", "Fashion")] == "run notebooks/04_real_images.ipynb with HNCAM_PROFILE=cpu"
    assert missing[("05_cub200", "CUB")].startswith("run notebooks/05_cub200.ipynb with HNCAM_PROFILE=gpu (needs CUB")
    assert "09_multilabel_and_other_losses" in missing_markdown(report)
    smoke = collect_claims("smoke", root=saved)  # a smoke report reads smoke files only
    assert all(r == [] for r in smoke.rows.values())
    assert all("HNCAM_PROFILE=smoke" in m["reason"] for m in smoke.missing)  # CIFAR/CUB run on fixtures in smoke


def test_improvement_turns_lower_is_better_metrics_around(saved):
    rows = collect_claims("cpu", root=saved).rows["negative_cams"]
    mean, low, high = improvement(rows[0])
    assert mean == pytest.approx(5.0) and low < mean < high and low > 0


def test_short_metric_keys_are_shown_in_words():
    from hncam_utils.claims import metric_words

    assert metric_words("top1") == "test accuracy %" and metric_words("mAP %") == "mAP %"


def test_loss_labels():
    assert loss_label("hnc_kd") == "CE + HNC_kd" and loss_label("gce+hnc") == "GCE + HNC"
    assert loss_label("cosface+hnc") == "CosFace + HNC" and loss_label("bce") == "BCE"


def test_figure_has_one_line_per_hnc_comparison(saved):
    report = collect_claims("cpu", root=saved)
    fig = plot_claim_differences(report)
    assert len(fig.axes) == len(report.figure_rows())
    with pytest.raises(ValueError, match="run notebooks 03-09"):
        plot_claim_differences(report, rows=[])


def test_bad_profile_raises(tmp_path):
    with pytest.raises(ValueError, match="profile must be one of"):
        collect_claims("fast", root=tmp_path)
