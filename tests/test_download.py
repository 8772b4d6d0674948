"""hncam_utils.download and data_scripts/, offline: every URL is a local HTTP server or a closed port."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import pickle
import pickletools
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hncam_utils import download as dl
from hncam_utils.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_url,
    fetch_dataset,
    md5sum,
    safe_extract,
    verify_file,
)

ROOT = Path(__file__).resolve().parents[1]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ------------------------------------------------------------------------------------- a local server


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        owner = self.server.owner
        owner.hits[self.path] += 1
        route = owner.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        if isinstance(route, tuple) and route[0] == "truncate":  # announce everything, send half, hang up
            body = route[1]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(route)))
        self.end_headers()
        self.wfile.write(route)

    def log_message(self, *args):
        pass


class _Server:
    def __init__(self):
        self.routes: dict = {}
        self.hits: Counter = Counter()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body) -> str:
        self.routes[path] = body
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def closed_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    for spec in dl.DATASETS.values():
        monkeypatch.delenv(spec.env_var, raising=False)


# ----------------------------------------------------------------------------------------- download

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB: several read chunks


def test_good_download_and_md5(server, tmp_path):
    url = server.serve("/a.bin", PAYLOAD)
    dest = tmp_path / "sub" / "a.bin"
    assert download_url(url, dest, _md5(PAYLOAD).upper(), progress=False) == dest
    assert dest.read_bytes() == PAYLOAD and md5sum(dest) == _md5(PAYLOAD) == md5sum(dest, chunk=1000)
    assert not dest.with_suffix(".bin.part").exists()
    verify_file(dest, _md5(PAYLOAD))


def test_bad_checksum_falls_back_to_next_mirror(server, tmp_path):
    bad = server.serve("/bad.bin", b"corrupted")
    good = server.serve("/good.bin", PAYLOAD)
    dest = download_url([bad, good], tmp_path / "a.bin", _md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits["/bad.bin"] == 1 and server.hits["/good.bin"] == 1


def test_all_mirrors_failing_lists_every_url(server, tmp_path):
    urls = [
        server.serve("/bad.bin", b"corrupted"),
        server.url("/missing.bin"),
        server.serve("/page", b"<html>login</html>"),
    ]
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError) as info:
        download_url(urls, dest, _md5(PAYLOAD), progress=False, env_var="HNCAM_TEST_URL")
    msg = str(info.value)
    for url in urls:
        assert url in msg
    assert "checksum mismatch" in msg and "HTTP error 404" in msg and "HTML page" in msg
    assert _md5(PAYLOAD) in msg and str(dest) in msg and "HNCAM_TEST_URL" in msg
    assert "no network" not in msg
    assert [u for u, _ in info.value.attempts] == urls and info.value.dest == dest
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part


def test_unreachable_host_says_offline(closed_url, tmp_path):
    with pytest.raises(DownloadError, match="no network or host unreachable") as info:
        download_url(closed_url, tmp_path / "a.bin", _md5(PAYLOAD), timeout=5, progress=False)
    assert closed_url in str(info.value) and "place it at exactly" in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_error_wording():
    import ssl
    import urllib.error

    assert "TLS/SSL error" in dl._describe_error(urllib.error.URLError(ssl.SSLCertVerificationError(1, "bad cert")), 60)
    assert "no network" in dl._describe_error(urllib.error.URLError(socket.gaierror(-3, "name resolution")), 60)
    assert "timed out after 5 s" in dl._describe_error(urllib.error.URLError(socket.timeout("timed out")), 5)
    assert "HTTP error 403" in dl._describe_error(urllib.error.HTTPError("u", 403, "Forbidden", None, None), 60)


def test_existing_correct_file_is_not_downloaded_again(server, tmp_path):
    url = server.serve("/a.bin", PAYLOAD)
    dest = tmp_path / "a.bin"
    download_url(url, dest, _md5(PAYLOAD), progress=False)
    download_url(url, dest, _md5(PAYLOAD), progress=False)
    assert server.hits["/a.bin"] == 1
    dest.write_bytes(b"truncated")  # a wrong file is replaced
    download_url(url, dest, _md5(PAYLOAD), progress=False)
    assert server.hits["/a.bin"] == 2 and dest.read_bytes() == PAYLOAD


def test_truncated_transfer_never_becomes_the_file(server, tmp_path):
    url = server.serve("/cut.bin", ("truncate", PAYLOAD))
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="incomplete"):
        download_url(url, dest, _md5(PAYLOAD), progress=False)
    with pytest.raises(DownloadError, match="incomplete"):  # even when no checksum is given
        download_url(url, dest, None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_no_part_file(server, tmp_path, monkeypatch):
    import tqdm.auto

    def interrupt(self, n=1):
        raise KeyboardInterrupt

    monkeypatch.setattr(tqdm.auto.tqdm, "update", interrupt)
    url = server.serve("/a.bin", PAYLOAD)
    with pytest.raises(KeyboardInterrupt):
        download_url(url, tmp_path / "a.bin", _md5(PAYLOAD), progress=True)
    assert list(tmp_path.iterdir()) == []


def test_local_paths_and_file_urls(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    assert download_url(str(src), tmp_path / "a.bin", _md5(PAYLOAD), progress=False).read_bytes() == PAYLOAD
    assert download_url(src.as_uri(), tmp_path / "b.bin", _md5(PAYLOAD), progress=False).read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="cannot read local file"):
        download_url(str(tmp_path / "nope.bin"), tmp_path / "c.bin", _md5(PAYLOAD), progress=False)


def test_verify_file(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    verify_file(f, _md5(b"abc"))
    with pytest.raises(ChecksumError) as info:
        verify_file(f, _md5(b"abd"))
    msg = str(info.value)
    assert _md5(b"abc") in msg and _md5(b"abd") in msg and "delete" in msg and str(f) in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="32 hex"):
        verify_file(f, "xyz")


# ------------------------------------------------------------------------------------------ extract


_TYPES = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE}


def _tar(path: Path, entries, mode: str = "w:gz") -> Path:
    """entries: (name, kind, payload) with kind file / dir / sym / lnk / chr."""
    with tarfile.open(path, mode) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = _TYPES[kind]
            if kind == "dir":
                info.mode = 0o755
            if kind in ("sym", "lnk"):
                info.linkname = payload
            tar.addfile(info)
    return path


def _zip(path: Path, entries) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in entries:
            zf.writestr(zipfile.ZipInfo(name), payload)
    return path


GOOD = [
    ("pkg", "dir", None),
    ("pkg/a.txt", "file", b"a"),
    ("pkg/sub/b.txt", "file", b"bb"),
    ("pkg/link", "sym", "a.txt"),  # a link inside the folder is fine
]


@pytest.fixture(params=["data_filter", "own_checks_only"])
def tar_filter(request, monkeypatch):
    """With tarfile's ``filter="data"`` (Python 3.12+, 3.11.4+...) and as on a Python without it."""
    if request.param == "data_filter" and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters")
    if request.param == "own_checks_only":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


