"""Saved notebook results: round trip, atomic write, verdicts as plain data, missing files."""

import json
import math

import pytest

from hncam_utils.experiments import paired_verdict
from hncam_utils.results import claim_row, list_results, load_results, results_path, save_results


def test_round_trip_with_a_verdict(tmp_path):
    v = paired_verdict([4.0, 4.5, 5.0])
    row = claim_row("classification", v, notebook="03_hnc_loss", data="Cluttered Digits (hard)", model="digits_cnn",
                    budget="15 epochs", profile="cpu", metric="test accuracy %", loss="hnc_kd", baseline_mean=85.0,
                    loss_mean=89.5)
    path = save_results("03_hnc_loss", "cpu", [row], extra={"nan": math.nan}, root=tmp_path)
    assert path == results_path("03_hnc_loss", "cpu", tmp_path) and path.name == "03_hnc_loss-cpu.json"
    got = load_results("03_hnc_loss", "cpu", root=tmp_path)
    assert got["rows"][0]["verdict"]["verdict"] == "better"
    assert got["rows"][0]["verdict"]["differences"] == [4.0, 4.5, 5.0]
    assert got["rows"][0]["headline"] is True  # rows are headline results unless marked otherwise
    assert got["extra"]["nan"] is None  # NaN is stored as null: strict JSON
    assert list_results(tmp_path) == [path]
    assert not list(path.parent.glob("*.tmp"))


def test_missing_results_are_none_and_corrupt_ones_raise(tmp_path):
    assert load_results("07_adversarial", "cpu", root=tmp_path) is None
    path = results_path("07_adversarial", "cpu", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="rerun notebook 07_adversarial"):
        load_results("07_adversarial", "cpu", root=tmp_path)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_bad_names_raise(name, tmp_path):
    with pytest.raises(ValueError, match="name"):
        results_path(name, "cpu", tmp_path)


def test_one_seed_verdict_is_stored_with_nulls(tmp_path):
    row = claim_row("classification", paired_verdict([1.0]), notebook="x", data="d", model="m", budget="b",
                    profile="smoke", metric="acc", loss="hnc_kd")
    save_results("x", "smoke", [row], root=tmp_path)
    data = json.loads(results_path("x", "smoke", tmp_path).read_text())
    assert data["rows"][0]["verdict"]["ci_low"] is None and data["rows"][0]["verdict"]["verdict"] == "too few seeds to tell"


def test_secondary_rows_are_marked():
    row = claim_row("adversarial", paired_verdict([1.0, 2.0, 3.0]), notebook="07_adversarial", data="d", model="m",
                    budget="b", profile="cpu", metric="clean test accuracy %", loss="hnc_kd", headline=False)
    assert row["headline"] is False


def test_name_and_profile_are_checked_by_name(tmp_path):
    with pytest.raises(ValueError, match="profile must be a non-empty name"):
        results_path("03_hnc_loss", "../cpu", tmp_path)
    with pytest.raises(TypeError, match="profile must be a string"):
        results_path("03_hnc_loss", 3, tmp_path)
    with pytest.raises(TypeError, match="name must be a string"):
        results_path(None, "cpu", tmp_path)
