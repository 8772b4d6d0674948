"""Write (or check) the cells every notebook opens with, from ``hncam_utils.course``.

    python tools/notebook_template.py --write    # bring every notebook's first cells up to date
    python tools/notebook_template.py --check    # exit 1 and name the notebooks whose first cells differ

The first Markdown cell must start with the notebook's "Open in Colab" badge; the first two code cells must be the
install cell and the opt-in Drive cell, exactly (see ``hncam_utils/course.py``). Outputs of other cells are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hncam_utils.course import template_cells  # noqa: E402

BADGE_PREFIX = "[![Open In Colab]"


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def problems(nb, name: str) -> List[str]:
    """What differs from the template in notebook ``nb`` (file name ``name``); empty when it conforms."""
    badge, cells = template_cells(name)
    out = []
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        return ["the first cell is not a Markdown cell (title + badge)"]
    if _source(nb.cells[0]).split("\n", 1)[0] != badge:
        out.append("the first Markdown cell does not start with this notebook's Colab badge")
    for i, (kind, src) in enumerate(cells, start=1):
        if len(nb.cells) <= i or nb.cells[i].cell_type != kind or _source(nb.cells[i]) != src:
            out.append(f"cell {i} is not the template's {'install' if i == 1 else 'Drive'} cell")
    return out


def apply(nb, name: str) -> bool:
    """Bring ``nb``'s first cells up to the template; return whether anything changed."""
    badge, cells = template_cells(name)
    before = nbformat.writes(nb)
    first = _source(nb.cells[0])
    lines = first.split("\n")
    while lines and lines[0].startswith(BADGE_PREFIX):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    nb.cells[0].source = badge + "\n\n" + "\n".join(lines)
    # update the template cells in place (keeping their ids and run counts), inserting those that are missing
    for j, (kind, src) in enumerate(cells, start=1):
        role = "pip" if j == 1 else "drive"
        if j < len(nb.cells) and nb.cells[j].cell_type == kind and "google.colab" in _source(nb.cells[j]) \
                and role in _source(nb.cells[j]):
            nb.cells[j].source = src
            continue
        cell = nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
        if "id" in cell:
            cell.id = f"colab-{'install' if j == 1 else 'drive'}"  # stable ids: rewriting changes nothing
        nb.cells.insert(j, cell)
    nbformat.validator.normalize(nb)
    return nbformat.writes(nb) != before


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the notebooks' first cells")
    mode.add_argument("--check", action="store_true", help="report notebooks whose first cells differ")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    bad = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            for p in problems(nb, path.name):
                print(f"{path.name}: {p} (run: python tools/notebook_template.py --write)")
                bad += 1
        elif apply(nb, path.name):
            nbformat.write(nb, path)
            print(f"updated {path.name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
