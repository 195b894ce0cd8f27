# newsdesk: `make run` sets everything up and starts the app with demo data; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export NEWSDESK_HOME ?= $(CURDIR)/var
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run install test test-fast lint demo serve clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null

# torch first, pinned, so pip takes the CPU wheel on CPU machines instead of a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev,onnx]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/newsdesk init
	$(BIN)/newsdesk demo
	$(BIN)/newsdesk serve

demo: install
	$(BIN)/newsdesk init
	$(BIN)/newsdesk demo

serve: install
	$(BIN)/newsdesk serve

test: install
	$(BIN)/python -m pytest tests

test-fast: install
	$(BIN)/python -m pytest tests -m "not slow and not browser"

# The rules live in pyproject.toml ([tool.ruff.lint]); CI (.ci/run) runs this before the tests.
lint: install
	$(BIN)/ruff check newsdesk finetune recsys monitor web tests benchmarks scripts

clean:
	rm -rf $(VENV) var
