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

.PHONY: setup demo ablation sweep custom-default smoke-accv test data docs browser export-check nbtest pytest bench-clean bench-mae bench-train bench-data bench-post bench-stage00 bench-scale gpu-check readme clean-outputs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | grep -v -e 'is ignored: it is neither' -e 'BuildBackendWarning' || true
	@$(BIN)/python -c "import fgia_nb, torch, timm, fastai" || { echo "install failed: see the pip output above"; exit 1; }
	@touch $@

# The virtual environment alone (`make demo` and `make test` make it too): for a dataset of one's own.
setup: $(STAMP)

# Fashion-MNIST: Debian's dataset-fashion-mnist where we are root with apt, else torchvision's download.
data: $(STAMP)
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || true; fi
	@$(BIN)/python -c "from fgia_nb.sources import fashion_mnist_dir; print('Fashion-MNIST:', fashion_mnist_dir(download=True))"

# The whole recipe on the default dataset: raw data -> scored test-B submission and the ablation table.
# Run it again and it skips what is done; interrupted, it picks up where it stopped.
RECIPE ?= recipes/demo.yaml
demo: data
	$(BIN)/fgia-default-data
	$(BIN)/fgia run $(RECIPE) --experiment $(EXP)
	@cat outputs/$(EXP)/ablation.md

# The ablation over three seeds: the demo recipe once per seed (seed 0 is `make demo`'s run, shared), then each row's
# mean and standard deviation of test-B top-1 and of its gain (outputs/$(EXP)/ablation_seeds.md, .csv, .png).
SEEDS ?= 0,1,2
ablation: data
	$(BIN)/fgia-default-data
	$(BIN)/fgia ablation $(RECIPE) --experiment $(EXP) --seeds $(SEEDS)
	@cat outputs/$(EXP)/ablation_seeds.md

# How the demo's single-model settings were chosen: one change at a time on the CNN teacher, scored on test-A only
# (outputs/sweep/ablation.md; `make readme` renders it).
sweep: data
	$(BIN)/fgia-default-data
	$(BIN)/fgia run recipes/sweep.yaml
	@cat outputs/sweep/ablation.md

# The custom recipe (any dataset) as a user first runs it, pointed at the default dataset: the README's "Your own data".
# At 32 px and 3 epochs: at the 64 px and 10 epochs it proposes for this data, EfficientNet-Lite0 (about 83 images/s
# on 2 cores, 115 at 32 px) would train its three models for well over an hour.
custom-default: data
	$(BIN)/fgia-default-data
	$(BIN)/fgia run recipes/custom.yaml --var data=$(CURDIR)/data/fmnist_web --var img_size=32 --var epochs=3 --experiment custom-default
	@cat outputs/custom-default/ablation.md

# The winners' full recipe at toy scale (tiny models, one epoch, a small build of the default dataset): every step of
# recipes/accv2022.yaml run on CPU before anyone rents GPUs for it.
smoke-accv: data
	$(BIN)/fgia-default-data --dest $(CURDIR)/data/fmnist_toy --n-max 400 --n-testa 50 --n-testb 50
	$(BIN)/fgia run recipes/accv2022.yaml --overlay recipes/toy.yaml

# The exported modules must be exactly what nbdev-export makes of the notebooks.
export-check: $(STAMP)
	@tmp=$$(mktemp -d); cp -r fgia_nb $$tmp/; $(BIN)/nbdev-export; \
	if ! diff -r -q -x __pycache__ $$tmp/fgia_nb fgia_nb; then echo "nbdev-export changed fgia_nb/: the notebooks and the package disagree"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "export-check: fgia_nb/ matches the notebooks"

# Build the default dataset once before notebooks run in parallel (they all read it).
# The notebooks' runs write into a scratch outputs folder, never over a demo run's outputs/.
nbtest: $(STAMP) data
	$(BIN)/fgia-default-data
	@out=$$(mktemp -d -t fgia-nbtest-XXXXXX); trap 'rm -rf "$$out"' EXIT; \
	FGIA_OUTPUTS=$$out $(BIN)/nbdev-test --n-workers 2 --timing

# Headless Chromium and its driver for tests/test_docs.py (Debian packages; installed when root).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }; \
	else echo "the browser tests need chromium and chromedriver: as root, apt-get install -y chromium chromium-driver"; exit 1; fi

pytest: $(STAMP) data browser
	$(BIN)/pytest

# The documentation: Quarto's site where quarto is installed, else HTML pages of the executed notebooks in _docs/.
docs: $(STAMP)
	$(BIN)/fgia-docs

test: export-check nbtest pytest

bench-clean: $(STAMP)
	$(BIN)/python benchmarks/bench_clean.py
bench-mae: $(STAMP)
	$(BIN)/python benchmarks/bench_mae.py
bench-train: $(STAMP) data
	$(BIN)/python benchmarks/bench_train.py
bench-data: $(STAMP) data
	$(BIN)/python benchmarks/bench_data.py
bench-post: $(STAMP)
	$(BIN)/python benchmarks/bench_post.py
bench-stage00: $(STAMP)
	$(BIN)/python benchmarks/bench_stage00.py --json-out outputs/bench/stage00.json

# Competition scale on one machine: stage 00 over 200,000 small files (a fifth of the competition's; the tree is
# written once into bench_data/), then ensemble and re-distribution over 17 x 90,000 x 5,000 float16 logits (15 GB,
# deleted after). The figures go to outputs/bench/ and `make readme` renders them.
bench-scale: bench-stage00
	$(BIN)/python benchmarks/bench_post.py --full --json-out outputs/bench/post-full.json

# Training (Swin-V2-L 384, ViT-L 448: bf16, channels_last, compile), MAE ViT-L and flip-TTA images/s per GPU and peak
# memory, against plain bf16 and the winners' log (outputs/bench/gpu_check.json). A few minutes on one GPU; without CUDA it
# runs the same configurations with the tiny archs (half a minute) and never overwrites a GPU run's figures.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --json outputs/bench/gpu_check.json

# README.md from nbs/index.ipynb, executed: the ablation table, chart and timings come from the last demo run's files
# (outputs/demo/ablation.csv, .png, recipe/summary.csv), with the commit and date that made them.
readme: $(STAMP)
	$(BIN)/jupyter nbconvert --to markdown --execute nbs/index.ipynb --output-dir . --output README --log-level WARN \
	  --TagRemovePreprocessor.enabled=True --TagRemovePreprocessor.remove_input_tags=remove_input \
	  --ExecutePreprocessor.extra_arguments=--IPKernelApp.log_level=ERROR
	sed -i 's|](images/|](nbs/images/|g' README.md

clean-outputs:
	rm -rf outputs
