"""Download, verify and unpack the real data sets (standard library only, plus ``tqdm`` for a progress bar).

In the spirit of pytorch/tutorials' ``.jenkins/download_data.py``, with more care:

* every file is checked against a known MD5 and written atomically: it is streamed to ``<dest>.part`` and
  renamed onto ``<dest>`` only once complete and verified, so an interrupted or corrupted download never
  looks like a good file;
* each data set has a list of mirrors, tried in order, and an override environment variable
  (``HNCAM_<NAME>_URL``, e.g. ``HNCAM_CUB200_URL``) that is tried first; it may be an ``http(s)://`` URL,
  a ``file://`` URL or a plain local path;
* when everything fails, :class:`DownloadError` says what was tried, why each attempt failed (and whether the
  machine looks offline), the expected checksum, and how to fix it: place the archive by hand at the exact
  path printed, or set the override variable;
* archives are unpacked by :func:`safe_extract`, which refuses absolute paths, ``..``, links leaving the
  destination and device files, and unpacks into a temporary folder that is renamed into place at the end.

Use :func:`fetch_dataset` (``fetch_dataset("cifar10")``) or the scripts in ``data_scripts/``.
The archives live in ``data_home() / "data"`` unless told otherwise (see :func:`hncam_utils.paths.data_home`).
"""

from __future__ import annotations

import argparse
import copy
import errno
import gzip
import hashlib
import os
import posixpath
import shutil
import socket
import ssl
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._checks import check_bool, check_float, check_int, show
from .paths import data_home

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DatasetSpec",
    "DownloadError",
    "FileSetSpec",
    "RemoteFile",
    "UnsafeArchiveError",
    "data_home",
    "default_root",
    "download_url",
    "fetch_dataset",
    "get_spec",
    "md5sum",
    "safe_extract",
    "verify_file",
]

PathLike = Union[str, "os.PathLike[str]"]
USER_AGENT = "hncam_utils (+https://github.com/; Python urllib)"
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------- errors


class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected checksum.

    Attributes:
        dest: where the file was to be written (and where it may be placed by hand).
        md5: the expected MD5, or ``None`` when none was given.
        attempts: ``(url, reason)`` for every source tried, in order.
    """

    def __init__(self, message: str, *, dest: Path, md5: Optional[str], attempts: Sequence[Tuple[str, str]]):
        super().__init__(message)
        self.dest = dest
        self.md5 = md5
        self.attempts = list(attempts)


class ChecksumError(ValueError):
    """A file's MD5 differs from the expected one.

    Attributes:
        path: the file. expected / actual: the two MD5s (lower-case hex).
    """

    def __init__(self, message: str, *, path: Path, expected: str, actual: str):
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination, or is a link/device that is not allowed.

    Attributes:
        archive: the archive. member: the offending member's name. reason: why it was refused.
    """

    def __init__(self, archive: Path, member: str, reason: str):
        super().__init__(
            f"refusing to extract {archive}: member {member!r} {reason}. Nothing was extracted; the archive "
            "is corrupted or malicious: delete it and download it again from a trusted source."
        )
        self.archive = archive
        self.member = member
        self.reason = reason


# -------------------------------------------------------------------------------------------- hashing


def _new_md5() -> "hashlib._Hash":
    try:  # FIPS-enabled systems refuse MD5 unless told it is not used for security.
        return hashlib.md5(usedforsecurity=False)  # type: ignore[call-arg]
    except TypeError:  # pragma: no cover - Python < 3.9
        return hashlib.md5()


def _check_md5_format(md5: str) -> str:
    if not isinstance(md5, str):
        raise TypeError(f"md5 must be the expected MD5 as a string of 32 hex digits, got {show(md5)}; to see a "
                        "file's checksum without checking it, call md5sum(path)")
    md5 = md5.strip().lower()
    if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
        raise ValueError(f"md5 must be 32 hex digits, got {md5!r}: not an MD5 checksum")
    return md5


