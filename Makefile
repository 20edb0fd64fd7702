# insitu: `make demo` and `make test` each set up a fresh Debian 12 machine by themselves.
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := iverilog ngspice libngspice0-dev yosys nextpnr-ice40 fpga-icestorm gcc g++ make perl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup apt venv demo test test-slow lint bench clean

setup: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The CPU build of torch goes in first so that the project's own `torch` requirement never pulls
# a multi-GB CUDA build. Where the pinned wheel is not on the machine, PyTorch's CPU index is used.
$(BIN)/python:
	command -v $(PY) >/dev/null || { echo "error: $(PY) not found (Python 3.11 is required)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

.stamp-venv: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH) || \
	  $(BIN)/pip install -q --index-url $(TORCH_INDEX) torch
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: .stamp-venv

demo: setup
	$(BIN)/insitu demo --out runs/demo

test: setup
	$(BIN)/pytest -q -n 2

test-slow: setup
	$(BIN)/pytest -q -m slow

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/accuracy_table.py
	$(BIN)/python bench/sweep_nonideal.py
	$(BIN)/python bench/analog_characterize.py
	$(BIN)/python bench/rtl_cycles.py
	$(BIN)/python bench/rtl_speed.py
	$(BIN)/python bench/cosim_speed.py
	$(BIN)/python bench/snn_rules.py --threads 1

clean:
	rm -rf $(VENV) .stamp-venv runs build *.egg-info
