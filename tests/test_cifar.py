"""CIFAR-10/100 through torchvision, fetched through the registry: format-faithful pickle-batch fixtures, a local
HTTP server on 127.0.0.1 for the download path, and a clear error for missing, damaged or misplaced data."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import pickle
import socket
import tarfile
import threading
import time

import numpy as np
import pytest
import torch

from hncam_utils import download as dl
from hncam_utils.data import DatasetNotFoundError, load_cifar, make_cifar_fixture
from hncam_utils.data.fixtures import CIFAR10_CLASSES, CIFAR100_CLASSES
from hncam_utils.download import ChecksumError, DownloadError


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_fixture_loads_in_torchvision_like_the_real_files(tmp_path, name):
    folder = make_cifar_fixture(tmp_path, name, per_batch=6, test_size=4)
    train = load_cifar(name, tmp_path, train=True, verify=False)
    test = load_cifar(name, tmp_path, train=False, verify=False)
    assert type(train).__name__ == ("CIFAR10" if name == "cifar10" else "CIFAR100")
    assert len(train) == 30 and len(test) == 4
    assert train.classes == list(CIFAR10_CLASSES if name == "cifar10" else CIFAR100_CLASSES)
    assert train.data.shape == (30, 32, 32, 3) and train.data.dtype == np.uint8
    # what the CIFAR home page's reader sees (bytes keys: Python 2 pickles)
    first = folder / ("data_batch_1" if name == "cifar10" else "train")
    with open(first, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    key = b"labels" if name == "cifar10" else b"fine_labels"
    assert raw[b"data"].shape[1] == 3072 and train.targets[:6] == raw[key][:6]
    assert np.array_equal(train.data[0], raw[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))
    image, label = train[0]
    assert image.size == (32, 32) and label == raw[key][0]
    from torchvision.transforms import ToTensor

    x, _ = load_cifar(name, tmp_path, transform=ToTensor(), verify=False)[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_batch_files_are_checked_and_a_damaged_one_is_named(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder = make_cifar_fixture(tmp_path, "cifar10", per_batch=4)
    with pytest.raises(ChecksumError, match="data_batch_1 is damaged") as info:
        load_cifar("cifar10", tmp_path)  # the fixture is not the real file
    assert "get_cifar.py --dataset cifar10" in str(info.value)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", md5[f"data_batch_{k}"]] for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    assert len(load_cifar("cifar10", tmp_path)) == 20  # the right MD5s pass
    (folder / "test_batch").write_bytes(b"truncated")
    with pytest.raises(ChecksumError, match="test_batch is damaged"):
        load_cifar("cifar10", tmp_path, train=False)


def test_missing_and_incomplete_folders_say_how_to_get_the_data(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar("CIFAR-100", tmp_path / "none")
    msg = str(info.value)
    assert "CIFAR-100 not found" in msg and "get_cifar.py --dataset cifar100" in msg
    assert "cifar-100-python.tar.gz" in msg and "download=True" in msg
    folder = make_cifar_fixture(tmp_path, "cifar10", per_batch=2)
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match="incomplete: it lacks test_batch"):
        load_cifar("cifar10", tmp_path, verify=False)


def test_root_that_is_a_file_and_unknown_names(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        load_cifar("cifar10", archive)
    with pytest.raises(ValueError, match="cifar10 or cifar100"):
        load_cifar("cub200", tmp_path)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (no network): yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_download_through_the_registry_from_a_local_server(tmp_path, served, monkeypatch, name):
    www, base = served
    src = make_cifar_fixture(tmp_path / "src", name, per_batch=3)
    spec = dl.get_spec(name)
    archive = www / spec.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=spec.folder)
    data = archive.read_bytes()
    monkeypatch.setitem(dl.DATASETS, name, dataclasses.replace(
        spec, urls=(f"{base}/{spec.filename}",), md5=hashlib.md5(data).hexdigest(), size=len(data)))
    root = tmp_path / "data"
    ds = load_cifar(name, root, train=False, download=True, verify=False)
    assert len(ds) == 3 and (root / spec.filename).read_bytes() == data
    assert (root / spec.folder / "README.fixture").is_file()


def test_download_offline_fails_fast_with_the_fix(tmp_path, monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused, like an offline machine
    spec = dl.get_spec("cifar10")
    monkeypatch.setitem(dl.DATASETS, "cifar10", dataclasses.replace(spec, urls=(f"http://127.0.0.1:{port}/c.tgz",)))
    t0 = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        load_cifar("cifar10", tmp_path / "data", download=True, timeout=5)
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert "no network or host unreachable" in msg and str(tmp_path / "data" / "cifar-10-python.tar.gz") in msg
