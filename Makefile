# The two commands a new machine needs: `make train` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEBIAN_DATA := /usr/share/datasets/fashion-mnist
DATA_FILES  := train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte
ARGS ?=
# pytest processes for make test and make test-fast (pytest-xdist; each test file runs whole in one of
# them). Each holds about 0.5 GB and starts a few more in its slow tests: 2 fits a 2-core, 24 GB machine.
# 0: one process.
# Each worker's torch trains on cores / workers threads (tests/conftest.py), so that they do not oversubscribe.
TEST_WORKERS ?= 2

PORT ?= 6006

.PHONY: setup data train test test-fast bench gpu-check lint report tensorboard dashboard clean

setup: $(STAMP)

# The virtual environment, rebuilt when pyproject.toml changes. editable_mode=compat puts the checkout itself on
# sys.path, so Hydra's scan of the hydra_plugins namespace finds the Optuna sweeper from any current folder
# (setuptools' default editable install serves packages through an import hook that the scan does not see).
# uv installs the packages (6 GB, most of it torch's CUDA libraries) and compiles their bytecode on every core:
# 38 s on 2 cores, where pip took 104 s. uv does not read pip's configuration, so the indexes, find-links,
# constraints, trusted hosts and CA bundle pip is set up with (pip config list: its files and PIP_* variables) are
# handed on to it (uv 0.12 or newer takes --cert); like pip, it then takes the best version any of them offers.
# pip itself only installs uv. The Makefile is a prerequisite too: the server's requirement below lives here.
# The full mlflow package (`mlflow server`, `mlflow ui`) has a virtual environment of its own, $(MLFLOW_SERVER), as
# a deployment keeps it: it brings SciPy, and where SciPy is installed, torchmetrics (which Lightning imports)
# imports scipy.signal at every start of a training process, 0.8 s each. It is installed first, and lenet_exp's
# MLflow client (mlflow-skinny) then at its version: a newer client writes a run's store in a newer schema, which
# the older package's `mlflow ui` refuses to open.
MLFLOW_SERVER := $(VENV)/mlflow-server
UV_SOURCES = $$($(PY) -m pip config list 2>/dev/null | awk -F"'" ' \
	{ split($$1, part, "."); section = part[1]; key = substr($$1, length(section) + 2, length($$1) - length(section) - 2) } \
	section != ":env:" && section != "install" && section != "global" { next } \
	{ rank = section == ":env:" ? 3 : section == "install" ? 2 : 1 } \
	rank > best[key] { best[key] = rank; value[key] = $$2 } \
	END { for (key in value) if (key ~ /^(index-url|extra-index-url|find-links|constraint|trusted-host|cert)$$/) { \
		n = split(value[key], values, " "); for (i = 1; i <= n; i++) \
			printf "--%s %s ", key == "trusted-host" ? "allow-insecure-host" : key, values[i] } }')
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --disable-pip-version-check 'uv>=0.12'
	test -x $(MLFLOW_SERVER)/bin/python || $(VENV)/bin/uv venv --quiet --python $(PY) $(MLFLOW_SERVER)
	$(VENV)/bin/uv pip install --quiet --python $(MLFLOW_SERVER)/bin/python --index-strategy unsafe-best-match \
		$(UV_SOURCES) 'mlflow>=3,<4'
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode --index-strategy unsafe-best-match $(UV_SOURCES) \
		--config-settings editable_mode=compat -e '.[dev,mlflow,postgres,dashboard]' \
		"mlflow-skinny==$$($(MLFLOW_SERVER)/bin/python -c "from importlib.metadata import version; print(version('mlflow'))")"
	touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist package when it is not there yet.
data:
	@missing=0; for f in $(DATA_FILES); do [ -f $(DEBIAN_DATA)/$$f.gz ] || [ -f $(DEBIAN_DATA)/$$f ] || missing=1; done; \
	if [ $$missing = 0 ]; then echo "Fashion-MNIST: found in $(DEBIAN_DATA)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then \
		echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist (sudo)"; \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST: not in $(DEBIAN_DATA) and apt-get cannot be used here; put the four IDX files"; \
		echo "  in ~/.cache/lenet_exp (or data.data_dir), or train with data.download=true where there is internet."; \
	fi

train: setup data
	$(PY) -m lenet_exp $(ARGS)

# Everything, real-data and slow tests included (what CI runs); the slowest tests are listed at the end.
test: setup data
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 $(ARGS)

# The edit-test loop: no real data, no slow marks, in the same workers as make test (TEST_WORKERS=0: one process).
test-fast: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not realdata and not slow" -q $(ARGS)

# The book's pipeline vs a bare loop vs lenet_exp, interleaved and paired (about 5 minutes on 2 CPU cores; docs/performance.md).
bench: setup data
	$(PY) benchmarks/bench.py $(ARGS)

# The GPU path checked and measured (benchmarks/gpu_check.py, at most 7.5 minutes on one GPU); results
# in $(OUT) or outputs/gpu_check/. DEVICE=cpu: the same steps reduced, on the CPU (a dry run).
# Where the packages are already installed (a GPU image): make gpu-check PY=python3 skips the venv.
DEVICE ?= cuda
gpu-check: $(if $(filter $(VENV)/bin/python,$(PY)),setup data)
	$(PY) benchmarks/gpu_check.py --device $(DEVICE) $(ARGS)

# The newest sweep's summary table and plot (python -m lenet_exp.report <sweep folder> for any other).
report: setup
	@sweep=$$(ls -d outputs/multirun/*/*/ 2>/dev/null | sort | tail -n 1); \
	if [ -z "$$sweep" ]; then echo "no sweep in outputs/multirun yet: run python -m lenet_exp -m ..."; exit 1; fi; \
	$(PY) -m lenet_exp.report $$sweep

# TensorBoard over every run and sweep, on this machine only: make tensorboard PORT=6007. First the check that no
# projector config under outputs/ names a file outside its folder (TensorBoard would read and show any file).
tensorboard: setup
	$(PY) -m lenet_exp.network_view outputs
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port $(PORT)

# optuna-dashboard on this machine only, for the newest study's optuna.db under $(OUTPUTS)/multirun, or for
# STORAGE=sqlite:///study.db, postgresql+psycopg://user@host/db or journal:study.log: make dashboard DASHBOARD_PORT=8081
OUTPUTS ?= outputs
DASHBOARD_PORT ?= 8080
dashboard: setup
	@storage='$(STORAGE)'; storage=$${storage#journal:}; storage=$${storage#//}; \
	if [ -z "$$storage" ]; then db=$$(ls -dtr $(OUTPUTS)/multirun/*/*/optuna.db 2>/dev/null | tail -n 1); \
		[ -n "$$db" ] || { echo "no study in $(OUTPUTS)/multirun yet: run python -m lenet_exp hparams_search=lenet_optuna"; exit 1; }; \
		storage=sqlite:///$$(realpath "$$db"); echo "optuna-dashboard: $$db"; fi; \
	exec $(VENV)/bin/optuna-dashboard "$$storage" --host 127.0.0.1 --port $(DASHBOARD_PORT)

lint: setup
	$(VENV)/bin/ruff check lenet_exp hydra_plugins tests benchmarks
	$(VENV)/bin/ruff format --check lenet_exp hydra_plugins tests benchmarks

clean:
	rm -rf outputs/*/ .pytest_cache