@pytest.mark.parametrize(
    "mode, suffix", [("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz"), ("w", ".tar")]
)
def test_safe_extract_good_tar(tmp_path, mode, suffix, tar_filter):
    archive = _tar(tmp_path / f"good{suffix}", GOOD, mode)
    dest = tmp_path / "out"
    safe_extract(archive, dest)
    assert (dest / "pkg/a.txt").read_bytes() == b"a" and (dest / "pkg/sub/b.txt").read_bytes() == b"bb"
    assert (dest / "pkg/link").is_symlink() and (dest / "pkg/link").read_bytes() == b"a"
    assert sorted(p.name for p in dest.iterdir()) == ["pkg"]  # no temporary folder left


def test_safe_extract_replaces_an_incomplete_copy(tmp_path):
    dest = tmp_path / "out"
    (dest / "pkg").mkdir(parents=True)
    (dest / "pkg" / "stale.txt").write_text("old")
    (dest / "keep.txt").write_text("mine")
    safe_extract(_tar(tmp_path / "good.tgz", GOOD), dest)
    assert sorted(p.name for p in (dest / "pkg").iterdir()) == ["a.txt", "link", "sub"]
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt", "pkg"]


def test_safe_extract_good_zip(tmp_path):
    archive = _zip(tmp_path / "good.zip", [("pkg/", b""), ("pkg/a.txt", b"a"), ("pkg/sub/b.txt", b"bb")])
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/pkg/sub/b.txt").read_bytes() == b"bb"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pkg"]


