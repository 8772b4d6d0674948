"""The two ways to install agree, CI runs the README's command, and the package keeps its layers."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hncam_utils"
CONDA_TO_PIP = {"pytorch": "torch"}

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _split(req):
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def pyproject_requirements():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for name, extra in data["project"]["optional-dependencies"].items():
        reqs += [r for r in extra if not r.startswith("hncam-utils")]
    return dict(_split(r) for r in reqs)


def conda_requirements():
    deps = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)(.*)$", line)
        if m and m.group(1) not in ("python", "pip", "conda-forge"):
            name = CONDA_TO_PIP.get(m.group(1), m.group(1))
            deps[name.lower()] = m.group(2).strip().replace(" ", "")
    return deps


def test_environment_yml_and_pyproject_list_the_same_packages_and_floors():
    assert pyproject_requirements() == conda_requirements()


# Exact pins allowed only for test tools of the dev extra (never installed on Colab): Playwright guarantees only
# the browser build it was tested with.
PINNED_DEV_TOOLS = {"playwright"}


def test_torch_is_a_floor_not_a_pin():
    reqs = pyproject_requirements()
    assert reqs["torch"].startswith(">=")
    pinned = {name for name, spec in reqs.items() if "==" in spec}
    assert pinned <= PINNED_DEV_TOOLS, f"use floors (>=), not pins, for {sorted(pinned - PINNED_DEV_TOOLS)}"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = dict(_split(r) for r in data["project"]["dependencies"])
    assert not set(runtime) & PINNED_DEV_TOOLS and "==" not in "".join(runtime.values())


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(make \w+)$", readme, flags=re.M)
    assert commands[:2] == ["make course", "make test"], commands[:2]
    assert re.search(r"^make test$", ci, flags=re.M)


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_the_maths_depends_on_torch_alone():
    for mod in ("losses.py", "cam.py", "base_losses.py"):
        for name in _imports(PKG / mod):
            top = name.split(".")[0]
            assert top in ("torch", "") or top in sys.stdlib_module_names or name in (".cam", "._checks"), (mod, name)


# Which package modules each layer may import (relative names); nothing below imports plots, widgets or cli.
LAYERS = {
    "_checks": set(),  # argument checks (torch + standard library only) that every module may import
    "cam": set(),
    "losses": {"cam"},
    "base_losses": set(),
    "exercises": {"losses", "base_losses"},
    "models": {"cam"},
    "runtime": set(),
    "paths": set(),
    "skips": {"paths"},
    "results": {"paths"},
    "download": {"paths"},
    "data": {"download", "paths"},
    "metrics": {"cam", "losses", "models"},
    "wsol": {"cam", "metrics", "models"},
    "finegrained": {"data", "experiments", "metrics", "models", "paths", "train", "wsol"},
    "locplots": {"cam", "wsol"},
    "cifar_experiment": {"data", "experiments", "metrics", "models", "paths", "runtime", "train"},
    "train": {"losses", "base_losses", "metrics", "models", "runtime", "paths"},
    "experiments": {"data", "metrics", "models", "paths", "runtime", "train"},
    "distributed": {"data", "download", "losses", "metrics", "models", "runtime", "train"},
    "robustness": {"models"},
    "plots": {"cam", "train"},
    "widgets": {"cam", "models", "plots"},
    "cli": {"data", "distributed", "experiments", "metrics", "paths", "plots", "runtime", "train"},
}


def test_every_module_has_a_declared_layer():
    modules = {p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert modules <= set(LAYERS), f"declare the layer of {sorted(modules - set(LAYERS))} in LAYERS"


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_layering(module):
    path = PKG / f"{module}.py" if (PKG / f"{module}.py").exists() else PKG / module / "__init__.py"
    files = [path] if path.name != "__init__.py" else list(path.parent.glob("*.py"))
    used = set()
    for f in files:
        for name in _imports(f):
            if name.startswith(".") and not name.startswith(".."):
                target = name.lstrip(".").split(".")[0]
                if f.parent != PKG and name.startswith(".") and not name.startswith(".."):
                    continue  # imports inside a sub-package (data/) stay inside it
                used.add(target)
            elif name.startswith(".."):
                used.add(name.lstrip(".").split(".")[0])
    used.discard("_checks")  # the shared argument checks sit below every layer
    assert used <= LAYERS[module], f"{module} imports {sorted(used - LAYERS[module])}"


def test_no_hard_wired_cuda():
    for f in PKG.rglob("*.py"):
        assert ".cuda()" not in f.read_text(), f


def test_readme_loss_snippet_runs():
    import torch

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use the loss in your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    torch.manual_seed(0)
    scope = {"images": torch.randn(2, 3, 64, 64), "labels": torch.tensor([3, 150])}
    exec(compile(code, "README.md", "exec"), scope)
    loss = scope["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert scope["model"].classifier.weight.grad is not None


def test_no_source_file_is_git_ignored():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "hncam_utils", "tests", "notebooks", "tools",
         "data_scripts", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    ignored = [p for p in out if p.endswith((".py", ".ipynb", ".md")) and "__pycache__" not in p]
    assert ignored == [], f"source files hidden by .gitignore (they would not be committed): {ignored}"
