"""`make course` without a data set: a notebook that cannot have its data is reported as skipped (with the reason
and how to get the data), a section that skipped itself is listed, the rest runs, and only real errors fail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from hncam_utils import skips
from hncam_utils.data import DatasetNotFoundError
from hncam_utils.download import DownloadError
from hncam_utils.models import WeightsUnavailableError

ROOT = Path(__file__).resolve().parents[1]


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_and_package_agree_on_the_marker_and_the_errors():
    runner = _runner()
    assert runner.SKIP_MARKER == skips.SKIP_MARKER and tuple(runner.SKIP_ERRORS) == tuple(skips.SKIP_ERRORS)


def test_report_skip_and_is_skip_error(tmp_path, capsys):
    error = DatasetNotFoundError("CIFAR-10", tmp_path / "x", ["test_batch"], "  * run get_cifar.py")
    text = skips.report_skip("CIFAR-10 section", error)
    out = capsys.readouterr().out
    assert out.startswith("[skipped] CIFAR-10 section: CIFAR-10 not found") and "get_cifar.py" in out and text in out
    assert skips.is_skip_error(error)
    assert skips.is_skip_error(DownloadError("x", dest=tmp_path, md5=None, attempts=[]))
    assert skips.is_skip_error(WeightsUnavailableError("no weights"))
    assert not skips.is_skip_error(ValueError("a bug"))


def test_report_skip_hides_machine_paths(tmp_path, monkeypatch, capsys):
    import os

    monkeypatch.setenv("HNCAM_HOME", str(tmp_path / "hncam"))
    skips.report_skip("CUB", f"put CUB_200_2011.tgz in {tmp_path / 'hncam' / 'data'}")
    assert capsys.readouterr().out.strip() == "[skipped] CUB: put CUB_200_2011.tgz in $HNCAM_HOME/data"
    skips.report_skip("x", os.path.expanduser("~/elsewhere/file"))
    assert "~/elsewhere/file" in capsys.readouterr().out


def _notebook(folder: Path, name: str, *sources: str) -> None:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / name)


@pytest.fixture
def course(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder, "01_runs.ipynb", "from hncam_utils.skips import report_skip\nprint('hello')",
              "report_skip('CIFAR-10 and CIFAR-100', 'CIFAR-10 not found: run data_scripts/get_cifar.py')")
    _notebook(folder, "02_needs_cub.ipynb",
              "from hncam_utils.data import CUB200\nCUB200('nowhere')", "print('never reached')")
    return folder


def test_missing_data_is_skipped_with_the_reason_and_the_rest_runs(course, tmp_path, capsys):
    code = _runner().main(["--profile", "smoke", "--notebooks", str(course), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "02_needs_cub.ipynb" in out and "skipped" in out
    assert "ran: 01_runs.ipynb" in out
    assert "skipped: 02_needs_cub.ipynb -- CUB-200-2011 not found" in out and "get_cub200.py" in out
    assert "skipped part of 01_runs.ipynb: CIFAR-10 and CIFAR-100: CIFAR-10 not found" in out


def test_a_real_error_still_fails(course, tmp_path, capsys):
    _notebook(course, "03_broken.ipynb", "raise ValueError('a bug')")
    code = _runner().main(["--profile", "smoke", "--notebooks", str(course), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1 and "failed: 03_broken.ipynb" in out and "skipped: 02_needs_cub.ipynb" in out
