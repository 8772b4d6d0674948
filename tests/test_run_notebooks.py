"""tools/run_notebooks.py: what it writes can be committed (no widget state, no progress-bar widgets), and what
`make course` prints is one line per notebook plus a summary, without kernel start-up warnings."""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"


def _load_tool():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rn = _load_tool()


def _executed_notebook_with_widgets():
    bar = new_output("display_data", data={
        WIDGET: {"version_major": 2, "version_minor": 0, "model_id": "abc"},
        "text/plain": "HBox(children=(HTML(value=''), FloatProgress(value=0.0, max=10.0), HTML(value='')))",
    })
    text = new_output("stream", name="stdout", text="test accuracy 81.0 %\n")
    figure = new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480 with 1 Axes>"})
    nb = new_notebook(cells=[new_markdown_cell("# title"), new_code_cell("train()", outputs=[text, bar, bar, figure])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    return nb


def test_strip_widgets_removes_widget_state_and_views_and_keeps_the_rest():
    nb = _executed_notebook_with_widgets()
    assert rn.strip_widgets(nb) == 2
    assert "widgets" not in nb.metadata
    outputs = nb.cells[1].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data"]
    assert "image/png" in outputs[1].data
    assert rn.strip_widgets(nb) == 0  # idempotent
    nbformat.validate(nb)


def test_summary_line_says_how_many_ran_the_total_time_and_where_the_html_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["00_setup.ipynb", "01_cam_theory.ipynb"]
    line = rn.summary_line(names, [], 425.0, tmp_path / "build" / "course", "cpu")
    assert line == ("2 notebooks ran without error (profile cpu) in 7 min 05 s in total; "
                    "HTML in build/course/ (start with 00_setup.html)")
    assert rn.summary_line(names, ["01_cam_theory.ipynb"], 12.34, tmp_path / "out", "smoke").startswith(
        "1 of 2 notebooks ran without error (profile smoke) in 12.3 s")


def test_kernel_environment_gives_a_writable_ipython_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("IPYTHONDIR", raising=False)
    env = rn.kernel_environment(tmp_path / "ipy")
    assert env["IPYTHONDIR"] == str(tmp_path / "ipy") and (tmp_path / "ipy").is_dir()
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path))  # a writable one chosen by the user is kept
    assert rn.kernel_environment(tmp_path / "other")["IPYTHONDIR"] == str(tmp_path)


def test_a_course_run_prints_one_line_per_notebook_and_a_summary_and_stores_no_widgets(tmp_path, monkeypatch, capfd,
                                                                                     recwarn):
    """End to end on a two-cell notebook that shows a progress-bar widget, with a HOME whose parent does not
    exist (where IPython would warn 'not a writable location')."""
    pytest.importorskip("ipywidgets")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = new_notebook(cells=[
        new_code_cell("import ipywidgets\nbar = ipywidgets.IntProgress(max=3)\ndisplay(bar)\nbar.value = 3"),
        new_code_cell("print('done', 6 * 7)"),
    ])
    nbformat.write(nb, folder / "00_tiny.ipynb")
    monkeypatch.setenv("HOME", str(tmp_path / "missing" / "home"))
    monkeypatch.delenv("IPYTHONDIR", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.chdir(tmp_path)

    status = rn.main(["--profile", "smoke", "--notebooks", str(folder), "--out", "build", "--inplace"])
    out, err = capfd.readouterr()
    assert status == 0, out + err
    lines = out.strip().splitlines()
    assert len(lines) == 3, out  # the notebook, the summary, "written back"
    assert lines[0].startswith("00_tiny.ipynb") and lines[0].endswith("ok")
    assert lines[1].startswith("1 notebook ran without error (profile smoke)") and "HTML in build/" in lines[1]
    for noise in ("without encryption", "not a writable location", "Alternative text"):
        assert noise not in out + err
    assert not (tmp_path / "missing").exists()
    assert not [w for w in recwarn if "writable" in str(w.message)]

    for written in (folder / "00_tiny.ipynb", tmp_path / "build" / "00_tiny.ipynb"):
        data = json.loads(written.read_text())
        assert "widgets" not in data["metadata"]
        outputs = [o for c in data["cells"] for o in c.get("outputs", [])]
        assert not any(WIDGET in o.get("data", {}) for o in outputs)
        assert any("done 42" in "".join(o.get("text", "")) for o in outputs)
    assert (tmp_path / "build" / "00_tiny.html").exists()
    index = (tmp_path / "build" / "index.html").read_text()
    assert '<a href="00_tiny.html">00_tiny.ipynb</a>' in index and ">ok<" in index


def test_the_index_keeps_earlier_rows_and_lists_skips(tmp_path):
    first = [{"name": "01_a.ipynb", "title": "01 · A", "seconds": 61.0, "status": "ok", "reason": None, "parts": []},
             {"name": "05_b.ipynb", "title": "05 · B", "seconds": 2.0, "status": "skipped",
              "reason": "CUB-200-2011 is not in the data folder", "parts": []}]
    rn.write_index(tmp_path, first, "cpu")
    again = [{"name": "01_a.ipynb", "title": "01 · A", "seconds": 30.0, "status": "FAILED", "reason": None,
              "parts": ["CIFAR-10 section: CIFAR-10 not found; run python data_scripts/get_cifar.py"]}]
    page = rn.write_index(tmp_path, again, "cpu").read_text()
    assert page.count("<tr><td>") == 2  # 05 kept from the first run, 01 replaced
    assert "30.0 s" in page and "1 min 01 s" not in page and "s-FAILED" in page
    assert "CUB-200-2011 is not in the data folder" in page and "get_cifar.py" in page
    assert "2 notebooks, 32.0 s of run time in total" in page


def test_notebook_title_is_the_first_heading(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("[![badge](x)](y)\n\n# 07 · Attacks\n\ntext")])
    nbformat.write(nb, tmp_path / "07.ipynb")
    assert rn.notebook_title(tmp_path / "07.ipynb") == "07 · Attacks"