def md5sum(path: PathLike, chunk: int = _CHUNK) -> str:
    """The MD5 of a file, read in chunks (constant memory), as lower-case hex.

    Args:
        path: the file.
        chunk: bytes read at a time.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    h = _new_md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: PathLike, md5: str) -> None:
    """Check that ``path`` has the MD5 ``md5``.

    Args:
        path: the file.
        md5: the expected MD5 (hex, any case).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ChecksumError: the checksums differ; the message gives both and the fix (delete, download again).
        ValueError: ``md5`` is not 32 hex digits. TypeError: ``md5`` is not a string (e.g. ``None``).
        IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    expected = _check_md5_format(md5)
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a folder; verify_file checks one file")
    actual = md5sum(path)
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for {path} ({path.stat().st_size:,} bytes): MD5 is {actual}, expected {expected}. "
            f"The file is incomplete or corrupted: delete it ({path}) and download it again.",
            path=path,
            expected=expected,
            actual=actual,
        )


# ------------------------------------------------------------------------------------------- download


def _as_url(source: str) -> str:
    """``http(s)://``, ``ftp://`` and ``file://`` URLs are kept; anything else is a local path."""
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("http", "https", "ftp", "file"):
        return source
    return Path(source).expanduser().resolve().as_uri()


def _describe_ssl(exc: ssl.SSLError) -> str:
    return (
        f"TLS/SSL error ({exc}): the network is reachable but the secure connection failed; a proxy or firewall "
        "may intercept HTTPS, or Python lacks CA certificates (on macOS, run 'Install Certificates.command')"
    )


