"""Fashion-MNIST through the registry, offline: generated idx fixtures, a system copy in a temporary folder,
and a server on 127.0.0.1. Nothing here downloads, and nothing measured on fixtures is a result."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import socket
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hncam_utils import download as dl
from hncam_utils.data import FASHION_CLASSES, UPPER_BODY, load_fashion_mnist, make_fashion_mnist_fixture
from hncam_utils.data.fashion_mnist import fashion_mnist_checksums, write_idx
from hncam_utils.download import ChecksumError, DownloadError, fetch_dataset

SYSTEM = Path("/usr/share/datasets/fashion-mnist")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.hits[self.path] += 1
        body = self.server.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.hits = {}, Counter()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_base():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/fashion/"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("HNCAM_FASHION_MNIST_URL", raising=False)


@pytest.fixture
def gz_fixture(tmp_path, monkeypatch):
    """Four .gz files (the Debian package's / the mirror's layout) and a registry entry that expects them."""
    src = tmp_path / "gz"
    raw_md5 = make_fashion_mnist_fixture(src, n_train=50, n_test=20, compressed=True)
    spec = dl.DATASETS["fashion_mnist"]
    files = tuple(
        dataclasses.replace(f, md5=hashlib.md5((src / f.filename).read_bytes()).hexdigest(), raw_md5=raw_md5[f.raw_name])
        for f in spec.files
    )
    return src, files


def _use_spec(monkeypatch, **changes):
    spec = dataclasses.replace(dl.DATASETS["fashion_mnist"], **changes)
    monkeypatch.setitem(dl.DATASETS, "fashion_mnist", spec)
    return spec


def test_registry_entry_has_the_reference_checksums():
    spec = dl.get_spec("Fashion-MNIST")
    assert spec is dl.get_spec("fashion_mnist") is dl.get_spec("fmnist")
    assert fashion_mnist_checksums() == {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }
    assert spec.folder == "FashionMNIST/raw" and "/usr/share/datasets/fashion-mnist" in spec.system_dirs
    assert [FASHION_CLASSES[i] for i in UPPER_BODY] == ["T-shirt/top", "Pullover", "Coat", "Shirt"]


def test_fixture_is_format_faithful_for_torchvision(tmp_path):
    sums = make_fashion_mnist_fixture(tmp_path, n_train=40, n_test=30, seed=3)
    raw = tmp_path / "FashionMNIST" / "raw"
    head = (raw / "train-images-idx3-ubyte").read_bytes()[:16]
    assert head == bytes([0, 0, 8, 3, 0, 0, 0, 40, 0, 0, 0, 28, 0, 0, 0, 28])
    train = load_fashion_mnist("train", tmp_path, checksums=sums)
    test = load_fashion_mnist("test", tmp_path, checksums=sums)
    assert train.data.shape == (40, 28, 28) and train.data.dtype == torch.uint8 and test.data.shape == (30, 28, 28)
    assert sorted(Counter(train.targets.tolist()).values()) == [4] * 10
    image, label = train[0]
    assert image.size == (28, 28) and label == int(train.targets[0])
    assert write_idx(tmp_path / "x", np.zeros((2, 3), np.uint8)) == hashlib.md5(
        bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(6)).hexdigest()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0" * 10)
    with pytest.raises(ChecksumError, match="t10k-labels"):
        load_fashion_mnist("test", tmp_path, checksums=sums)


def test_system_copy_is_used_without_network(gz_fixture, tmp_path, monkeypatch, closed_base):
    src, files = gz_fixture
    _use_spec(monkeypatch, files=files, urls=(closed_base,), system_dirs=(str(tmp_path / "absent"), str(src)))
    root = tmp_path / "data"
    folder = fetch_dataset("fashion_mnist", root, progress=False)
    assert folder == root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.raw_name for f in files)
    assert not list(root.glob("*.gz"))  # decompressed straight from the system copy, nothing downloaded
    train = load_fashion_mnist("train", root)
    assert train.data.shape == (50, 28, 28)


def test_mismatching_system_copy_is_a_clear_error(gz_fixture, tmp_path, monkeypatch, closed_base):
    src, files = gz_fixture
    # the copy decompresses to other data than the registry expects (e.g. a damaged or different package)
    bad = list(files)
    bad[2] = dataclasses.replace(bad[2], raw_md5="0" * 32)
    _use_spec(monkeypatch, files=tuple(bad), urls=(closed_base,), system_dirs=(str(src),))
    with pytest.raises(ChecksumError) as info:
        fetch_dataset("fashion_mnist", tmp_path / "data", progress=False)
    msg = str(info.value)
    assert "system copy" in msg and "t10k-images-idx3-ubyte" in msg and str(src) in msg
    assert "apt-get install --reinstall dataset-fashion-mnist" in msg and "use_system=False" in msg
    assert not (tmp_path / "data" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").exists()
    # a file that is not gzip data at all
    _use_spec(monkeypatch, files=files, urls=(closed_base,), system_dirs=(str(src),))
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ChecksumError, match="not readable gzip data"):
        fetch_dataset("fashion_mnist", tmp_path / "data2", progress=False)


def test_download_from_a_server_when_there_is_no_system_copy(gz_fixture, tmp_path, monkeypatch, server):
    src, files = gz_fixture
    for f in files:
        server.routes[f"/mirror/{f.filename}"] = (src / f.filename).read_bytes()
    _use_spec(monkeypatch, files=files, urls=(server.base + "/broken/", server.base + "/mirror/"),
              system_dirs=(str(tmp_path / "nothing"),))
    root = tmp_path / "data"
    fetch_dataset("fashion_mnist", root, progress=False)
    assert all(server.hits[f"/mirror/{f.filename}"] == 1 for f in files)
    assert all(server.hits[f"/broken/{f.filename}"] == 1 for f in files)  # tried first, 404, next mirror
    assert load_fashion_mnist("test", root).data.shape == (20, 28, 28)
    fetch_dataset("fashion_mnist", root, progress=False)  # idempotent: verified files, no network
    assert sum(server.hits.values()) == 8


def test_override_variable_and_use_system_false(gz_fixture, tmp_path, monkeypatch, server, closed_base):
    src, files = gz_fixture
    _use_spec(monkeypatch, files=files, urls=(closed_base,), system_dirs=(str(src),))
    monkeypatch.setenv("HNCAM_FASHION_MNIST_URL", str(src))  # a local folder works as a base too
    fetch_dataset("fashion_mnist", tmp_path / "a", use_system=False, progress=False)
    assert (tmp_path / "a" / "train-images-idx3-ubyte.gz").is_file()  # fetched, not taken from the system copy


def test_offline_without_system_copy_says_how_to_get_it(gz_fixture, tmp_path, monkeypatch, closed_base):
    _, files = gz_fixture
    _use_spec(monkeypatch, files=files, urls=(closed_base,), system_dirs=())
    with pytest.raises(DownloadError, match="no network or host unreachable") as info:
        fetch_dataset("fashion_mnist", tmp_path / "data", progress=False)
    assert "HNCAM_FASHION_MNIST_URL" in str(info.value)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path / "data", download=False)


def test_bad_roots_and_splits(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        fetch_dataset("fashion_mnist", afile, progress=False)
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("val", tmp_path)


@pytest.mark.skipif(not (SYSTEM / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_the_real_system_copy_verifies(tmp_path):
    test = load_fashion_mnist("test", tmp_path)
    assert test.data.shape == (10000, 28, 28) and sorted(Counter(test.targets.tolist()).values()) == [1000] * 10


def test_course_fashion_runs_are_cached_and_their_names_stable(tmp_path):
    """The shared Fashion-MNIST runs (notebook 04 trains them, 06/07 reload them): names must not change."""
    from hncam_utils.experiments import COURSE_FASHION, DEFAULT_SPECS, fashion_loaders, fashion_runs
    from hncam_utils.train import checkpoint_path, run_name

    assert COURSE_FASHION["cpu"].tag == "fmnist-15k" and COURSE_FASHION["gpu"].tag == "fmnist-60k-augc2f"
    assert COURSE_FASHION["smoke"].fixture and COURSE_FASHION["smoke"].tag == "fmnist-fixture-600"
    cs = COURSE_FASHION["cpu"]
    names = [run_name(cs.tag, "digits_cnn", s.apply(cs.recipe(seed=seed))) for s in DEFAULT_SPECS.values()
             for seed in cs.seeds]
    assert names[0] == "fmnist-15k_digits_cnn_ce_e3_s0" and names[-1] == "fmnist-15k_digits_cnn_hnc_kd_k3_lam0.1_e3_s2"
    specs = {"ce": DEFAULT_SPECS["ce"]}
    runs = fashion_runs(specs, profile="smoke", seeds=[0], cache_dir=tmp_path, progress=False)
    (run,) = runs
    name = run_name(COURSE_FASHION["smoke"].tag, "digits_cnn", run.config)
    ckpt = checkpoint_path(name, tmp_path)
    assert ckpt.exists() and run.metrics["top1"] >= 0 and "neg_peak" in run.metrics
    # the kept predictions are the evaluation's: their accuracy is top1 (no second pass needed for confusions)
    _, test_loader = fashion_loaders("smoke", device="cpu")
    acc = 100.0 * (run.predictions == test_loader.targets.cpu()).float().mean().item()
    assert run.predictions.shape == (len(test_loader.targets),) and acc == pytest.approx(run.metrics["top1"])
    assert "test_acc" not in run.history  # no per-epoch test pass unless curves=True
    mtime = ckpt.stat().st_mtime
    again = fashion_runs(specs, profile="smoke", seeds=[0], cache_dir=tmp_path, progress=False)
    assert ckpt.stat().st_mtime == mtime and again[0].metrics["top1"] == run.metrics["top1"]
    # test_metrics=False only loads: the same weights, no test metrics, no predictions, nothing retrained
    (bare,) = fashion_runs(specs, profile="smoke", seeds=[0], cache_dir=tmp_path, progress=False, test_metrics=False)
    assert ckpt.stat().st_mtime == mtime and "top1" not in bare.metrics and bare.predictions is None
    assert all(torch.equal(a, b) for a, b in zip(bare.model.state_dict().values(), run.model.state_dict().values()))


def test_data_script(gz_fixture, tmp_path, monkeypatch, closed_base, capsys):
    import importlib.util

    src, files = gz_fixture
    _use_spec(monkeypatch, files=files, urls=(closed_base,), system_dirs=(str(src),))
    script = Path(__file__).resolve().parents[1] / "data_scripts" / "get_fashion_mnist.py"
    spec = importlib.util.spec_from_file_location("get_fashion_mnist", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--root", str(tmp_path / "d"), "--quiet"]) == 0
    assert "FashionMNIST(root=" in capsys.readouterr().out
    _use_spec(monkeypatch, files=files, urls=(closed_base,), system_dirs=())
    assert module.main(["--root", str(tmp_path / "e"), "--quiet"]) == 1
    assert "no network or host unreachable" in capsys.readouterr().err
