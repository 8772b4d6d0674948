#!/usr/bin/env python
"""Run the course: execute every ``notebooks/??_*.ipynb`` in order under one profile.

Each notebook runs in a fresh kernel (the interpreter running this script) with ``notebooks/`` as working
directory and ``HNCAM_PROFILE`` set to the chosen profile. The executed copy and an HTML rendering go to the
build folder; ``--inplace`` also writes the executed notebook back into ``notebooks/`` (that is how the
committed outputs are produced).

Examples::

    python tools/run_notebooks.py                      # cpu profile, build/course/
    python tools/run_notebooks.py --profile smoke --only 00,01
    HNCAM_PROFILE=cpu python tools/run_notebooks.py --inplace

Data that cannot be had is not an error: a notebook that stops with ``DatasetNotFoundError``,
``DownloadError`` or ``WeightsUnavailableError`` is reported as *skipped* with the error's message (what is
missing and how to get it), and lines a notebook prints starting with ``[skipped]`` (a section that needed such
data, see ``hncam_utils.skips``) are collected; the closing summary lists what ran, what was skipped and why.

Exit status: 0 when every notebook ran or was skipped for want of data, 1 when one failed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PROFILES = ("smoke", "cpu", "gpu")


def find_notebooks(folder: Path, only: Optional[Sequence[str]] = None) -> List[Path]:
    """``??_*.ipynb`` in ``folder``, sorted; ``only`` keeps those whose two-digit prefix is listed."""
    paths = sorted(p for p in folder.glob("??_*.ipynb") if p.name[:2].isdigit())
    if only:
        wanted = {s.strip().zfill(2) for s in only if s.strip()}
        paths = [p for p in paths if p.name[:2] in wanted]
        missing = wanted - {p.name[:2] for p in paths}
        if missing:
            raise SystemExit(f"no notebook with prefix {', '.join(sorted(missing))} in {folder}")
    return paths


SKIP_MARKER = "[skipped]"  # = hncam_utils.skips.SKIP_MARKER (tests/test_course_skips.py checks they agree)
SKIP_ERRORS = ("DatasetNotFoundError", "DownloadError", "WeightsUnavailableError")  # = hncam_utils.skips.SKIP_ERRORS


def skip_reason(error: Optional[BaseException]) -> Optional[str]:
    """The message of a notebook that stopped because its data or weights cannot be had, else ``None``."""
    if getattr(error, "ename", None) in SKIP_ERRORS:  # nbclient's CellExecutionError names the exception
        return re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(error, "evalue", "") or "")).strip() or str(error.ename)
    return None


def skipped_parts(path: Path) -> List[str]:
    """The ``[skipped] ...`` lines an executed notebook printed (sections that lacked their data)."""
    import nbformat

    if not path.exists():
        return []
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                found += [line.strip() for line in out.get("text", "").splitlines() if line.startswith(SKIP_MARKER)]
    return found


def run_one(path: Path, out_dir: Path, timeout: int, inplace: bool, kernel: str) -> tuple:
    """Execute one notebook; write the executed copy and its HTML. Returns ``(ok, seconds, error)``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=True,
    )
    t0 = time.perf_counter()
    error = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        error = exc
    except Exception as exc:  # kernel start-up problems and the like
        error = exc
    seconds = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    body, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
    if inplace and error is None:
        nbformat.write(nb, path)
    return error is None, seconds, error


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="smoke, cpu or gpu (default: $HNCAM_PROFILE, else cpu)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "course",
                        help="folder for the executed notebooks and their HTML (default: build/course)")
    parser.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,02")
    parser.add_argument("--inplace", action="store_true",
                        help="also write each successfully executed notebook back into notebooks/")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    parser.add_argument("--kernel", default="python3",
                        help="kernel name (default python3: the interpreter running this script)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    profile = (args.profile or os.environ.get("HNCAM_PROFILE") or "cpu").strip().lower()
    if profile not in PROFILES:
        parser.error(f"unknown profile {profile!r}; choose one of {PROFILES}")
    os.environ["HNCAM_PROFILE"] = profile  # inherited by every kernel
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    paths = find_notebooks(args.notebooks, args.only.split(",") if args.only else None)
    if not paths:
        print(f"no notebooks found in {args.notebooks}", file=sys.stderr)
        return 1
    out_dir = args.out if args.out.is_absolute() else Path.cwd() / args.out
    print(f"running {len(paths)} notebook(s) with profile {profile!r}" + (" (writing back in place)" if args.inplace else ""),
          flush=True)
    failed = []
    skipped = []  # (notebook, reason): stopped for want of data or weights
    parts = []  # (notebook, line): sections a notebook skipped for want of data
    total = 0.0
    for path in paths:
        ok, seconds, error = run_one(path, out_dir, args.timeout, args.inplace, args.kernel)
        total += seconds
        reason = None if ok else skip_reason(error)
        parts += [(path.name, line) for line in skipped_parts(out_dir / path.name)]
        print(f"  {path.name:<28} {seconds:7.1f} s  {'ok' if ok else 'skipped' if reason else 'FAILED'}", flush=True)
        if reason:
            skipped.append((path.name, reason))
            print(f"    {reason.splitlines()[0]}", flush=True)
        elif not ok:
            failed.append(path.name)
            message = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
            print(f"    {type(error).__name__}: {message.splitlines()[-1] if message else ''}", flush=True)
    print(f"total {total:.1f} s; executed notebooks and HTML in {out_dir}")
    print(skip_summary([p.name for p in paths], failed, skipped, parts))
    if args.inplace:
        print(f"executed notebooks written back to {args.notebooks}" + (" (failed ones left unchanged)" if failed else ""))
    if failed:
        print(f"failed: {', '.join(failed)} (see the executed copies in {out_dir} for the traceback)", file=sys.stderr)
        return 1
    return 0


def skip_summary(names: Sequence[str], failed: Sequence[str], skipped: Sequence[tuple], parts: Sequence[tuple]) -> str:
    """The closing summary: what ran, what was skipped (whole notebooks and sections) and why."""
    gone = set(failed) | {name for name, _ in skipped}
    ran = [n for n in names if n not in gone]
    lines = [f"ran: {', '.join(ran) if ran else 'none'}"]
    for name, reason in skipped:
        lines.append(f"skipped: {name} -- " + reason.replace("\n", "\n    "))
    for name, line in parts:
        lines.append(f"skipped part of {name}: {line[len(SKIP_MARKER):].strip()}")
    if not skipped and not parts:
        lines.append("skipped: nothing")
    if failed:
        lines.append(f"failed: {', '.join(failed)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