BAD_TARS = {
    "dotdot": ([("pkg/a.txt", "file", b"a"), ("../evil.txt", "file", b"x")], "../evil.txt", "path traversal"),
    "nested_dotdot": ([("pkg/../../evil.txt", "file", b"x")], "pkg/../../evil.txt", "path traversal"),
    "absolute": ([("/tmp/hncam-evil.txt", "file", b"x")], "/tmp/hncam-evil.txt", "absolute path"),
    "symlink_out": ([("pkg/out", "sym", "../../outside")], "pkg/out", "outside"),
    "symlink_abs": ([("pkg/passwd", "sym", "/etc/passwd")], "pkg/passwd", "absolute"),
    # each link stays inside on its own, but the second resolves through the first to the parent folder
    "symlink_chain": ([("d/y", "sym", ".."), ("e", "sym", "d/y/..")], "e", "outside"),
    "symlink_chain_reversed": ([("e", "sym", "d/y/.."), ("d/y", "sym", "..")], "e", "outside"),
    "through_symlink": (
        [("pkg/dir", "sym", "."), ("pkg/dir/x.txt", "file", b"x")],
        "pkg/dir/x.txt",
        "through a symbolic link",
    ),
    "hardlink_abs": ([("pkg/h", "lnk", "/etc/passwd")], "pkg/h", "hard link"),
    "hardlink_dotdot": ([("pkg/h", "lnk", "../outside")], "pkg/h", "hard link"),
    "device": ([("pkg/tty", "chr", None)], "pkg/tty", "device"),
}


@pytest.mark.parametrize("case", sorted(BAD_TARS))
def test_safe_extract_refuses_unsafe_tar_members(tmp_path, case, tar_filter):
    entries, member, reason = BAD_TARS[case]
    (tmp_path / "outside").write_text("precious")
    archive = _tar(tmp_path / "bad.tar.gz", entries)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=reason) as info:
        safe_extract(archive, dest)
    assert info.value.member == member and repr(member) in str(info.value)
    assert list(dest.iterdir()) == []  # nothing half-done, no temporary folder
    assert (tmp_path / "outside").read_text() == "precious" and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/hncam-evil.txt").exists()


@pytest.mark.parametrize(
    "name, reason",
    [("../evil.txt", "path traversal"), ("/abs.txt", "absolute"), ("a\\..\\..\\evil.txt", "path traversal")],
)
def test_safe_extract_refuses_unsafe_zip_members(tmp_path, name, reason):
    archive = _zip(tmp_path / "bad.zip", [("pkg/a.txt", b"a"), (name, b"x")])
    with pytest.raises(UnsafeArchiveError, match=reason):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_safe_extract_refuses_zip_symlink_escaping(tmp_path):
    info = zipfile.ZipInfo("pkg/link")
    info.create_system = 3
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "out")


