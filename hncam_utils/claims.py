"""The paper's claims, re-measured: gather what notebooks 03-09 saved into one table (notebook 10).

Each experiment notebook saves its paired comparisons as *claim rows* (:mod:`hncam_utils.results`). This module
knows which of the paper's claims each row tests and where each claim should have been measured, so that
notebook 10 can show, without retraining anything:

* one table row per claim x setting x HNC loss (the rows a notebook marked ``headline``), with where it was
  measured (notebook, data, model, budget, profile), the metric, the two means, the paired difference with its
  95% Student-t interval, the wins out of n and the package's verdict (:func:`hncam_utils.experiments.paired_verdict`,
  computed by the notebook that ran the experiment and stored with the row);
* what is *missing*: a setting whose results file does not exist yet, with the notebook and profile that writes it;
* what is *not tested here* (ImageNet), with the command that would test it.

The paper's claims, in the order of its abstract (our wording):

1. negative CAMs lose their peaks, and localization improves;
2. classification improves, on small and large data and on fine-grained recognition;
3. HNC does better than other loss functions;
4. it works for multi-label classification;
5. it makes a network more robust to adversarial attacks;
6. and to noisy labels.

Standard library only (reads JSON), so anything may import it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .results import load_results, results_path

__all__ = ["Claim", "Setting", "CLAIMS", "NOT_TESTED", "ClaimReport", "collect_claims", "claims_markdown",
           "missing_markdown", "loss_label", "metric_words", "is_hnc_row", "improvement", "interval_text", "verdict_counts", "NOTEBOOKS"]

PathLike = Union[str, os.PathLike]

#: The experiment notebooks whose results notebook 10 reads, in course order.
NOTEBOOKS = ("03_hnc_loss", "04_real_images", "05_cub200", "07_adversarial", "08_noisy_labels",
             "09_multilabel_and_other_losses")

PROFILES = ("smoke", "cpu", "gpu")


@dataclass(frozen=True)
class Setting:
    """Where a claim should be measured: a notebook, a data set and the profiles that run it.

    Attributes:
        notebook: the notebook's file stem, e.g. ``"04_real_images"``.
        data: a word that the saved rows' ``data`` field contains for this setting (case-insensitive), e.g.
            ``"Fashion"``; it is also what the table shows when the setting is missing.
        profiles: the profiles in which the notebook runs this setting (CIFAR and CUB: the ``gpu`` profile with
            their data, or the ``smoke`` pipeline check on generated fixtures; everything else runs in every
            profile).
        needs: what the setting needs beyond the course (said when it is missing).
    """

    notebook: str
    data: str
    profiles: Tuple[str, ...] = PROFILES
    needs: str = ""

    def matches(self, row: Mapping[str, Any]) -> bool:
        return row.get("notebook") == self.notebook and self.data.lower() in str(row.get("data", "")).lower()


@dataclass(frozen=True)
class Claim:
    """One claim of the paper's abstract.

    Attributes:
        key: short name, e.g. ``"adversarial"``.
        statement: the claim in plain words.
        row_claims: the ``claim`` values of saved rows that test it (a claim may be tested through several
            metrics, e.g. ``negative_cams`` and ``localization``).
        settings: where the course measures it.
    """

    key: str
    statement: str
    row_claims: Tuple[str, ...]
    settings: Tuple[Setting, ...] = field(default_factory=tuple)


_DIGITS = "Cluttered Digits"
_GPU = ("smoke", "gpu")  # CIFAR and CUB: the gpu recipe, or the smoke pipeline check on fixtures
_CIFAR_NEEDS = "CIFAR-10/100 and a GPU; get the data with python data_scripts/get_cifar.py"
_CUB_NEEDS = "CUB-200-2011, ImageNet-pretrained weights and a GPU; get the data with python data_scripts/get_cub200.py"

CLAIMS: Tuple[Claim, ...] = (
    Claim("negative_cams", "Negative CAMs lose their peaks, and localization improves",
          ("negative_cams", "localization"),
          (Setting("03_hnc_loss", _DIGITS), Setting("04_real_images", "Fashion"),
           Setting("04_real_images", "CIFAR", _GPU, _CIFAR_NEEDS), Setting("05_cub200", "CUB", _GPU, _CUB_NEEDS))),
    Claim("classification", "Classification improves (similar classes are told apart better)",
          ("classification", "similar_classes"),
          (Setting("03_hnc_loss", _DIGITS), Setting("04_real_images", "Fashion"),
           Setting("04_real_images", "CIFAR", _GPU, _CIFAR_NEEDS), Setting("05_cub200", "CUB", _GPU, _CUB_NEEDS))),
    Claim("other_losses", "HNC does better than other loss functions", ("other_losses",),
          (Setting("09_multilabel_and_other_losses", _DIGITS),)),
    Claim("multilabel", "HNC works for multi-label classification", ("multilabel",),
          (Setting("09_multilabel_and_other_losses", _DIGITS),)),
    Claim("adversarial", "HNC makes a network more robust to adversarial attacks", ("adversarial",),
          (Setting("07_adversarial", _DIGITS), Setting("07_adversarial", "Fashion"),
           Setting("07_adversarial", "CIFAR", _GPU, _CIFAR_NEEDS))),
    Claim("noisy_labels", "HNC makes a network more robust to noisy labels", ("noisy_labels",),
          (Setting("08_noisy_labels", _DIGITS),)),
)

#: Claims the course does not test, with the command that would.
NOT_TESTED: Tuple[Dict[str, str], ...] = (
    {"claim": "classification",
     "setting": "ImageNet (large-scale classification): not tested here (about 120 epochs on 8 GPUs)",
     "command": "torchrun --standalone --nproc-per-node=8 -m hncam_utils train --data imagefolder "
                "--data-root /data/imagenet --model resnet101 --loss hnc_kd --k 100 --hnc-lambda 0.0065 "
                "--epochs 120 --batch-size 256 --lr 0.1 --out runs/in1k-r101-kd --checkpoint-every 1000"},
)


#: Short metric keys that some notebooks save (the package's metric names), shown in words.
METRIC_WORDS: Dict[str, str] = {
    "top1": "test accuracy %", "map": "mAP %", "macro_f1": "macro F1 %",
    "neg_peak": "top-1 negative CAM peak (lower is better)",
    "neg_ratio": "top-1 negative / ground-truth CAM peak (lower is better)",
}


def metric_words(metric: str) -> str:
    """A saved metric name as the table prints it (``"top1"`` -> ``"test accuracy %"``; others unchanged)."""
    return METRIC_WORDS.get(str(metric), str(metric))


def is_hnc_row(row: Mapping[str, Any]) -> bool:
    """Whether a saved row compares an HNC loss with its base loss (its ``loss`` label mentions HNC)."""
    return "hnc" in str(row.get("loss", "")).lower()


def improvement(row: Mapping[str, Any]) -> Tuple[float, float, float]:
    """The row's paired difference and interval turned so that positive means "HNC did better".

    Returns ``(mean, low, high)``; for metrics where lower is better (a negative-CAM peak) the signs flip.
    ``low``/``high`` are NaN when the row has no interval (n = 1).
    """
    v = row.get("verdict") or {}
    sign = 1.0 if v.get("higher_is_better", True) else -1.0

    def num(x: Any) -> float:
        return float(x) if isinstance(x, (int, float)) else math.nan

    mean, low, high = num(v.get("mean")), num(v.get("ci_low")), num(v.get("ci_high"))
    if sign < 0:
        low, high = -high, -low
    return sign * mean, low, high


def interval_text(verdict: Mapping[str, Any]) -> str:
    """A saved verdict's 95% interval as ``"[-1.23, +4.56]"``, or ``""`` when it has none (n = 1)."""
    low, high = verdict.get("ci_low"), verdict.get("ci_high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return f"[{float(low):+.2f}, {float(high):+.2f}]"
    return ""


def verdict_counts(rows: Iterable[Mapping[str, Any]]) -> Dict[str, int]:
    """How many rows read "better", "worse", "no clear difference" and "too few seeds to tell"."""
    out: Dict[str, int] = {}
    for r in rows:
        key = str((r.get("verdict") or {}).get("verdict", "no verdict"))
        out[key] = out.get(key, 0) + 1
    return out


@dataclass
class ClaimReport:
    """What :func:`collect_claims` found.

    Attributes:
        profile: the profile whose results were read first (``gpu`` rows are added when they exist).
        rows: ``{claim key: [saved rows]}`` in claim order; every row read, HNC or not, headline or not.
        missing: one dict per setting with no saved rows: ``claim``, ``notebook``, ``data``, ``profile``,
            ``reason`` (what to run, or what the setting needs).
        sources: the result files that were read.
    """

    profile: str
    rows: Dict[str, List[Dict[str, Any]]]
    missing: List[Dict[str, str]]
    sources: List[Path]

    def table_rows(self, claim: Optional[str] = None) -> List[Dict[str, Any]]:
        """The rows of the claim table: headline rows that compare an HNC loss with its base loss."""
        keys = [claim] if claim else list(self.rows)
        return [r for k in keys for r in self.rows.get(k, []) if is_hnc_row(r) and r.get("headline", True)]

    def figure_rows(self) -> List[Dict[str, Any]]:
        """The rows of the figure: every row that compares an HNC loss with its base loss."""
        return [r for rows in self.rows.values() for r in rows if is_hnc_row(r)]

    def summary(self) -> Dict[str, Dict[str, int]]:
        """``{claim key: verdict counts over its table rows}``."""
        return {c.key: verdict_counts(self.table_rows(c.key)) for c in CLAIMS}


def _profiles_to_read(profile: str) -> Tuple[str, ...]:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return (profile, "gpu") if profile == "cpu" else (profile,)


def collect_claims(profile: str = "cpu", root: Optional[PathLike] = None) -> ClaimReport:
    """Read every saved result of ``profile`` (and of ``gpu`` when ``profile`` is ``cpu``) and sort its rows by
    claim.

    Args:
        profile: ``"smoke"``, ``"cpu"`` or ``"gpu"``. Smoke results come from tiny fixtures: they check the
            pipeline and are not results.
        root: the data folder (default :func:`hncam_utils.paths.data_home`).

    Raises:
        ValueError: an unknown profile, or a results file that is not valid JSON (the message names the
            notebook to rerun).
    """
    profiles = _profiles_to_read(profile)
    by_claim: Dict[str, List[Dict[str, Any]]] = {c.key: [] for c in CLAIMS}
    owner = {rc: c.key for c in CLAIMS for rc in c.row_claims}
    sources: List[Path] = []
    for name in NOTEBOOKS:
        for prof in profiles:
            data = load_results(name, prof, root)
            if data is None:
                continue
            sources.append(results_path(name, prof, root))
            for row in data.get("rows", []):
                key = owner.get(str(row.get("claim")))
                if key is not None:
                    by_claim[key].append(dict(row))
    missing: List[Dict[str, str]] = []
    for claim in CLAIMS:
        for s in claim.settings:
            if any(s.matches(r) for r in by_claim[claim.key]):
                continue
            runnable = [p for p in profiles if p in s.profiles]
            if runnable:
                reason = f"run notebooks/{s.notebook}.ipynb with HNCAM_PROFILE={runnable[0]}"
                if s.needs:
                    reason += f" (needs {s.needs})"
            else:
                reason = f"runs in the {'/'.join(s.profiles)} profile only; needs {s.needs or 'its data'}"
            missing.append({"claim": claim.key, "notebook": s.notebook, "data": s.data,
                            "profile": runnable[0] if runnable else s.profiles[0], "reason": reason})
    return ClaimReport(profile=profile, rows=by_claim, missing=missing, sources=sources)


def _fmt(x: Any, digits: int = 2) -> str:
    if isinstance(x, (int, float)) and math.isfinite(float(x)):
        return f"{float(x):.{digits}f}"
    return "–"


_NAMES = {"ce": "CE", "bce": "BCE", "gce": "GCE", "ls": "LS", "focal": "focal", "cosface": "CosFace",
          "arcface": "ArcFace", "hnc": "HNC", "hnc_mse": "HNC_mse", "hnc_kd": "HNC_kd"}


def loss_label(name: str) -> str:
    """A loss label as the tables print it: ``"hnc_kd"`` -> ``"CE + HNC_kd"``, ``"gce+hnc"`` -> ``"GCE + HNC"``."""
    parts = [p.strip() for p in str(name).split("+") if p.strip()]
    if len(parts) == 1 and parts[0].lower().startswith("hnc"):
        parts = ["ce"] + parts  # the course's runs label CE + HNC by the HNC variant alone
    return " + ".join(_NAMES.get(p.lower(), p) for p in parts)


def claims_markdown(report: ClaimReport) -> str:
    """The claim table as Markdown: one line per claim x setting x HNC loss (headline rows), then the claims the
    course does not test; the rows' notes follow the table as numbered footnotes. Every number comes from the
    saved rows; nothing is recomputed."""
    head = ("| claim | tested on (notebook · data · model · budget · profile) | metric | base → HNC (means) | "
            "paired difference [95% CI] | wins | verdict |")
    lines = [head, "|" + "---|" * 7]
    notes: List[str] = []
    statements = {c.key: c.statement for c in CLAIMS}
    for claim in CLAIMS:
        rows = report.table_rows(claim.key)
        if not rows:
            lines.append(f"| {statements[claim.key]} | not measured yet (see the missing results) | | | | | |")
        for i, r in enumerate(rows):
            v = r.get("verdict") or {}
            n = v.get("n", "?")
            ci = interval_text(v) or "n/a"
            mean = f"{float(v['mean']):+.2f}" if isinstance(v.get("mean"), (int, float)) else "–"
            where = " · ".join(str(r.get(k, "")) for k in ("notebook", "data", "model", "budget", "profile"))
            if r.get("note"):
                if r["note"] not in notes:
                    notes.append(r["note"])
                where += f" [{notes.index(r['note']) + 1}]"
            means = (f"{loss_label(str(r.get('baseline', 'ce')))} {_fmt(r.get('baseline_mean'))} → "
                     f"{loss_label(str(r.get('loss', '')))} {_fmt(r.get('loss_mean'))}")
            lines.append(f"| {statements[claim.key] if i == 0 else ''} | {where} | {metric_words(r.get('metric', ''))} | {means} | "
                         f"{mean} {ci} | {v.get('wins', '?')}/{n} | {v.get('verdict', '')} |")
        for nt in NOT_TESTED:
            if nt["claim"] == claim.key:
                lines.append(f"| | {nt['setting']} | | | | | not tested; the command: `{nt['command']}` |")
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {note}  " for i, note in enumerate(notes, 1))
    return "\n".join(lines)


def missing_markdown(report: ClaimReport) -> str:
    """The settings with no saved results, and what produces them (empty string when nothing is missing)."""
    if not report.missing:
        return ""
    lines = ["| claim | notebook | data | what to do |", "|---|---|---|---|"]
    for m in report.missing:
        lines.append(f"| {m['claim']} | `{m['notebook']}.ipynb` | {m['data']} | {m['reason']} |")
    return "\n".join(lines)