def _describe_error(exc: BaseException, timeout: float) -> str:
    """One line on why a source failed, telling "offline / unreachable" apart from server-side errors."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (FileNotFoundError, IsADirectoryError, PermissionError)):
            return f"cannot read local file: {reason}"
        if isinstance(reason, ssl.SSLError):
            return _describe_ssl(reason)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return f"timed out after {timeout:g} s: no network or host unreachable ({reason})"
        if isinstance(reason, OSError):  # DNS failure, connection refused, network unreachable...
            return f"no network or host unreachable ({reason})"
        return f"URL error: {reason}"
    if isinstance(exc, ssl.SSLError):
        return _describe_ssl(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s while reading: connection too slow or lost"
    if isinstance(exc, (HTTPException, ConnectionError)):
        return f"connection broken during the transfer ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


class _SourceFailed(Exception):
    """A source failed in a way that the next mirror may fix (internal)."""


def _fetch_one(
    url: str,
    part: Path,
    md5: Optional[str],
    size: Optional[int],
    timeout: float,
    progress: bool,
    label: str,
) -> None:
    """Stream ``url`` into ``part`` and check it. Raises ``_SourceFailed`` (try the next mirror) or ``OSError``
    (a local problem, e.g. a full disk, that no mirror will fix)."""
    from tqdm.auto import tqdm

    h = _new_md5()
    received = 0
    head = b""
    try:
        request = urllib.request.Request(_as_url(url), headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length_header = response.headers.get("Content-Length")
            total = int(length_header) if length_header and length_header.isdigit() else None
            if size is not None and total is not None and total != size:
                raise _SourceFailed(f"offers {total:,} bytes, expected {size:,}: not the right file")
            with open(part, "wb") as out, tqdm(
                total=total if total is not None else size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
            ) as bar:
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    if len(head) < 64:
                        head += block[: 64 - len(head)]
                    out.write(block)  # an OSError here (disk full...) is local: let it propagate
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received != total:
                raise _SourceFailed(f"connection closed after {received:,} of {total:,} bytes (incomplete)")
    except _SourceFailed:
        raise
    except (urllib.error.URLError, HTTPException, ConnectionError, ssl.SSLError, socket.timeout, TimeoutError) as exc:
        raise _SourceFailed(_describe_error(exc, timeout)) from exc
    except ValueError as exc:  # a malformed URL
        raise _SourceFailed(f"invalid URL ({exc})") from exc
    if md5 is not None:
        actual = h.hexdigest()
        if actual != md5:
            hint = " (it looks like an HTML page, e.g. an error or login page)" if head.lstrip()[:1] == b"<" else ""
            raise _SourceFailed(f"checksum mismatch: got MD5 {actual} for {received:,} bytes{hint}")


def _format_failure(
    dest: Path, md5: Optional[str], attempts: Sequence[Tuple[str, str]], env_var: Optional[str]
) -> str:
    lines = [f"could not download {dest.name} (expected MD5 {md5 or '(none given)'})."]
    if attempts:
        lines.append("Tried, in order:")
        lines += [f"  {i}. {url}\n     -> {reason}" for i, (url, reason) in enumerate(attempts, 1)]
    else:
        lines.append("No URL to try.")
    if any("no network or host unreachable" in reason for _, reason in attempts):
        lines.append("This machine looks offline (or the host is down / blocked by a firewall or proxy).")
    lines.append("How to fix it:")
    lines.append(
        "  * download the file yourself (e.g. in a browser, from one of the URLs above) and place it at exactly\n"
        f"      {dest}\n"
        "    then run this again: it is checked against the MD5 above and used without any network access;"
    )
    if env_var:
        lines.append(
            f"  * or set the environment variable {env_var} to another mirror (http(s)://...), a file:// URL or a "
            f"local path, e.g.  export {env_var}=/path/to/{dest.name}"
        )
    else:
        lines.append("  * or pass another mirror (an http(s):// URL, a file:// URL or a local path).")
    return "\n".join(lines)


def download_url(
    urls: Union[str, Sequence[str]],
    dest: PathLike,
    md5: Optional[str],
    *,
    timeout: float = 60,
    progress: bool = True,
    size: Optional[int] = None,
    env_var: Optional[str] = None,
) -> Path:
    """Download a file from the first mirror that delivers the right bytes, atomically.

    Each mirror is streamed to ``dest.with_suffix(dest.suffix + ".part")``; once the transfer is complete and
    its MD5 matches, the partial file is renamed onto ``dest`` (``os.replace``, atomic). A failure (HTTP
    error, unreachable host, time-out, truncated transfer, wrong checksum) deletes the partial file and
    moves on to the next mirror. If ``dest`` already exists with the right MD5, nothing is downloaded.

    Args:
        urls: one source or several, tried in order: ``http(s)://`` or ``file://`` URLs, or local paths.
        dest: the file to write (its folder is created).
        md5: the expected MD5; ``None`` skips verification (and then an existing ``dest`` is kept as is).
        timeout: seconds allowed for connecting and for each read.
        progress: show a progress bar (``tqdm.auto``: a widget in notebooks, text elsewhere).
        size: the expected size in bytes, if known: a mirror announcing another size is skipped at once.
        env_var: the override environment variable to suggest in the error message.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: every mirror failed; the message lists each URL with its error, the expected MD5,
            and the fix (place the file at ``dest`` by hand, or set the override variable).
        OSError: a local problem no mirror can fix (e.g. no space left on ``dest``'s disk).
        ValueError: ``md5`` is not 32 hex digits.
    """
    if isinstance(urls, (str, os.PathLike)):
        sources = [urls]
    elif isinstance(urls, Sequence) and all(isinstance(u, (str, os.PathLike)) for u in urls):
        sources = list(urls)  # an empty list ends in a DownloadError that says how to place the file by hand
    else:
        raise TypeError(f"urls must be a URL / path or a list of them, got {show(urls)}")
    sources = [os.fspath(u) for u in sources]
    dest = Path(dest).expanduser()
    if dest.is_dir():
        raise IsADirectoryError(f"dest={str(dest)!r} is a folder; pass the file to write, e.g. {dest / 'archive.tar.gz'}")
    md5 = _check_md5_format(md5) if md5 is not None else None
    check_float("timeout", timeout, min=0, min_open=True, fix="seconds allowed to connect and per read, e.g. 60")
    check_int("size", size, min=0, none_ok=True)
    check_bool("progress", progress)
    attempts: List[Tuple[str, str]] = []

    if dest.is_file():
        if md5 is None:
            return dest
        actual = md5sum(dest)
        if actual == md5:
            return dest
        attempts.append((f"{dest} (already there)", f"checksum mismatch: got MD5 {actual}; replaced if a mirror works"))

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    for url in sources:
        try:
            _fetch_one(url, part, md5, size, timeout, progress, dest.name)
            os.replace(part, dest)
            return dest
        except _SourceFailed as exc:
            attempts.append((url, str(exc)))
        finally:
            if part.exists():
                part.unlink()
    raise DownloadError(_format_failure(dest, md5, attempts, env_var), dest=dest, md5=md5, attempts=attempts)


# -------------------------------------------------------------------------------------------- extract


def _bad_name(name: str) -> Optional[str]:
    """Why an archive member name is unsafe as a relative path (``None`` if it is fine)."""
    unified = name.replace("\\", "/")
    if not unified.strip("/"):
        return "has an empty name"
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return "has an absolute path"
    if ".." in unified.split("/"):
        return "contains '..' (path traversal)"
    if "\x00" in name:
        return "contains a NUL byte"
    return None


def _within(root: str, path: str) -> bool:
    root = os.path.realpath(root)
    path = os.path.realpath(path)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _through_symlink(tmp: Path, name: str) -> bool:
    """Whether writing ``name`` under ``tmp`` would go through (or onto) a symlink already extracted."""
    current = tmp
    for part in [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]:
        current = current / part
        if current.is_symlink():
            return True
    return False


def _check_tar_member(tmp: Path, member: tarfile.TarInfo) -> Optional[str]:
    reason = _bad_name(member.name)
    if reason:
        return reason
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "is a device file, FIFO or other special file"
    if _through_symlink(tmp, member.name):
        return "would be written through a symbolic link"
    if member.issym():
        link = member.linkname
        if not link or link.startswith(("/", "\\")) or (len(link) > 1 and link[1] == ":"):
            return f"is a symbolic link to an absolute path ({link!r})"
        target = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), link.replace("\\", "/")))
        if target == ".." or target.startswith("../"):
            return f"is a symbolic link pointing outside the destination ({link!r})"
        if not _within(str(tmp), str(tmp / posixpath.dirname(member.name) / link)):
            return f"is a symbolic link pointing outside the destination ({link!r})"
    if member.islnk():
        reason = _bad_name(member.linkname)
        if reason:
            return f"is a hard link whose target {member.linkname!r} {reason}"
        if _through_symlink(tmp, member.linkname):
            return f"is a hard link through a symbolic link ({member.linkname!r})"
    return None


def _extract_tar(archive: Path, tmp: Path) -> None:
    has_filter = hasattr(tarfile, "data_filter")
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            reason = _check_tar_member(tmp, member)
            if reason:
                raise UnsafeArchiveError(archive, member.name, reason)
            if member.isdir():  # plain folders; their modes are not restored (a read-only folder would block)
                (tmp / member.name).mkdir(parents=True, exist_ok=True)
                continue
            if has_filter:
                try:
                    tar.extract(member, tmp, filter="data")  # type: ignore[call-arg]
                except tarfile.FilterError as exc:  # type: ignore[attr-defined]
                    raise UnsafeArchiveError(archive, member.name, f"was refused by tarfile's data filter ({exc})")
            else:  # a Python without extraction filters: the checks above, plus sanitised modes and owners
                safe = copy.copy(member)
                safe.mode = (member.mode & 0o755) | (0o600 if member.isfile() else 0)
                safe.uid = getattr(os, "getuid", lambda: 0)()
                safe.gid = getattr(os, "getgid", lambda: 0)()
                safe.uname = safe.gname = ""
                tar.extract(safe, tmp, set_attrs=not member.issym())


def _extract_zip(archive: Path, tmp: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            reason = _bad_name(info.filename)
            mode = info.external_attr >> 16
            if reason is None and info.create_system == 3 and mode:
                kind = stat.S_IFMT(mode)
                if stat.S_ISLNK(mode):
                    link = zf.read(info).decode("utf-8", "replace")
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(info.filename), link))
                    if link.startswith("/") or target == ".." or target.startswith("../"):
                        reason = f"is a symbolic link pointing outside the destination ({link!r})"
                elif kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    reason = "is a device file, FIFO or other special file"
            if reason:
                raise UnsafeArchiveError(archive, info.filename, reason)
        zf.extractall(tmp)  # zipfile never creates links: every member is a plain file or folder


def _move_into(tmp: Path, dest: Path) -> None:
    """Rename each top-level entry of ``tmp`` onto ``dest``, replacing entries of the same name."""
    for entry in sorted(tmp.iterdir()):
        target = dest / entry.name
        if target.is_dir() and not target.is_symlink():  # an older, incomplete copy: swap it out, then delete it
            trash = Path(tempfile.mkdtemp(prefix=".hncam-old-", dir=dest))
            os.replace(target, trash / entry.name)
            os.replace(entry, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            if target.is_symlink() or (target.exists() and entry.is_dir()):
                target.unlink()
            os.replace(entry, target)


def safe_extract(archive: PathLike, dest: PathLike) -> None:
    """Unpack a tar (plain, gz, bz2, xz) or zip archive into ``dest``, refusing anything unsafe.

    Refused: absolute member paths, ``..`` components, members written through a symbolic link, symbolic
    or hard links pointing outside ``dest``, device files and FIFOs. Where the running Python has tarfile's
    extraction filters (3.12+, 3.11.4+, ...), ``filter="data"`` is applied on top of these checks. Modes are
    sanitised (no set-uid bits, owner can read and write) and owners are not restored.

    The archive is unpacked into a hidden temporary folder inside ``dest``; only when every member is out are
    its top-level entries renamed into ``dest`` (replacing entries of the same name), so an interrupted or
    refused extraction leaves nothing half-done.

    Args:
        archive: the archive file.
        dest: the folder to unpack into (created if needed).

    Raises:
        UnsafeArchiveError: a member is unsafe; its name is in the message and nothing was extracted.
        ValueError: ``archive`` is neither a tar nor a zip archive.
        FileNotFoundError: ``archive`` does not exist.
    """
    archive = Path(archive)
    dest = Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such archive", str(archive))
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"dest={str(dest)!r} is a file, not a folder; pass the folder to unpack into")
    if tarfile.is_tarfile(archive):
        extract = _extract_tar
    elif zipfile.is_zipfile(archive):
        extract = _extract_zip
    else:
        raise ValueError(
            f"{archive} is neither a tar (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) nor a zip archive: "
            "it is probably incomplete or an error page; delete it and download it again."
        )
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hncam-extract-", dir=dest))
    try:
        extract(archive, tmp)
        for folder, dirs, files in os.walk(tmp):  # links chained through other links: check where they land
            for name in dirs + files:
                path = os.path.join(folder, name)
                if os.path.islink(path) and not _within(str(tmp), path):
                    member = os.path.relpath(path, tmp).replace(os.sep, "/")
                    raise UnsafeArchiveError(archive, member, "is a symbolic link resolving outside the destination")
        _move_into(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------- registry


def _sources(env_var: str, urls: Sequence[str]) -> List[str]:
    """The override variable's value (if set), then ``urls``, without duplicates or empty entries."""
    out: List[str] = []
    override = os.environ.get(env_var, "").strip()
    for u in ([override] if override else []) + list(urls):
        if u and u not in out:
            out.append(u)
    return out


@dataclass(frozen=True)
class DatasetSpec:
    """One downloadable data set.

    Attributes:
        name: registry key (``"cifar10"``). title: human name.
        filename: the archive's file name. urls: official mirrors, tried in order. md5: the archive's MD5.
        size: the archive's size in bytes. folder: the folder the archive unpacks to.
        markers: entries of ``folder`` whose presence means "already extracted".
        env_var: the override environment variable (``HNCAM_<NAME>_URL``).
    """

    name: str
    title: str
    filename: str
    urls: Tuple[str, ...]
    md5: str
    size: Optional[int]
    folder: str
    markers: Tuple[str, ...]
    env_var: str
    homepage: str = ""

    def missing(self, folder: Path) -> List[str]:
        """The markers absent from ``folder``."""
        return [m for m in self.markers if not (folder / m).exists()]

    def sources(self, urls: Optional[Sequence[str]] = None) -> List[str]:
        """Sources to try: the override variable (if set), then ``urls`` if given, else the official mirrors."""
        return _sources(self.env_var, self.urls if urls is None else urls)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a :class:`FileSetSpec`: served gzip-compressed, kept decompressed.

    Attributes:
        filename: the served file's name (``train-images-idx3-ubyte.gz``).
        md5: the served (compressed) file's MD5.
        raw_md5: the decompressed file's MD5: what is verified, whatever the compressed copy came from.
        size: the served file's size in bytes, if known.
    """

    filename: str
    md5: str
    raw_md5: str
    size: Optional[int] = None

    @property
    def raw_name(self) -> str:
        """The decompressed file's name (``train-images-idx3-ubyte``)."""
        return self.filename[:-3] if self.filename.endswith(".gz") else self.filename


@dataclass(frozen=True)
class FileSetSpec:
    """A data set served as several gzip-compressed files (no archive), e.g. Fashion-MNIST.

    :func:`fetch_dataset` makes ``root / folder`` hold every file decompressed and verified by its
    decompressed MD5. Each compressed file comes from the first of: a system copy (``system_dirs``, e.g. the
    files Debian's ``dataset-fashion-mnist`` installs), a compressed copy already in ``root``, the override
    variable ``env_var`` (a base URL or a local folder), the mirrors ``urls`` (base URLs; the file name is
    appended).

    Attributes:
        name, title, folder, env_var, homepage: as in :class:`DatasetSpec`.
        urls: base URLs of the mirrors, tried in order.
        files: the files.
        system_dirs: folders where a system package installs the compressed files.
        system_package: the name of that package (for messages).
    """

    name: str
    title: str
    urls: Tuple[str, ...]
    files: Tuple[RemoteFile, ...]
    folder: str
    env_var: str
    homepage: str = ""
    system_dirs: Tuple[str, ...] = ()
    system_package: str = ""

    @property
    def markers(self) -> Tuple[str, ...]:
        return tuple(f.raw_name for f in self.files)

    def missing(self, folder: Path) -> List[str]:
        """The decompressed files absent from ``folder``."""
        return [m for m in self.markers if not (folder / m).exists()]

    def sources(self, urls: Optional[Sequence[str]] = None) -> List[str]:
        """Base sources to try: the override variable (if set), then ``urls`` if given, else the mirrors."""
        return _sources(self.env_var, self.urls if urls is None else urls)

    def system_copy(self) -> Optional[Path]:
        """The first of ``system_dirs`` that holds every compressed file, or ``None``."""
        for d in self.system_dirs:
            folder = Path(d)
            if all((folder / f.filename).is_file() for f in self.files):
                return folder
        return None


def _join(base: str, filename: str) -> str:
    """``base`` (a URL or a local folder) + ``filename``."""
    scheme = urllib.parse.urlsplit(base).scheme.lower()
    if scheme in ("http", "https", "ftp", "file"):
        return base.rstrip("/") + "/" + filename
    return str(Path(base).expanduser() / filename)


def _gunzip_verified(src: Path, dest: Path, raw_md5: str) -> Optional[str]:
    """Decompress ``src`` to ``dest`` atomically if the result has MD5 ``raw_md5``; else return the MD5 found
    (and write nothing). A file that is not gzip data counts as a mismatch."""
    part = dest.with_name(dest.name + ".part")
    h = _new_md5()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with gzip.open(src, "rb") as fin, open(part, "wb") as fout:
            for block in iter(lambda: fin.read(_CHUNK), b""):
                h.update(block)
                fout.write(block)
        actual = h.hexdigest()
        if actual != raw_md5:
            return actual
        os.replace(part, dest)
        return None
    except (OSError, EOFError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno is not None:
            raise  # a local problem (disk full, permission): no other source fixes it
        return f"(not readable gzip data: {exc})"
    finally:
        if part.exists():
            part.unlink()


def _fetch_file_set(spec: FileSetSpec, root: Path, urls: Optional[Sequence[str]], progress: bool,
                    use_system: bool, timeout: float = 60) -> Path:
    folder = root / spec.folder
    system = spec.system_copy() if use_system else None
    for f in spec.files:
        raw = folder / f.raw_name
        if raw.is_file() and md5sum(raw) == f.raw_md5:
            continue
        if system is not None:
            src = system / f.filename
            bad = _gunzip_verified(src, raw, f.raw_md5)
            if bad is not None:
                raise ChecksumError(
                    f"the system copy of {spec.title} is damaged: {src} decompresses to MD5 {bad}, expected "
                    f"{f.raw_md5} for {f.raw_name}. Reinstall the package ({spec.system_package}, e.g. "
                    f"apt-get install --reinstall {spec.system_package}), or pass use_system=False to download "
                    "the data set instead.",
                    path=src, expected=f.raw_md5, actual=bad,
                )
            continue
        gz = root / f.filename
        download_url([_join(u, f.filename) for u in spec.sources(urls)], gz, f.md5, progress=progress,
                     size=f.size, env_var=spec.env_var, timeout=timeout)
        bad = _gunzip_verified(gz, raw, f.raw_md5)
        if bad is not None:
            raise ChecksumError(
                f"{gz} has the right MD5 but decompresses to MD5 {bad}, expected {f.raw_md5}: delete {gz} and "
                "try again.", path=gz, expected=f.raw_md5, actual=bad,
            )
    return folder


DATASETS: Dict[str, Union[DatasetSpec, FileSetSpec]] = {
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        filename="cifar-10-python.tar.gz",
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        md5="c58f30108f718f92721af3b95e74349a",
        size=170_498_071,
        folder="cifar-10-batches-py",
        markers=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        env_var="HNCAM_CIFAR10_URL",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        title="CIFAR-100",
        filename="cifar-100-python.tar.gz",
        urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        size=169_001_437,
        folder="cifar-100-python",
        markers=("train", "test", "meta"),
        env_var="HNCAM_CIFAR100_URL",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cub200": DatasetSpec(
        name="cub200",
        title="CUB-200-2011",
        filename="CUB_200_2011.tgz",
        # CaltechDATA record 65de6-vp158; the file's URL has moved several times, hence a list.
        urls=(
            "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
            "https://data.caltech.edu/tindfiles/serve/1239ea37-e132-42ee-8c09-c383bb54e7ff/",
        ),
        md5="97eceeb196236b17998738112f37df78",
        size=1_150_585_339,
        folder="CUB_200_2011",
        markers=(
            "images.txt",
            "image_class_labels.txt",
            "train_test_split.txt",
            "bounding_boxes.txt",
            "classes.txt",
            "images",
        ),
        env_var="HNCAM_CUB200_URL",
        homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
    ),
    "fashion_mnist": FileSetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        # torchvision.datasets.FashionMNIST's compressed-file MD5s; the decompressed MD5s are the ones
        # Debian's recompressed copy shares with them (its .gz files differ).
        # the data set's own repository (HTTPS), then torchvision's mirror (an S3 website: plain HTTP only);
        # every file is checked by MD5 whichever way it came
        urls=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
              "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                       "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                       "9018921c3c673c538a1fc5bad174d6f9"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                       "8181f5470baa50b63fa0f6fddb340f0a"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                       "15d484375f8d13e6eb1aabb0c3f46965"),
        ),
        folder="FashionMNIST/raw",
        env_var="HNCAM_FASHION_MNIST_URL",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        system_package="dataset-fashion-mnist",
    ),
}

