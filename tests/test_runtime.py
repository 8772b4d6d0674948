"""Device, profile and data-folder choices."""

import pytest
import torch

from hncam_utils.paths import data_home
from hncam_utils.runtime import describe_environment, get_device, get_profile, pick


def test_profile_from_env_and_default(monkeypatch):
    monkeypatch.setenv("HNCAM_PROFILE", "smoke")
    assert get_profile() == "smoke" and pick({"smoke": 1, "cpu": 2}) == 1
    monkeypatch.delenv("HNCAM_PROFILE")
    assert get_profile() == ("gpu" if torch.cuda.is_available() else "cpu")
    assert get_profile("GPU") == "gpu"
    monkeypatch.setenv("HNCAM_PROFILE", "laptop")
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        get_profile()
    with pytest.raises(KeyError, match="no settings for profile 'cpu'"):
        pick({"smoke": 1}, "cpu")


def test_device_autodetect_and_explicit(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("HNCAM_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            get_device("cuda")


def test_data_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HNCAM_HOME", str(tmp_path / "drive" / "hncam"))
    assert data_home() == tmp_path / "drive" / "hncam" and data_home().is_dir()
    monkeypatch.delenv("HNCAM_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_home(create=False) == tmp_path / "cache" / "hncam"


def test_describe_environment_lists_versions():
    info = describe_environment()
    assert info["torch"] == torch.__version__ and info["cpu_threads"] >= 1 and info["captum"]
