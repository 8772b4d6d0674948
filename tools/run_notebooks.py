#!/usr/bin/env python
"""Run the course: execute every ``notebooks/??_*.ipynb`` in order under one profile.

Each notebook runs in a fresh kernel (the interpreter running this script) with ``notebooks/`` as working
directory and ``HNCAM_PROFILE`` set to the chosen profile. The executed copy and an HTML rendering go to the
build folder; ``--inplace`` also writes the executed notebook back into ``notebooks/`` (that is how the
committed outputs are produced).

What is written is meant to be read on GitHub and committed: widget state is not stored, and the outputs of
progress-bar widgets (live only in a running kernel; a stored copy shows a frozen "0%") are removed, see
:func:`strip_widgets`. The terminal shows one line per notebook and a closing summary; what the kernel process
itself prints on its stderr (start-up warnings and the like) goes to ``<out>/logs/NN_name.kernel.log``.
Kernels get a private, writable ``IPYTHONDIR`` (so IPython never falls back with a "not a writable location"
warning) and, where the kernel supports it, encrypted transport (so ipykernel does not warn that it runs
over TCP without encryption).

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
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PROFILES = ("smoke", "cpu", "gpu")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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


def strip_widgets(nb: Any) -> int:
    """Remove widget state and widget outputs from an executed notebook, in place.

    Drops ``metadata.widgets`` (the saved state of every widget model) and every output that displays a
    widget (mime type ``application/vnd.jupyter.widget-view+json``: in this course, ``tqdm.auto`` progress
    bars). Without a kernel those outputs cannot render: GitHub and nbconvert show them as a frozen bar or as a
    ``HBox(children=...)`` text. Text, figures and tables are kept. Returns the number of outputs removed.
    """
    nb.get("metadata", {}).pop("widgets", None)
    removed = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if WIDGET_VIEW in out.get("data", {}):
                removed += 1
            else:
                kept.append(out)
        cell["outputs"] = kept
    return removed


def kernel_environment(ipython_dir: Path) -> dict:
    """The environment for a notebook kernel: this process's, with a private writable ``IPYTHONDIR`` (unless
    the user set a writable one) and the inline matplotlib backend."""
    env = dict(os.environ)
    current = env.get("IPYTHONDIR")
    if not (current and os.path.isdir(current) and os.access(current, os.W_OK)):
        ipython_dir.mkdir(parents=True, exist_ok=True)
        env["IPYTHONDIR"] = str(ipython_dir)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def _client_config() -> Any:
    """Kernel manager settings: CurveZMQ transport encryption where jupyter_client and the kernel support it
    (jupyter_client >= 8.10 has ``transport_encryption``; older versions ignore the setting)."""
    from traitlets.config import Config

    config = Config()
    try:
        import zmq
        from jupyter_client.manager import KernelManager

        if "transport_encryption" in KernelManager.class_trait_names() and zmq.has("curve"):
            config.KernelManager.transport_encryption = "auto"
    except Exception:  # pragma: no cover - very old jupyter_client / pyzmq: plain TCP, as before
        pass
    return config


def run_one(path: Path, out_dir: Path, timeout: int, inplace: bool, kernel: str,
            env: Optional[dict] = None) -> Tuple[bool, float, Optional[BaseException]]:
    """Execute one notebook; write the executed copy (widgets stripped) and its HTML.

    The kernel's own stderr goes to ``out_dir/logs/<name>.kernel.log``. Returns ``(ok, seconds, error)``.
    """
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
        store_widget_state=False,
        config=_client_config(),
    )
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    error = None
    with open(log_dir / f"{path.stem}.kernel.log", "wb") as kernel_log:
        try:
            kwargs = {"stderr": kernel_log}
            if env is not None:
                kwargs["env"] = env
            client.execute(**kwargs)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            error = exc
        except Exception as exc:  # kernel start-up problems and the like
            error = exc
    seconds = time.perf_counter() - t0
    strip_widgets(nb)
    nbformat.write(nb, out_dir / path.name)
    exporter = HTMLExporter()
    exporter.log.setLevel("ERROR")  # e.g. "Alternative text is missing on N image(s)"
    body, _ = exporter.from_notebook_node(nb)
    (out_dir / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
    if inplace and error is None:
        nbformat.write(nb, path)
    return error is None, seconds, error


def notebook_title(path: Path) -> str:
    """The first Markdown heading of a notebook (its title), without the leading ``#``."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def write_index(out_dir: Path, records: Sequence[dict], profile: str) -> Path:
    """Write ``index.html`` (and ``index.json``) next to the notebooks' HTML: one row per notebook with its
    title, status, run time, the parts it skipped and why, and a link to its HTML.

    Records of earlier runs into the same folder are kept (from ``index.json``) unless this run re-ran the
    notebook, so ``--only 10`` updates one row of the course's index.
    """
    import html
    import json

    store = out_dir / "index.json"
    known = {}
    if store.exists():
        try:
            known = {r["name"]: r for r in json.loads(store.read_text(encoding="utf-8"))}
        except (ValueError, KeyError, TypeError):
            known = {}  # a damaged index is rebuilt from this run
    for r in records:
        known[r["name"]] = dict(r, profile=profile)
    rows = [known[k] for k in sorted(known)]
    store.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    total = sum(r["seconds"] for r in rows)
    body = []
    for r in rows:
        notes = "<br>".join(html.escape(x) for x in ([r["reason"]] if r.get("reason") else []) + r.get("parts", []))
        link = f'<a href="{html.escape(Path(r["name"]).with_suffix(".html").name)}">{html.escape(r["name"])}</a>'
        body.append(f"<tr><td>{link}</td><td>{html.escape(r['title'])}</td><td class=s-{r['status']}>{r['status']}"
                    f"</td><td>{html.escape(r['profile'])}</td><td style='text-align:right'>{format_seconds(r['seconds'])}"
                    f"</td><td>{notes}</td></tr>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HNC-CAM course: executed notebooks</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}} .s-ok{{color:#176}} .s-skipped{{color:#a60}}
.s-FAILED{{color:#b00;font-weight:bold}}</style></head><body>
<h1>HNC-CAM course: executed notebooks</h1>
<p>{len(rows)} notebooks, {format_seconds(total)} of run time in total. Each link opens the executed notebook.</p>
<table><tr><th>notebook</th><th>title</th><th>status</th><th>profile</th><th>run time</th><th>skipped, and why</th></tr>
{chr(10).join(body)}
</table></body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def format_seconds(seconds: float) -> str:
    """``42.0 s`` below a minute, else ``7 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


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

    paths = find_notebooks(args.notebooks, args.only.split(",") if args.only else None)
    if not paths:
        print(f"no notebooks found in {args.notebooks}", file=sys.stderr)
        return 1
    out_dir = args.out if args.out.is_absolute() else Path.cwd() / args.out
    failed = []
    skipped = []  # (notebook, reason): stopped for want of data or weights
    parts = []  # (notebook, line): sections a notebook skipped for want of data
    total = 0.0
    records = []  # one per notebook, for the index page
    scratch = Path(tempfile.mkdtemp(prefix="hncam-course-"))
    try:
        env = kernel_environment(scratch / "ipython")
        os.environ["IPYTHONDIR"] = env["IPYTHONDIR"]  # this process renders HTML with IPython's help too
        for path in paths:
            print(f"{path.name:<40}", end="", flush=True)  # the line is finished when the notebook is
            ok, seconds, error = run_one(path, out_dir, args.timeout, args.inplace, args.kernel, env=env)
            total += seconds
            reason = None if ok else skip_reason(error)
            mine = [line[len(SKIP_MARKER):].strip() for line in skipped_parts(out_dir / path.name)]
            parts += [(path.name, line) for line in skipped_parts(out_dir / path.name)]
            records.append({"name": path.name, "title": notebook_title(path), "seconds": round(seconds, 1),
                            "status": "ok" if ok else "skipped" if reason else "FAILED",
                            "reason": reason.splitlines()[0] if reason else None, "parts": mine})
            print(f" {format_seconds(seconds):>12}  {'ok' if ok else 'skipped' if reason else 'FAILED'}", flush=True)
            if reason:
                skipped.append((path.name, reason))
                print(f"    {reason.splitlines()[0]}", flush=True)
            elif not ok:
                failed.append(path.name)
                message = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
                print(f"    {type(error).__name__}: {message.splitlines()[-1] if message else ''}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if records:
            write_index(out_dir, records, profile)
    print(summary_line([p.name for p in paths], failed + [n for n, _ in skipped], total, out_dir, profile))
    if failed or skipped or parts:  # what ran, what was skipped and why
        print(skip_summary([p.name for p in paths], failed, skipped, parts))
    if args.inplace:
        print(f"executed notebooks written back to {args.notebooks}" + (" (failed ones left unchanged)" if failed else ""))
    if failed:
        print(f"failed: {', '.join(failed)} (tracebacks in the executed copies in {out_dir}, kernel messages in "
              f"{out_dir / 'logs'})", file=sys.stderr)
        return 1
    return 0


def summary_line(names: Sequence[str], failed: Sequence[str], seconds: float, out_dir: Path, profile: str = "cpu") -> str:
    """The closing line of a course run: how many notebooks ran, the total time and where the HTML is."""
    n = len(names)
    status = f"{n - len(failed)} of {n} notebooks ran without error" if failed else f"{n} notebook{'s' * (n != 1)} ran without error"
    try:
        shown = out_dir.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = out_dir
    first = Path(names[0]).with_suffix(".html").name if names else ""
    return (f"{status} (profile {profile}) in {format_seconds(seconds)} in total; HTML in {shown}/"
            + (f" (start with {first})" if first else ""))


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
