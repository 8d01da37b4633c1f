# lfd13 — two commands do everything:  make book   |   make test
# Both create .venv and install what is needed the first time, and are quick when nothing changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export LFD13_PROGRESS ?= 0
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup chromium grader-env book unit test test-second-path notebooks bench release grade feedback export clean help

SUBMISSIONS ?= submissions
GRADES ?= grades.csv

help:
	@echo "make book        build the HTML book into _build/html from the notebooks' committed outputs"
	@echo "make test        run the whole test suite (unit, every chapter re-executed and checked, book build, grading)"
	@echo "make test-second-path  every chapter re-executed and checked under a second numerical path of this CPU"
	@echo "make unit        the lfd13 unit tests only (no notebooks, book, browser or grading): under a minute"
	@echo "make notebooks   re-execute every book notebook in place (for committing outputs)"
	@echo "make bench       measure notebook time/memory/headline figures -> benchmarks/results.json"
	@echo "make release     instructors: generate the student notebooks (assignments/release, book/_static)"
	@echo "make grade       instructors: collect SUBMISSIONS=dir (<student>/<assignment>/<assignment>.ipynb), autograde in the sandbox"
	@echo "make grader-env  instructors: bubblewrap (installed when missing and root) and the grader's kernel environment"
	@echo "make feedback    instructors: HTML feedback for every graded submission"
	@echo "make export      instructors: grades to GRADES=grades.csv"
	@echo "make wheel       the lfd13 wheel (package, data, checkpoints) in dist/"
	@echo "make launch-all  run every chapter alone in a Python without lfd13, as Colab or a download would"
	@echo "make gpu-smoke   one training step of every chapter's model on a CUDA GPU, when there is one"

setup: $(STAMP)

# The venv is (re)installed only when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Debian packages the tests need, installed when missing and root: $(call apt_need,COMMAND,PACKAGE,WHAT FOR)
define apt_need
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's $(2) for $(3)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "$(2) is missing: install it (e.g. sudo apt-get install $(2)) for $(3)" >&2; \
	  fi; }
endef

# The browser tests drive Debian's Chromium (no browser download).
chromium:
	$(call apt_need,chromium,chromium,the browser tests)

# Grading runs student code in bubblewrap, in a kernel environment that links only torch, numpy,
# matplotlib and ipykernel from the venv (see book/instructor_guide.md); grading refuses without it.
grader-env: $(STAMP)
	$(call apt_need,bwrap,bubblewrap,the grading sandbox)
	$(PY) assignments/grading/kernel_env.py build

# The book shows the outputs committed in the notebooks (the chapter checks in `make test` prove they are
# those of a clean run); `make notebooks` re-executes the chapters after one changes.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --builder html
	@echo "Book built: open _build/html/index.html"

# The fast inner loop: the lfd13 unit tests, without notebooks, book build, browser or grading.
unit: $(STAMP)
	$(PY) -m pytest -o addopts="" -q tests/unit

test: $(STAMP) chromium grader-env
	$(PY) -m pytest

# The chapters again, with PyTorch's CPU kernels held to a lower instruction set than this CPU's
# (AVX-512 -> AVX2, AVX2 -> SSE4.1): the numbers must stay within noise and every verdict the same
# (tests/chapter_outputs.py). CI runs it after `make test`.
test-second-path: $(STAMP)
	env $$($(PY) tests/chapter_outputs.py second-path) $(PY) -m pytest book

notebooks: $(STAMP)
	$(PY) benchmarks/notebooks.py --write

bench: $(STAMP)
	$(PY) benchmarks/notebooks.py

.PHONY: wheel launch-all gpu-smoke

# The lfd13 wheel (package, data files, shipped checkpoints) in dist/: what Colab, Binder or a laptop installs.
wheel: $(STAMP)
	rm -rf build dist/lfd13-*.whl
	$(PY) -m pip wheel . --no-deps --no-build-isolation --quiet -w dist
	@ls dist/lfd13-*.whl

# Every chapter alone in a venv without lfd13, its setup cell installing the wheel (make test runs one):
# records "launch" in benchmarks/results.json.
launch-all: $(STAMP)
	$(PY) benchmarks/launch.py

# One training step of every chapter's model on CUDA, when there is a GPU ("gpu_smoke" in benchmarks/results.json).
gpu-smoke: $(STAMP)
	$(PY) benchmarks/gpu_smoke.py

# Instructors: the nbgrader workflow (see book/instructor_guide.md).
release: $(STAMP)
	$(PY) assignments/course.py release

grade: $(STAMP) grader-env
	@test -d "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir  (dir/<student>/<assignment>/<assignment>.ipynb)" >&2; exit 1; }
	$(PY) assignments/course.py collect --from "$(SUBMISSIONS)"
	$(PY) assignments/course.py grade --jobs 2

feedback: $(STAMP)
	$(PY) assignments/course.py feedback

export: $(STAMP)
	$(PY) assignments/course.py export --csv "$(GRADES)"

clean:
	rm -rf _build .pytest_cache
