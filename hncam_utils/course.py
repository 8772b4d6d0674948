"""Where the course lives and which release the notebooks install: the one place for both.

Every notebook opens with the same cells, built here (``tools/notebook_template.py`` writes them, a test checks
them):

1. its first Markdown cell starts with an "Open in Colab" badge pointing at this notebook in the pinned release;
2. an install cell that, on Colab only, installs the pinned release of the course with pip (``pip`` installs
   only the requirements Colab lacks: its own torch, torchvision, numpy and matplotlib satisfy our floors and are
   kept, so no runtime restart is needed) and turns on Colab's widget manager (ipywidgets 8);
3. an opt-in cell that mounts Google Drive and points ``HNCAM_HOME`` (data, trained models, saved results) at it,
   so a new runtime reuses what an earlier one trained.

To release: change ``__version__`` in ``hncam_utils/__init__.py`` (the only place the version is written;
``pyproject.toml`` reads it), run ``python tools/notebook_template.py --write``, commit, and push the tag
``v<version>`` (:func:`release_tag`). The repository address is :data:`REPOSITORY`, written only here.

Standard library only.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Tuple

__all__ = ["REPOSITORY", "release_tag", "repository_url", "install_requirement", "colab_url", "colab_badge",
           "template_cells", "BADGE_IMAGE", "DRIVE_FOLDER"]

#: The course's GitHub repository, ``owner/name``.
REPOSITORY = "hnc-cam-course/hnc-cam-course"

#: Colab's badge image.
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

#: Where the opt-in Drive cell keeps the course's data folder.
DRIVE_FOLDER = "/content/drive/MyDrive/hncam"


def _version(version: Optional[str]) -> str:
    if version is None:
        version = sys.modules[__package__].__version__  # the package's single version string
    if not isinstance(version, str) or not version or any(c.isspace() or c in "/@#" for c in version):
        raise ValueError(f"version must be a release string such as '0.1.0', got {version!r}")
    return version


def release_tag(version: Optional[str] = None) -> str:
    """The git tag of a release: ``"v" + version`` (default: this package's version)."""
    return f"v{_version(version)}"


def repository_url() -> str:
    """``https://github.com/<REPOSITORY>``."""
    return f"https://github.com/{REPOSITORY}"


def install_requirement(version: Optional[str] = None) -> str:
    """The pip requirement that installs the pinned release, e.g.
    ``hncam-utils @ git+https://github.com/hnc-cam-course/hnc-cam-course@v0.1.0``."""
    return f"hncam-utils @ git+{repository_url()}@{release_tag(version)}"


def _check_notebook(notebook: str) -> str:
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb") or "/" in notebook or "\\" in notebook:
        raise ValueError(f"notebook must be a file name such as '03_hnc_loss.ipynb', got {notebook!r}")
    return notebook


def colab_url(notebook: str, version: Optional[str] = None) -> str:
    """The Colab address that opens ``notebooks/<notebook>`` of the pinned release."""
    return (f"https://colab.research.google.com/github/{REPOSITORY}/blob/{release_tag(version)}/notebooks/"
            f"{_check_notebook(notebook)}")


def colab_badge(notebook: str, version: Optional[str] = None) -> str:
    """The Markdown "Open in Colab" badge of ``notebooks/<notebook>``."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook, version)})"


def template_cells(notebook: str, version: Optional[str] = None) -> Tuple[str, List[Tuple[str, str]]]:
    """What every notebook opens with.

    Returns:
        ``(badge_line, cells)``: the line the first Markdown cell starts with, and the ``(cell_type, source)``
        pairs of the code cells that follow it (install, then the opt-in Drive cell).
    """
    install = f'''# Colab only: install the pinned course release and what Colab lacks (does nothing elsewhere)
import sys

if "google.colab" in sys.modules:
    import subprocess

    COURSE = "{install_requirement(version)}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", COURSE], check=True)
    from google.colab import output

    output.enable_custom_widget_manager()  # ipywidgets 8 (progress bars, sliders) on Colab'''
    drive = f'''# Optional, Colab: keep data, trained models and results on Google Drive, so a new runtime reuses them.
# Set USE_DRIVE = True and run this cell (before any other) in every notebook you open.
USE_DRIVE = False

if USE_DRIVE and "google.colab" in sys.modules:
    import os

    from google.colab import drive

    drive.mount("/content/drive")
    os.environ["HNCAM_HOME"] = "{DRIVE_FOLDER}"
    print("data folder:", os.environ["HNCAM_HOME"])'''
    return colab_badge(notebook, version), [("code", install), ("code", drive)]
