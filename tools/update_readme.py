"""Copy notebook 10's claim table (its committed output) into the README, or check that they agree.

    python tools/update_readme.py           # rewrite the README's table from notebooks/10_claims.ipynb
    python tools/update_readme.py --check   # exit 1 when the README's table differs from the notebook's

The table sits in README.md between the lines ``<!-- claims-table:start -->`` and ``<!-- claims-table:end -->``;
the notebook cell that displays it starts with ``# claims table``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import nbformat

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- claims-table:start -->", "<!-- claims-table:end -->"
CELL_MARK = "# claims table"


def notebook_table(path: Path) -> str:
    """The Markdown the notebook's claims-table cell displayed.

    Raises:
        ValueError: no such cell, or it has no Markdown output (the notebook was committed without outputs).
    """
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(CELL_MARK):
            for out in cell.get("outputs", []):
                text = out.get("data", {}).get("text/markdown")
                if text:
                    return text if isinstance(text, str) else "".join(text)
            raise ValueError(f"{path.name}: the '{CELL_MARK}' cell has no Markdown output; run the notebook with "
                             "the cpu profile first (tools/run_notebooks.py --profile cpu --only 10 --inplace)")
    raise ValueError(f"{path.name} has no cell starting with '{CELL_MARK}'")


def readme_table(text: str) -> str:
    """The part of the README between the two markers (without them).

    Raises:
        ValueError: a marker is missing.
    """
    if START not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {START} / {END} around the claims table")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when they differ")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    table = notebook_table(ROOT / "notebooks" / "10_claims.ipynb").strip("\n")
    text = readme.read_text(encoding="utf-8")
    if readme_table(text) == table:
        return 0
    if args.check:
        print("README.md's claims table differs from notebook 10's output: run python tools/update_readme.py")
        return 1
    before, rest = text.split(START, 1)
    readme.write_text(before + START + "\n" + table + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
    print("README.md: claims table updated from notebooks/10_claims.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
