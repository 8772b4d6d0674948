"""The CAM explorer in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

What it does: starts JupyterLab on a free loopback port with a temporary root folder and settings, opens a
notebook without outputs that builds ``CAMExplorer`` the way notebook 06 does (three digits CNNs side by side
on the Cluttered Digits test split; freshly initialised, because training is not what is tested here and
the test must stay fast), runs all cells, waits until the explorer has rendered (its controls and four PNG
panels present, no "Loading widget..." and no "Error displaying widget"), then changes the class, then the
models, and checks each time that the panels' image data and the scores changed; finally it types an index
out of range and checks that a message, not a traceback, appears. Screenshots go to pytest's ``tmp_path``
(printed at the end). Every wait is bounded; the server and its kernels are stopped by PID.

It skips, saying why, only where Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it)
or the ``playwright`` package is missing. Playwright is launched on that browser through
``executable_path``: ``playwright install`` (which downloads a browser) is never needed.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it in CI)",
)

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

NOTEBOOK_CELLS = [
    "import torch\n"
    "from hncam_utils.data import ClutteredDigits\n"
    "from hncam_utils.models import digits_cnn\n"
    "from hncam_utils.widgets import CAMExplorer\n"
    "torch.manual_seed(0)\n"
    "models = {label: digits_cnn().eval() for label in ('ce', 'hnc_mse', 'hnc_kd')}\n"
    "test_set = ClutteredDigits('test', 'hard', with_boxes=True, n_train=200, n_test=60)",
    "explorer = CAMExplorer(models, test_set, pool=60)\n"
    "explorer",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""))


def _stop(pids, timeout: float = 10.0) -> None:
    """SIGTERM each PID, wait, then SIGKILL what is left."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port with a temporary root, settings and home; stopped by PID."""
    import nbformat
    import psutil

    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, root / "explorer.ipynb")

    home = tmp_path / "home"
    settings = tmp_path / "lab-settings"
    for name, value in {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                           "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = dict(os.environ)
    env.update({
        "HOME": str(home), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"), "IPYTHONDIR": str(tmp_path / "ipython"),
        "MPLCONFIGDIR": str(tmp_path / "mpl"), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "HNCAM_PROFILE": "smoke", "HNCAM_DEVICE": "cpu", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    })
    port = _free_port()
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            assert server.poll() is None, f"JupyterLab exited early: see {tmp_path / 'jupyterlab.log'}"
            return _get_json(f"{base}/api/status") is not None

        _wait(ready, 60, "JupyterLab's /api/status")
        yield {"base": base, "tmp": tmp_path, "log": tmp_path / "jupyterlab.log"}
    finally:
        # the kernels run in sessions of their own: collect every descendant before stopping the server
        try:
            children = [p.pid for p in psutil.Process(server.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            children = []
        _stop([server.pid] + children)
        log.close()


def _panels(page):
    """(image sources of the explorer's panels, scores text, message text)."""
    return page.evaluate(
        """() => {
            const root = document.querySelector('.hncam-explorer');
            if (!root) return null;
            const imgs = [...root.querySelectorAll('.hncam-panel img')].map(i => i.src);
            const scores = root.querySelector('.hncam-scores');
            const msg = root.querySelector('.hncam-message');
            return {imgs: imgs, scores: scores ? scores.innerText : '', message: msg ? msg.innerText : ''};
        }"""
    )


def _output_text(page):
    return page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea')].map(o => o.innerText).join('\\n')")


def test_explorer_renders_and_reacts_in_jupyterlab(lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra pins it)")
    shots = lab["tmp"] / "screenshots"
    shots.mkdir()
    t0 = time.monotonic()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, timeout=30_000,
            env={**os.environ, "HOME": str(lab["tmp"] / "chromium-home"),
                 "XDG_CONFIG_HOME": str(lab["tmp"] / "chromium-config"),
                 "XDG_CACHE_HOME": str(lab["tmp"] / "chromium-cache")},
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{lab['base']}/lab/tree/explorer.ipynb?reset", wait_until="domcontentloaded")
            # the kernel exists and is idle (the toolbar's indicator can read idle before a kernel exists)
            page.wait_for_function(
                """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                           const k = w && w.sessionContext && w.sessionContext.session
                                     && w.sessionContext.session.kernel;
                           return k && k.status === 'idle'; }""", timeout=60_000)
            # ... and the server agrees (its state can lag the page's by a moment)
            _wait(lambda: [k["execution_state"] for k in _get_json(f"{lab['base']}/api/kernels")] == ["idle"], 30,
                  "one idle kernel in /api/kernels")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(
                """() => { const r = document.querySelector('.hncam-explorer');
                           return r && r.querySelectorAll('.hncam-panel img').length === 4
                                  && r.querySelector('.hncam-scores')
                                  && [...r.querySelectorAll('.hncam-panel img')].every(i => i.src.startsWith('blob:')); }""",
                timeout=90_000)
            text = _output_text(page)
            assert "Loading widget" not in text and "Error displaying widget" not in text, text[-2000:]
            assert "Traceback" not in text, text[-2000:]
            for cls in ("hncam-index", "hncam-rank", "hncam-models", "hncam-method", "hncam-opacity"):
                assert page.locator(f".{cls}").count() == 1, cls
            assert page.locator(".hncam-explorer .jupyter-widgets").count() > 0
            page.screenshot(path=str(shots / "1-rendered.png"), full_page=True)
            before = _panels(page)
            assert "ground truth" in before["scores"] and before["message"].strip() == ""

            # change the class: ground truth -> 1st negative
            page.select_option(".hncam-rank select", index=1)
            page.wait_for_function(
                "(old) => { const s = document.querySelector('.hncam-scores'); return s && s.innerText !== old; }",
                arg=before["scores"], timeout=20_000)
            after_class = _panels(page)
            assert "1st negative" in after_class["scores"]
            assert len(after_class["imgs"]) == 4
            assert after_class["imgs"][0] == before["imgs"][0]          # same image panel
            assert all(a != b for a, b in zip(after_class["imgs"][1:], before["imgs"][1:]))  # new maps
            page.screenshot(path=str(shots / "2-class-changed.png"), full_page=True)

            # change the models: show CE and HNC_kd only
            page.select_option(".hncam-models select", label=["ce", "hnc_kd"])
            page.wait_for_function(
                "() => document.querySelectorAll('.hncam-explorer .hncam-panel img').length === 3", timeout=20_000)
            page.wait_for_function(
                "(old) => { const s = document.querySelector('.hncam-scores'); return s && s.innerText !== old; }",
                arg=after_class["scores"], timeout=20_000)
            after_models = _panels(page)
            assert "hnc_mse" not in after_models["scores"] and "hnc_kd" in after_models["scores"]
            assert all(src.startswith("blob:") for src in after_models["imgs"])
            page.screenshot(path=str(shots / "3-models-changed.png"), full_page=True)

            # bad input: an index out of range gives a message, not a traceback
            box = page.locator(".hncam-index input")
            box.fill("999")
            box.press("Enter")
            page.wait_for_function(
                "() => { const m = document.querySelector('.hncam-message'); return m && m.innerText.includes('out of range'); }",
                timeout=20_000)
            assert "Traceback" not in _output_text(page)
            assert _panels(page)["imgs"] == after_models["imgs"]          # nothing redrawn
            page.screenshot(path=str(shots / "4-bad-index.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            print(f"JupyterLab log: {lab['log']}")
            raise
        finally:
            browser.close()
    print(f"browser test took {time.monotonic() - t0:.1f} s; screenshots in {shots}")