_ALIASES = {"cub": "cub200", "cub2002011": "cub200", "cub200": "cub200", "cifar10": "cifar10", "cifar100": "cifar100",
            "fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist"}


def get_spec(name: str) -> Union[DatasetSpec, FileSetSpec]:
    """The registry entry for ``name`` (case, ``-`` and ``_`` ignored: ``"CIFAR-10"``, ``"cub_200"``...).

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a data set name such as 'cifar10', got {show(name)}; known: "
                        f"{', '.join(sorted(DATASETS))}")
    key = _ALIASES.get(name.lower().replace("-", "").replace("_", ""), name)
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]


def default_root() -> Path:
    """Where data sets go by default: ``data_home() / "data"`` (torchvision's ``root``)."""
    return data_home() / "data"


def fetch_dataset(
    name: str,
    root: Optional[PathLike] = None,
    *,
    urls: Optional[Sequence[str]] = None,
    progress: bool = True,
    keep_archive: bool = True,
    use_system: bool = True,
    timeout: float = 60,
) -> Path:
    """Make a data set available under ``root``: download (or reuse an archive placed there), verify, unpack.

    Idempotent: if the unpacked folder already holds its marker files, nothing is read or downloaded. An
    archive already in ``root`` with the right MD5 (e.g. copied there by hand) is used without any network.

    Args:
        name: ``"cifar10"``, ``"cifar100"``, ``"cub200"`` or ``"fashion_mnist"`` (see :data:`DATASETS`).
            Fashion-MNIST (a :class:`FileSetSpec`) ends as the four decompressed idx files in
            ``root / "FashionMNIST" / "raw"`` (``torchvision.datasets.FashionMNIST(root, download=False)``),
            each verified by its decompressed MD5; a system copy (Debian's ``dataset-fashion-mnist``) is used
            when present, with no network.
        root: the folder holding the archive and the unpacked data set (torchvision's ``root``);
            default :func:`default_root`.
        urls: sources to try instead of the official mirrors (URLs or local paths). The override variable
            ``HNCAM_<NAME>_URL`` is always tried first.
        progress: show a progress bar while downloading.
        keep_archive: keep the archive after unpacking (default; delete it to save space).
        use_system: use a system copy when the data set has one (Fashion-MNIST).
        timeout: seconds allowed for connecting and for each read (an offline machine fails fast).

    Returns:
        The unpacked folder, e.g. ``root / "cifar-10-batches-py"``.

    Raises:
        ValueError: unknown ``name``.
        DownloadError: no source delivered the archive (the message says how to place it by hand).
        UnsafeArchiveError: the archive holds unsafe members.
        RuntimeError: the archive did not contain the expected files.
        ChecksumError: a system copy (or a downloaded file) that decompresses to other data than expected.
    """
    spec = get_spec(name)
    if isinstance(urls, (str, os.PathLike)):  # one source given as a string: not a list of characters
        urls = [urls]
    check_bool("progress", progress)
    check_bool("keep_archive", keep_archive)
    root = Path(root).expanduser() if root is not None else default_root()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"root={str(root)!r} is a file, not a folder; pass the folder for the data sets")
    if isinstance(spec, FileSetSpec):
        return _fetch_file_set(spec, root, urls, progress, use_system, timeout)
    folder = root / spec.folder
    if folder.is_dir() and not spec.missing(folder):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    archive = root / spec.filename
    if spec.size is not None and not archive.exists():
        free = shutil.disk_usage(root).free
        if free < 2.2 * spec.size:
            warnings.warn(
                f"{spec.title} needs about {2.2 * spec.size / 1e9:.1f} GB (archive + unpacked) in {root}, "
                f"which has {free / 1e9:.1f} GB free",
                RuntimeWarning,
                stacklevel=2,
            )
    download_url(
        spec.sources(urls), archive, spec.md5, progress=progress, size=spec.size, env_var=spec.env_var, timeout=timeout
    )
    safe_extract(archive, root)
    missing = spec.missing(folder)
    if missing:
        raise RuntimeError(
            f"{archive} was unpacked but {folder} lacks {', '.join(missing)}: not a {spec.title} archive?"
        )
    if not keep_archive:
        archive.unlink()
    return folder


