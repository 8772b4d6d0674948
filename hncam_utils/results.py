"""Saved results: each experiment notebook writes a small JSON that later notebooks (the capstone, notebook 10)
read without retraining.

A result file lives at ``data_home() / "results" / f"{name}-{profile}.json"`` (``name`` is the notebook's stem,
e.g. ``"03_hnc_loss"``) and holds plain data::

    {"name": ..., "profile": ..., "written": ISO time, "environment": {...},
     "rows": [ {claim row}, ... ], "extra": {...anything else the notebook wants to keep...}}

A *claim row* (:func:`claim_row`) records one paired comparison: which claim it tests, where (notebook, data,
model, budget, profile), the metric, baseline and loss, and the package's verdict
(:func:`hncam_utils.experiments.paired_verdict`) as plain data.

Standard library only (plus the verdict object's ``as_dict``), so anything may import it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._checks import check_file_stem
from .paths import atomic_write_text

__all__ = ["results_path", "save_results", "load_results", "claim_row", "list_results"]

PathLike = Union[str, os.PathLike]


def results_path(name: str, profile: str, root: Optional[PathLike] = None) -> Path:
    """Where the results of notebook ``name`` under ``profile`` are kept (see the module docstring)."""
    from .paths import data_home

    base = Path(root) if root is not None else data_home()
    name = check_file_stem("name", name, fix="a notebook's file stem, e.g. '03_hnc_loss'")
    profile = check_file_stem("profile", profile, fix="e.g. 'smoke', 'cpu' or 'gpu'")
    return base / "results" / f"{name}-{profile}.json"


def _plain(value: Any) -> Any:
    """JSON-safe copy: objects with ``as_dict`` are converted, NaN/inf become ``None``."""
    if hasattr(value, "as_dict"):
        return _plain(value.as_dict())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return value


def claim_row(
    claim: str,
    verdict: Any,
    *,
    notebook: str,
    data: str,
    model: str,
    budget: str,
    profile: str,
    metric: str,
    loss: str,
    baseline: str = "ce",
    unit: str = "points",
    baseline_mean: Optional[float] = None,
    loss_mean: Optional[float] = None,
    note: str = "",
    headline: bool = True,
) -> Dict[str, Any]:
    """One paired comparison as plain data, for :func:`save_results`.

    Args:
        claim: which of the paper's claims this tests, e.g. ``"classification"``, ``"negative_cams"``,
            ``"localization"``, ``"other_losses"``, ``"multilabel"``, ``"adversarial"``, ``"noisy_labels"``.
        verdict: a :class:`hncam_utils.experiments.PairedVerdict` (or its ``as_dict()``).
        notebook, data, model, budget, profile: where and how it was measured (``budget`` in words, e.g.
            ``"15 epochs, 2,000 canvases"``).
        metric: what was compared (e.g. ``"test accuracy %"``); ``unit`` of the differences.
        loss, baseline: the two labels compared (``loss - baseline``).
        baseline_mean, loss_mean: the two means over seeds, when known.
        note: anything a reader must know (e.g. "fixture data: pipeline check only").
        headline: whether the row is one of the notebook's main results. Notebook 10's claim table shows the
            headline rows (those comparing an HNC loss with its base loss); its figure shows every row.
            Mark secondary metrics (e.g. clean accuracy in an attack notebook) ``headline=False``.
    """
    return _plain({
        "claim": claim, "notebook": notebook, "data": data, "model": model, "budget": budget,
        "profile": profile, "metric": metric, "unit": unit, "loss": loss, "baseline": baseline,
        "baseline_mean": baseline_mean, "loss_mean": loss_mean, "verdict": verdict, "note": note,
        "headline": bool(headline),
    })


def save_results(
    name: str,
    profile: str,
    rows: Sequence[Mapping[str, Any]] = (),
    extra: Optional[Mapping[str, Any]] = None,
    root: Optional[PathLike] = None,
) -> Path:
    """Write the results of notebook ``name`` atomically (temporary file, then rename) and return the path."""
    path = results_path(name, profile, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "profile": profile,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": _plain(list(rows)),
        "extra": _plain(dict(extra or {})),
    }
    return atomic_write_text(path, json.dumps(payload, indent=1, allow_nan=False))


def load_results(name: str, profile: str, root: Optional[PathLike] = None) -> Optional[Dict[str, Any]]:
    """The saved results of notebook ``name`` under ``profile``, or ``None`` when that notebook has not been
    run with that profile yet.

    Raises:
        ValueError: the file exists but is not valid JSON (the message says to rerun the notebook).
    """
    path = results_path(name, profile, root)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"results file {path} is not valid JSON ({exc}); delete it and rerun notebook {name}") from exc


def list_results(root: Optional[PathLike] = None) -> List[Path]:
    """Every saved result file, sorted by name."""
    from .paths import data_home

    base = Path(root) if root is not None else data_home(create=False)
    folder = base / "results"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []
