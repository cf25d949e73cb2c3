# The course's commands. Everything runs in the project's own virtual environment (.venv), which the
# first command creates from the package registry (torch and torchvision included).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SMOKE  := results/smoke

.PHONY: help install reproduce test test-unit test-notebooks lab bench report pretrain notebooks student clean

help:
	@echo "make reproduce   set up, then run every notebook (embedded tier) -> results/, REPORT.md"
	@echo "make test        set up, then run the test suite (unit tests + notebooks in the smoke tier)"
	@echo "make lab         set up, then open the course in JupyterLab (in notebooks/; README and results/ one up)"
	@echo "make bench       run the benchmarks (ratios measured side by side)"
	@echo "make notebooks   rebuild notebooks/*.ipynb from their sources notebooks/*.py"
	@echo "make student     write the student edition (dist/student) and the instructor key (dist/key)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + "): set PYTHON=python3.11 or similar")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m fcnlib.reproduce --tier embedded

test: $(STAMP)
	$(PY) -m pytest tests -q -p no:cacheprovider

lab: $(STAMP)
	$(PY) tools/lab_settings.py
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --ContentsManager.preferred_dir=notebooks \
	    $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

report: $(STAMP)
	$(PY) -m fcnlib.report

notebooks: $(STAMP)
	@for s in notebooks/[0-9]*.py; do $(PY) tools/make_notebook.py $$s $${s%.py}.ipynb || exit 1; done

student: $(STAMP)
	$(PY) -m fcnlib.edition --out dist --force

pretrain: $(STAMP)
	$(PY) -m fcnlib.pretrain --arch vgg16 alexnet --out data/pretrained

clean:
	rm -rf results data/cache
