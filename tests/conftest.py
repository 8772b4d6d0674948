"""Shared test set-up: never touch the user's cache, never use the network, plot off-screen."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HNCAM_HOME", str(tmp_path / "hncam_home"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("HNCAM_DEVICE", raising=False)
    yield
