# Two commands for a fresh machine: `make demo` (the main job) and `make test` (the tests).
# Both create or reuse .venv, install what they need once, and fetch the default data.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fgia-installed
TORCH := torch==2.14.1 torchvision==0.29.1
EXP ?= demo

.PHONY: demo test data export-check nbtest pytest bench-clean bench-mae bench-train bench-data bench-post readme clean-outputs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | grep -v -e 'is ignored: it is neither' -e 'BuildBackendWarning' || true
	@$(BIN)/python -c "import fgia_nb, torch, timm, fastai" || { echo "install failed: see the pip output above"; exit 1; }
	@touch $@

# Fashion-MNIST: Debian's dataset-fashion-mnist where we are root with apt, else torchvision's download.
data: $(STAMP)
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || true; fi
	@$(BIN)/python -c "from fgia_nb.sources import fashion_mnist_dir; print('Fashion-MNIST:', fashion_mnist_dir(download=True))"

demo: data
	$(BIN)/fgia-default-data
	@mkdir -p outputs/$(EXP)/00_data_clean/default
	$(BIN)/papermill --cwd nbs --log-level WARNING nbs/00_data_clean.ipynb outputs/$(EXP)/00_data_clean/default/00_data_clean.ipynb -p experiment $(EXP)
	@cat outputs/$(EXP)/00_data_clean/default/report.md

# The exported modules must be exactly what nbdev-export makes of the notebooks.
export-check: $(STAMP)
	@tmp=$$(mktemp -d); cp -r fgia_nb $$tmp/; $(BIN)/nbdev-export; \
	if ! diff -r -q -x __pycache__ $$tmp/fgia_nb fgia_nb; then echo "nbdev-export changed fgia_nb/: the notebooks and the package disagree"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "export-check: fgia_nb/ matches the notebooks"

# Build the default dataset once before notebooks run in parallel (they all read it).
nbtest: $(STAMP) data
	$(BIN)/fgia-default-data
	$(BIN)/nbdev-test --n-workers 2 --timing

pytest: $(STAMP) data
	$(BIN)/pytest

test: export-check nbtest pytest

bench-clean: $(STAMP)
	$(BIN)/fgia-bench-clean
bench-mae: $(STAMP)
	$(BIN)/fgia-bench-mae
bench-train: $(STAMP) data
	$(BIN)/fgia-bench-train
bench-data: $(STAMP) data
	$(BIN)/fgia-bench-data
bench-post: $(STAMP)
	$(BIN)/fgia-bench-post

readme: $(STAMP)
	$(BIN)/jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README --log-level WARN

clean-outputs:
	rm -rf outputs