# ------------------------------------------------------------------------------------ command line


def command_line(
    argv: Optional[Sequence[str]],
    *,
    choices: Sequence[str],
    description: str,
    prog: Optional[str] = None,
) -> int:
    """The ``data_scripts/get_*.py`` command lines: ``[--dataset NAME] [--root DIR] [--url URL]... [--quiet]``.

    Prints where the data is; on failure prints the error message (no traceback) and returns 1.

    Args:
        argv: the arguments (``None``: ``sys.argv[1:]``).
        choices: the data sets this script offers; ``--dataset`` is offered when there are several.
        description: the ``--help`` text (shown as written, e.g. a script's docstring with its examples).
        prog: the program name in ``--help``.

    Returns:
        The exit code: 0 on success, 1 on failure, 130 when interrupted.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if len(choices) > 1:
        parser.add_argument("--dataset", choices=list(choices), default=choices[0], help="default: %(default)s")
    parser.add_argument("--root", type=Path, default=None,
                        help=f"folder for the archive and the data (default: {data_home(create=False) / 'data'}; "
                             "set HNCAM_HOME to move it)")
    parser.add_argument("--url", action="append", default=None, metavar="URL",
                        help="a mirror, file:// URL or local path to use instead of the official mirrors "
                             "(repeatable; HNCAM_<NAME>_URL, if set, is still tried first)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    name = getattr(args, "dataset", choices[0])
    spec = get_spec(name)
    try:
        folder = fetch_dataset(name, args.root, urls=args.url, progress=not args.quiet)
    except KeyboardInterrupt:
        print("\ninterrupted: the partial download was removed; run again to restart.", file=sys.stderr)
        return 130
    except (DownloadError, ChecksumError, UnsafeArchiveError, RuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{spec.title} is ready in {folder}")
    if spec.name == "fashion_mnist":
        print(f"use it with torchvision.datasets.FashionMNIST(root={str(folder.parent.parent)!r}, download=False)")
    if spec.name.startswith("cifar"):
        cls = "CIFAR10" if spec.name == "cifar10" else "CIFAR100"
        print(f"use it with torchvision.datasets.{cls}(root={str(folder.parent)!r}, download=False)")
    return 0


def script_main(prog: str, choices: Sequence[str], description: str) -> Callable[..., int]:
    """The ``main(argv=None) -> exit code`` of a ``data_scripts/get_*.py`` script: :func:`command_line` with the
    script's name, its data sets and its ``--help`` text (the script's docstring).

    Example (the whole of ``data_scripts/get_cifar.py`` but its docstring and the import)::

        main = script_main("get_cifar.py", ("cifar10", "cifar100"), __doc__)
        if __name__ == "__main__":
            sys.exit(main())
    """
    choices = tuple(choices)
    if not choices or any(c not in DATASETS for c in choices):
        raise ValueError(f"choices must name data sets of {sorted(DATASETS)}, got {choices!r}")

    def main(argv: Optional[Sequence[str]] = None) -> int:
        """Parse ``argv`` (default: ``sys.argv[1:]``), fetch the data set, return the exit code."""
        return command_line(argv, choices=choices, description=description, prog=prog)

    return main
