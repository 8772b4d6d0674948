# HNC-CAM course: one short driver. `make course` runs the course, `make test` the whole test suite.
# Both create .venv and install what they need when it is missing (pip; torch from "torch>=2.3").
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= cpu

.PHONY: course compare test unit notebooks lab bench clean help

help:
	@echo "make course   run every notebook in order (profile $(PROFILE)), write executed copies + HTML to build/course"
	@echo "make compare  python -m hncam_utils compare: CE vs CE+HNC_mse vs CE+HNC_kd on Cluttered Digits"
	@echo "make test     unit tests + every notebook under nbval (smoke profile)"
	@echo "make lab      open JupyterLab on notebooks/"
	@echo "make bench    HNC overhead benchmark (benchmarks/README.md)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m pip install --quiet -e ".[dev]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $(STAMP)

course: $(STAMP)
	@HNCAM_PROFILE=$(PROFILE) MPLBACKEND=Agg $(PY) tools/run_notebooks.py --profile $(PROFILE) --out build/course

compare: $(STAMP)
	MPLBACKEND=Agg $(PY) -m hncam_utils compare $(ARGS)

# Unit tests and notebooks in one pytest run. Notebooks run with the smoke profile; caches, HOME and
# matplotlib/IPython config go to a temporary folder so the tests never touch the user's files.
test: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	HNCAM_PROFILE=smoke HNCAM_HOME="$$tmp/hncam" HOME="$$tmp/home" IPYTHONDIR="$$tmp/ipython" \
	MPLCONFIGDIR="$$tmp/mpl" JUPYTER_CONFIG_DIR="$$tmp/jupyter" MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1 \
	$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
		tests notebooks $(PYTEST_ARGS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/hnc_overhead.py $(ARGS)

clean:
	rm -rf build .pytest_cache