def test_safe_extract_refuses_other_files(tmp_path):
    (tmp_path / "page.tar.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="neither a tar"):
        safe_extract(tmp_path / "page.tar.gz", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        safe_extract(tmp_path / "none.tgz", tmp_path / "out")


# ------------------------------------------------------------------- fake CIFAR-10, format-faithful


def _py2_pickle(obj, texts) -> bytes:
    """Pickle like Python 2's cPickle did for the real CIFAR files: the strings in ``texts`` become Python 2
    ``str`` (SHORT_BINSTRING), so ``encoding="latin1"`` reads them as str and ``encoding="bytes"`` as bytes."""
    raw = pickle.dumps(obj, protocol=2)
    ops = list(pickletools.genops(raw))
    out = bytearray()
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(raw)
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE") and arg in texts:
            out += b"U" + bytes([len(arg)]) + arg.encode("ascii")
        else:
            out += raw[pos:end]
    return bytes(out)


LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
N_PER_BATCH = 10


def _fake_cifar10(tmp_path: Path):
    """A tiny cifar-10-python.tar.gz in the real layout; returns (archive bytes, {file: md5})."""
    rng = np.random.default_rng(0)
    files = {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {
            "batch_label": f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1",
            "labels": [int(v) for v in rng.integers(0, 10, N_PER_BATCH)],
            "data": rng.integers(0, 256, (N_PER_BATCH, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}_{j}.png" for j in range(N_PER_BATCH)],
        }
        texts = {"batch_label", "labels", "data", "filenames", batch["batch_label"], *batch["filenames"]}
        files[fname] = _py2_pickle(batch, texts)
    meta = {"num_cases_per_batch": N_PER_BATCH, "label_names": LABEL_NAMES, "num_vis": 3072}
    files["batches.meta"] = _py2_pickle(meta, {"num_cases_per_batch", "label_names", "num_vis", *LABEL_NAMES})
    entries = [("cifar-10-batches-py", "dir", None)]
    entries += [(f"cifar-10-batches-py/{k}", "file", v) for k, v in files.items()]
    archive = _tar(tmp_path / "fake-cifar-10-python.tar.gz", entries).read_bytes()
    return archive, {k: _md5(v) for k, v in files.items()}


@pytest.fixture
def fake_cifar(tmp_path, server, monkeypatch):
    archive, md5s = _fake_cifar10(tmp_path)
    spec = dataclasses.replace(
        dl.DATASETS["cifar10"],
        urls=(server.serve("/official/cifar-10-python.tar.gz", archive),),
        md5=_md5(archive),
        size=len(archive),
    )
    monkeypatch.setitem(dl.DATASETS, "cifar10", spec)
    return archive, md5s, spec


def _torchvision_cifar10(root: Path, md5s, monkeypatch, train: bool):
    from torchvision.datasets import CIFAR10

    # torchvision checks the real files' MD5s: point it at the fake ones
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", md5s[f"data_batch_{k}"]] for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5s["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5s["batches.meta"]})
    return CIFAR10(root, train=train, download=False)


def test_fetch_dataset_fake_cifar10_loads_in_torchvision(fake_cifar, server, tmp_path, monkeypatch):
    archive, md5s, spec = fake_cifar
    root = tmp_path / "data"
    folder = fetch_dataset("CIFAR-10", root, progress=False)
    assert folder == root / "cifar-10-batches-py" and not spec.missing(folder)
    assert (root / spec.filename).read_bytes() == archive
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]

    with open(folder / "data_batch_1", "rb") as f:  # the CIFAR home page's reader
        batch = pickle.load(f, encoding="bytes")
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (N_PER_BATCH, 3072)
    assert len(batch[b"labels"]) == N_PER_BATCH

    train = _torchvision_cifar10(root, md5s, monkeypatch, train=True)
    test = _torchvision_cifar10(root, md5s, monkeypatch, train=False)
    assert len(train) == 5 * N_PER_BATCH and len(test) == N_PER_BATCH and train.classes == LABEL_NAMES
    image, label = train[0]
    assert image.size == (32, 32) and label == batch[b"labels"][0]
    assert np.array_equal(train.data[0], batch[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))

    hits = sum(server.hits.values())
    assert fetch_dataset("cifar10", root, progress=False) == folder  # idempotent: no network, no re-extract
    assert sum(server.hits.values()) == hits == 1


def test_fetch_dataset_default_root_is_data_home(fake_cifar, tmp_path):
    folder = fetch_dataset("cifar10", progress=False)
    assert folder == Path(os.environ["HNCAM_HOME"]) / "data" / "cifar-10-batches-py" and folder.is_dir()


def test_override_env_var_is_tried_first(fake_cifar, server, tmp_path, monkeypatch):
    archive, _, spec = fake_cifar
    monkeypatch.setenv("HNCAM_CIFAR10_URL", server.serve("/override/cifar.tgz", archive))
    fetch_dataset("cifar10", tmp_path / "data", progress=False)
    assert server.hits["/override/cifar.tgz"] == 1 and server.hits["/official/cifar-10-python.tar.gz"] == 0

    local = tmp_path / "my copy.tgz"  # a local path, even with a space
    local.write_bytes(archive)
    for i, value in enumerate([str(local), local.as_uri()]):
        monkeypatch.setenv("HNCAM_CIFAR10_URL", value)
        fetch_dataset("cifar10", tmp_path / f"data{i}", progress=False)
    assert sum(server.hits.values()) == 1


def test_override_failing_falls_back_to_official_mirror(fake_cifar, server, tmp_path, monkeypatch, closed_url):
    monkeypatch.setenv("HNCAM_CIFAR10_URL", closed_url)
    fetch_dataset("cifar10", tmp_path / "data", progress=False)
    assert server.hits["/official/cifar-10-python.tar.gz"] == 1


def test_manually_placed_archive_needs_no_network(fake_cifar, tmp_path, monkeypatch, closed_url):
    archive, _, spec = fake_cifar
    monkeypatch.setitem(dl.DATASETS, "cifar10", dataclasses.replace(spec, urls=(closed_url,)))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(dl.urllib.request, "urlopen", no_network)
    root = tmp_path / "data"
    root.mkdir()
    (root / spec.filename).write_bytes(archive)
    assert (fetch_dataset("cifar10", root, progress=False) / "test_batch").is_file()


def test_fetch_dataset_offline_message(fake_cifar, tmp_path, closed_url, monkeypatch):
    _, _, spec = fake_cifar
    monkeypatch.setitem(dl.DATASETS, "cifar10", dataclasses.replace(spec, urls=(closed_url,)))
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        fetch_dataset("cifar10", root, progress=False)
    msg = str(info.value)
    assert "no network or host unreachable" in msg and str(root / "cifar-10-python.tar.gz") in msg
    assert "HNCAM_CIFAR10_URL" in msg and spec.md5 in msg
    with pytest.raises(ValueError, match="known: cifar10, cifar100, cub200"):
        fetch_dataset("imagenet", root)


def test_registry():
    cub = dl.get_spec("CUB_200_2011")
    assert cub.md5 == "97eceeb196236b17998738112f37df78" and cub.size == 1_150_585_339
    assert cub.env_var == "HNCAM_CUB200_URL" and len(cub.urls) >= 2 and all("data.caltech.edu" in u for u in cub.urls)
    assert dl.get_spec("cifar10").md5 == "c58f30108f718f92721af3b95e74349a"
    assert dl.get_spec("cifar100").md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert dl.get_spec("cifar100").folder == "cifar-100-python"
    for spec in dl.DATASETS.values():
        # the first mirror is HTTPS; a later one may be plain HTTP (every file is MD5-checked, as torchvision
        # does for Fashion-MNIST, whose mirror is an S3 website without HTTPS)
        assert spec.env_var == f"HNCAM_{spec.name.upper()}_URL" and spec.urls[0].startswith("https://")
        assert all(u.startswith(("https://", "http://")) for u in spec.urls)


# ------------------------------------------------------------------------------------------ scripts

# The CIFAR-10 registry entry pointed at the fake archive's MD5, then the script run as ``__main__``. The package
# is entered without its ``__init__`` (which imports torch, seconds) to keep the test fast; the plain
# ``python data_scripts/get_cifar.py`` run below goes through the normal import.
_RUN_PATCHED = (
    "import dataclasses, runpy, sys, types; pkg = types.ModuleType('hncam_utils'); "
    "pkg.__path__ = [sys.argv[1]]; sys.modules['hncam_utils'] = pkg; import hncam_utils.download as d; "
    "d.DATASETS['cifar10'] = dataclasses.replace(d.DATASETS['cifar10'], md5=sys.argv[2], size=None); "
    "sys.argv = sys.argv[3:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HNCAM_")}
    return {**env, **extra}


