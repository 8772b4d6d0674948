"""The figure of notebook 10: every paired difference CE vs HNC, with its 95% interval, one line per claim,
setting, metric and loss. Sits on top of :mod:`hncam_utils.claims`; nothing below imports it.

The metrics have different units (accuracy points, CAM peaks, shares of energy), so every line gets its own
horizontal scale, symmetric about 0: a line shows the *direction* of the difference and whether its interval
crosses 0, and the printed numbers give its size. Differences are turned so that right means "HNC did better"
(for a metric where lower is better the sign flips; see :func:`hncam_utils.claims.improvement`).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .claims import CLAIMS, ClaimReport, improvement, interval_text, loss_label, metric_words

__all__ = ["plot_claim_differences", "VERDICT_COLORS"]

#: One colour per verdict (colour-blind-safe pairs: blue/orange).
VERDICT_COLORS: Dict[str, str] = {"better": "tab:blue", "worse": "tab:orange", "no clear difference": "0.45",
                                  "too few seeds to tell": "0.7"}


def _line_label(row: Mapping[str, Any]) -> str:
    data = str(row.get("data", ""))
    if len(data) > 44:
        data = data[:43] + "…"
    return f"{data} · {metric_words(row.get('metric', ''))} · {loss_label(str(row.get('loss', '')))} vs {loss_label(str(row.get('baseline', 'ce')))}"


def plot_claim_differences(report: ClaimReport, rows: Optional[Sequence[Mapping[str, Any]]] = None,
                           width: float = 11.0) -> Figure:
    """One line per paired comparison: the mean difference (dot) and its 95% interval (bar), on a scale of its
    own, symmetric about 0, turned so that right = HNC better; grouped by claim, coloured by verdict.

    Args:
        report: from :func:`hncam_utils.claims.collect_claims`.
        rows: the rows to draw (default: ``report.figure_rows()``, every HNC comparison).
        width: figure width in inches.

    Raises:
        ValueError: there is nothing to draw (no saved HNC comparison).
    """
    rows = list(report.figure_rows() if rows is None else rows)
    if not rows:
        raise ValueError("no saved HNC comparison to draw: run notebooks 03-09 first (see the missing results)")
    order = {c.key: i for i, c in enumerate(CLAIMS)}
    owner = {rc: c.key for c in CLAIMS for rc in c.row_claims}
    groups: Dict[str, List[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(owner.get(str(r.get("claim")), str(r.get("claim"))), []).append(r)
    keys = sorted(groups, key=lambda k: order.get(k, len(order)))
    statements = {c.key: c.statement for c in CLAIMS}
    n_lines = sum(len(groups[k]) for k in keys)
    fig = plt.figure(figsize=(width, 0.6 + 0.24 * n_lines + 0.45 * len(keys)), dpi=100)
    height = n_lines + 1.6 * len(keys)
    y = 0.0
    for key in keys:
        y += 1.6
        fig.text(0.01, 1 - (y - 0.7) / height, statements.get(key, key), fontsize=10, fontweight="bold", va="center")
        for r in groups[key]:
            y += 1
            mean, low, high = improvement(r)
            verdict = str((r.get("verdict") or {}).get("verdict", ""))
            ax = fig.add_axes((0.55, 1 - y / height, 0.22, 0.8 / height))
            span = max(abs(v) for v in (mean, low, high) if math.isfinite(v)) if math.isfinite(mean) else 1.0
            span = 1.15 * span if span > 0 else 1.0
            color = VERDICT_COLORS.get(verdict, "k")
            if math.isfinite(low) and math.isfinite(high):
                ax.plot([low, high], [0, 0], color=color, lw=2.2, solid_capstyle="butt")
            if math.isfinite(mean):
                ax.plot([mean], [0], "o", color=color, ms=5)
            ax.axvline(0, color="k", lw=0.8)
            ax.set_xlim(-span, span)
            ax.set_ylim(-1, 1)
            ax.axis("off")
            fig.text(0.545, 1 - (y - 0.4) / height, _line_label(r), fontsize=7.5, ha="right", va="center")
            v = r.get("verdict") or {}
            ci = interval_text(v)
            raw = f"{float(v['mean']):+.2f} {ci}" if isinstance(v.get("mean"), (int, float)) else ""
            fig.text(0.78, 1 - (y - 0.4) / height, f"{raw}  {v.get('wins', '?')}/{v.get('n', '?')}  {verdict}",
                     fontsize=7.5, va="center", color=color)
    fig.text(0.66, 1 - 0.5 / height, "← HNC worse   |   HNC better →", ha="center", fontsize=8.5)
    return fig
