"""`python -m hncam_utils compare` end to end with the smoke profile (about 20 s)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args, env_extra=None, timeout=300):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "hncam_utils", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_compare_smoke_end_to_end_and_cache(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["compare", "--profile", "smoke", "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "| loss | seeds | test acc %" in text
    for label in ("| ce | 2 |", "| hnc_mse | 2 |", "| hnc_kd | 2 |"):
        assert label in text, label
    assert "paired accuracy gain of hnc_kd over ce" in text and "not results" in text
    for name in ("training_curves.png", "cam_grid.png", "results.json", "results.md"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["profile"] == "smoke" and len(results["runs"]) == 6
    assert {r["label"] for r in results["runs"]} == {"ce", "hnc_mse", "hnc_kd"}
    assert all(r["history"]["epoch"] == [1.0] for r in results["runs"])
    hnc_terms = {r["label"]: r["history"]["train_hnc"][0] for r in results["runs"]}
    assert hnc_terms["ce"] == 0 and hnc_terms["hnc_kd"] > 0 and hnc_terms["hnc_mse"] > 0
    checkpoints = sorted((cache / "runs").glob("*.pt"))
    assert len(checkpoints) == 6
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    again = run_cli(*args)  # cached: loads, does not retrain
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert json.loads((out / "results.json").read_text())["summary"] == results["summary"]


def test_compare_rejects_an_unknown_loss(tmp_path):
    proc = run_cli("compare", "--profile", "smoke", "--losses", "ce,focal", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown loss" in proc.stderr


def test_env_command_prints_versions():
    proc = run_cli("env")
    assert proc.returncode == 0 and "torch" in proc.stdout and "device" in proc.stdout