def _run(args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(HNCAM_HOME=os.environ["HNCAM_HOME"]),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module", autouse=True)
def _offline_cli(tmp_path_factory):
    """``python data_scripts/get_cifar.py`` against a closed port, started when this module starts: the
    process spends seconds importing torch, so it runs alongside the other tests."""
    tmp = tmp_path_factory.mktemp("offline_cli")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/cifar-10-python.tar.gz"
    sock.close()
    script = str(ROOT / "data_scripts" / "get_cifar.py")
    args = [sys.executable, script, "--root", str(tmp / "data"), "--url", url, "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(HNCAM_HOME=str(tmp / "home")), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    yield proc, tmp, url
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_get_cifar_script_downloads(fake_cifar, server, tmp_path):
    archive, _, spec = fake_cifar
    url = server.serve("/mirror/cifar.tgz", archive)
    root = tmp_path / "data"
    script = str(ROOT / "data_scripts" / "get_cifar.py")
    patched = ["-c", _RUN_PATCHED, str(ROOT / "hncam_utils"), spec.md5]
    proc = _run([*patched, script, "--root", str(root), "--url", url, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert str(root / "cifar-10-batches-py") in proc.stdout and "CIFAR10(root=" in proc.stdout
    assert (root / "cifar-10-batches-py" / "batches.meta").is_file() and server.hits["/mirror/cifar.tgz"] == 1
    assert server.hits["/official/cifar-10-python.tar.gz"] == 0  # --url replaces the official mirrors
    assert "torch" not in proc.stderr


def test_get_cifar_script_fails_cleanly_offline(_offline_cli):
    proc, tmp, url = _offline_cli
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and stdout == ""
    assert "Traceback" not in stderr and stderr.startswith("error: could not download cifar-10-python.tar.gz")
    assert "no network or host unreachable" in stderr and url in stderr
    assert str(tmp / "data" / "cifar-10-python.tar.gz") in stderr and "HNCAM_CIFAR10_URL" in stderr
    assert not (tmp / "data" / "cifar-10-python.tar.gz.part").exists()


def test_get_cub200_script(tmp_path, closed_url, capsys):
    import runpy

    main = runpy.run_path(str(ROOT / "data_scripts" / "get_cub200.py"))["main"]
    assert main(["--root", str(tmp_path / "data"), "--url", closed_url, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not download CUB_200_2011.tgz (expected MD5 97eceeb196236b17998738112f37df78)")
    assert str(tmp_path / "data" / "CUB_200_2011.tgz") in err and "HNCAM_CUB200_URL" in err

    cub = tmp_path / "cub"  # an already unpacked copy is found without any download
    (cub / "CUB_200_2011" / "images").mkdir(parents=True)
    for marker in dl.get_spec("cub200").markers[:-1]:
        (cub / "CUB_200_2011" / marker).touch()
    assert main(["--root", str(cub), "--url", closed_url]) == 0
    assert str(cub / "CUB_200_2011") in capsys.readouterr().out


def test_script_main_is_each_data_script_s_main(capsys):
    """The three data scripts are script_main(...) with their name, data sets and docstring as --help."""
    import runpy

    for script, choices in (("get_cifar.py", "{cifar10,cifar100}"), ("get_cub200.py", None),
                            ("get_fashion_mnist.py", None)):
        namespace = runpy.run_path(str(ROOT / "data_scripts" / script))
        with pytest.raises(SystemExit) as exc:
            namespace["main"](["--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {script}") and namespace["__doc__"].splitlines()[0] in out
        assert ("--dataset " + choices in out) if choices else "--dataset" not in out
    with pytest.raises(ValueError, match="choices must name data sets"):
        dl.script_main("get_imagenet.py", ("imagenet",), "")
