"""Every notebook opens with the same cells (Colab badge, pinned install, opt-in Drive), built from one
repository address and one version (hncam_utils.course)."""

import re
import sys
from pathlib import Path

import nbformat
import pytest

import hncam_utils
from hncam_utils import course

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebook_template  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_opens_with_the_template(path):
    nb = nbformat.read(path, as_version=4)
    assert notebook_template.problems(nb, path.name) == [], "run: python tools/notebook_template.py --write"


def test_the_install_cell_pins_this_release():
    badge, cells = course.template_cells("03_hnc_loss.ipynb")
    install = cells[0][1]
    assert f"@v{hncam_utils.__version__}" in install and course.REPOSITORY in install
    assert "enable_custom_widget_manager" in install and "torch" not in install  # Colab keeps its torch
    assert f"/blob/v{hncam_utils.__version__}/notebooks/03_hnc_loss.ipynb" in badge
    drive = cells[1][1]
    assert "USE_DRIVE = False" in drive and "HNCAM_HOME" in drive  # opt-in, and it moves the data folder


def test_the_version_is_written_once():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version\s*=\s*"', text, re.M) is None, "pyproject.toml must read the version, not repeat it"
    assert 'attr = "hncam_utils.__version__"' in text


def test_the_repository_address_is_written_once():
    # outside hncam_utils/course.py, the address appears only in text generated from it (notebooks, README)
    for path in list((ROOT / "hncam_utils").rglob("*.py")) + list((ROOT / "tools").glob("*.py")):
        if path.name != "course.py":
            assert course.REPOSITORY not in path.read_text(), path


def test_readme_carries_the_badge():
    assert course.colab_badge("00_setup.ipynb") in (ROOT / "README.md").read_text()


def test_check_finds_a_drifted_cell_and_write_mends_it(tmp_path):
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("@v", "@")  # an unpinned install
    del nb.cells[2]  # the Drive cell lost
    name = NOTEBOOKS[0].name
    assert len(notebook_template.problems(nb, name)) == 2
    assert notebook_template.apply(nb, name) is True
    assert notebook_template.problems(nb, name) == []
    assert notebook_template.apply(nb, name) is False  # idempotent


def test_a_notebook_without_template_cells_gets_them():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 · Title"),
                                         nbformat.v4.new_code_cell("print(1)")])
    notebook_template.apply(nb, "99_new.ipynb")
    assert notebook_template.problems(nb, "99_new.ipynb") == []
    assert nb.cells[0].source.endswith("# 99 · Title") and nb.cells[3].source == "print(1)"


@pytest.mark.parametrize("bad", ["", "a b", "1.0/x", None])
def test_bad_versions_and_names_raise(bad):
    with pytest.raises(ValueError, match="version"):
        course.release_tag(bad if bad is not None else 3)
    with pytest.raises(ValueError, match="notebook"):
        course.colab_url("notebooks/03_hnc_loss.ipynb")


def test_readme_leads_with_notebook_10s_claims_table():
    import update_readme

    table = update_readme.notebook_table(ROOT / "notebooks" / "10_claims.ipynb")
    text = (ROOT / "README.md").read_text()
    assert update_readme.readme_table(text) == table.strip("\n"), "run: python tools/update_readme.py"
    headings = [m.start() for m in re.finditer(r"^## ", text, re.M)]
    first = text[headings[0]:text.index("\n", headings[0])]
    assert "claims" in first.lower(), f"the README's first section must be the claims table, not {first!r}"
    assert headings[0] < text.index(update_readme.START) < headings[1], "the table sits in the first section"
