"""The package's verdict on paired per-seed differences: hand-computed cases.

t quantiles used below (two-sided 95%): n = 2 -> 12.7062, n = 3 -> 4.3027, n = 4 -> 3.1824.
"""

import math

import numpy as np
import pytest
import torch

from hncam_utils.experiments import (
    RunResult,
    format_table,
    format_verdicts,
    paired_difference,
    paired_verdict,
    summarize,
)
from hncam_utils.train import TrainConfig


def test_interval_containing_zero_is_no_clear_difference():
    v = paired_verdict([1.0, 2.0, 3.0])  # mean 2, sd 1, se 1/sqrt(3), half-width 4.3027 / sqrt(3) = 2.4841
    assert v.n == 3 and v.wins == 3
    assert v.mean == pytest.approx(2.0)
    assert v.se == pytest.approx(1 / math.sqrt(3))
    assert (v.ci_low, v.ci_high) == pytest.approx((2 - 2.48414, 2 + 2.48414), abs=1e-4)
    assert v.verdict == "no clear difference"  # 3/3 wins is not enough when the spread is this large


def test_interval_above_zero_is_better():
    v = paired_verdict([4.0, 4.5, 5.0])  # se 0.288675, half-width 1.24207
    assert (v.ci_low, v.ci_high) == pytest.approx((3.25793, 5.74207), abs=1e-4)
    assert v.verdict == "better" and v.wins == 3


def test_interval_below_zero_is_worse_and_direction_can_flip():
    d = [-1.0, -1.2, -0.8, -1.1]  # mean -1.025, sd 0.170783, se 0.0853913, half-width 0.271751
    v = paired_verdict(d)
    assert (v.ci_low, v.ci_high) == pytest.approx((-1.296751, -0.753249), abs=1e-5)
    assert v.verdict == "worse" and v.wins == 0
    lower = paired_verdict(d, higher_is_better=False)  # e.g. a negative-CAM peak: lower is better
    assert lower.verdict == "better" and lower.wins == 4


def test_two_seeds_are_too_few_even_with_a_large_mean():
    v = paired_verdict([1.5, 2.4])  # notebook 03's old "consistent gain": se 0.45, t(1) = 12.706
    assert v.se == pytest.approx(0.45)
    assert (v.ci_low, v.ci_high) == pytest.approx((1.95 - 5.71779, 1.95 + 5.71779), abs=1e-4)
    assert v.verdict == "too few seeds to tell"


def test_one_seed_has_no_interval():
    v = paired_verdict([3.0])
    assert v.n == 1 and math.isnan(v.se) and math.isnan(v.ci_low) and v.verdict == "too few seeds to tell"
    assert "n = 1" in v.describe("points") and "no interval" in v.describe()


def test_identical_runs_are_no_clear_difference_and_ties_are_not_wins():
    v = paired_verdict([0.0, 0.0, 0.0])
    assert v.verdict == "no clear difference" and v.wins == 0 and v.ci_low == v.ci_high == 0


def test_other_confidence_levels_widen_or_narrow_the_interval():
    d = [0.5, 1.0, 1.5, 1.2, 0.9]
    narrow, wide = paired_verdict(d, confidence=0.8), paired_verdict(d, confidence=0.99)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low


@pytest.mark.parametrize("bad, match", [([], "at least one"), ([1.0, float("nan"), 2.0], "finite"),
                                        ([1.0, float("inf"), 2.0], "finite")])
def test_bad_differences_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        paired_verdict(bad)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1])
def test_bad_confidence_raises(confidence):
    with pytest.raises(ValueError, match="confidence"):
        paired_verdict([1.0, 2.0, 3.0], confidence=confidence)


def _runs(values):
    cfg = TrainConfig()
    return [RunResult(label, seed, cfg, {}, {"top1": val}, torch.nn.Identity())
            for label, per_seed in values.items() for seed, val in enumerate(per_seed)]


def test_paired_difference_pairs_by_seed():
    runs = _runs({"ce": [80.0, 82.0, 84.0], "hnc": [84.0, 86.5, 89.0]})  # diffs 4, 4.5, 5
    v = paired_difference(runs)["hnc"]
    assert v.differences == (4.0, 4.5, 5.0) and v.verdict == "better"
    table = format_verdicts({"hnc": v})
    assert "| hnc | +4.50 | [+3.26, +5.74] | 3/3 | better |" in table


def test_paired_difference_without_the_baseline_raises():
    with pytest.raises(ValueError, match="baseline='ce'"):
        paired_difference(_runs({"hnc": [1.0, 2.0, 3.0]}))


def test_single_seed_summary_is_shown_as_n_1_not_plus_minus_zero():
    rows = summarize(_runs({"ce": [51.0]}), metrics=("top1",))
    assert rows[0]["n"] == 1 and np.isnan(rows[0]["top1_std"])
    table = format_table(rows, metrics=("top1",))
    assert "| ce | 1 | 51.0 |" in table and "±" not in table


def test_course_setting_matches_what_notebooks_train():
    from hncam_utils.experiments import COURSE_DIGITS

    assert set(COURSE_DIGITS) == {"smoke", "cpu", "gpu"}
    for name, cs in COURSE_DIGITS.items():
        assert len(cs.seeds) >= 3, f"profile {name}: the verdict needs at least 3 paired seeds"
        assert cs.recipe().epochs == cs.epochs and cs.data_config().n_train == cs.n_train
