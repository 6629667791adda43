# Set-up and the two entry points of the README. Everything is installed from this repository's
# own files into .venv; nothing else on the machine is touched.
#
#   make demo   fake ImageNet -> shards -> verify -> DALI loader -> profile
#   make test   the test suite (what CI runs)
#
# CPU machines install the CPU build of torch (constraints/cpu.txt). On a GPU machine use
# `make demo TORCH_CONSTRAINT=` (PyPI's default CUDA torch) and DALI=dali-cuda13 for CUDA 13 drivers.

PYTHON ?= python3
VENV ?= .venv
DALI ?= dali-cuda12
TORCH_CONSTRAINT ?= constraints/cpu.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(DALI)

.PHONY: setup demo test lint clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install $(if $(TORCH_CONSTRAINT),-c $(TORCH_CONSTRAINT)) -e ".[$(DALI),test]"
	touch $@

demo: setup
	$(BIN)/imagenet-pipe demo --out demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

clean-demo:
	rm -rf demo
