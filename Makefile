# advcam-pl — every command a user needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pins that the CPU machines here install from local disk; override for other CUDA builds.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= outputs/demo
VOC_ROOT ?=
ARGS ?=
SWEEP ?= fig6_lambda
POINTS ?=

.PHONY: help setup test demo lint bench bench-chain gpu-check reproduce-weak reproduce-semi sweep clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The stamp makes re-running setup cheap: it only reinstalls when pyproject.toml changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

setup: $(VENV)/.installed  ## create .venv and install the package (editable, with dev tools)

# What CI runs (.ci/run): every test, the ones marked `slow` included (they install the package and
# run it from elsewhere). While editing, `make test ARGS='-m "not slow"'` leaves those out.
test: setup  ## the whole test suite, slow tests included (offline, CPU)
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=900 $(ARGS)

demo: setup  ## run the whole pipeline on a generated synthetic VOC-layout dataset
	$(BIN)/python -m advcam_pl.demo --out $(DEMO_DIR) $(ARGS)

lint: setup  ## ruff
	$(BIN)/ruff check src tests benchmarks

bench: setup  ## AdvCAM speed: reference vs fast implementation (CPU settings; see benchmarks/README)
	$(BIN)/python benchmarks/advcam_speed.py $(ARGS)

bench-chain: setup  ## CAM vs AdvCAM (T = 27, 4 scales) through the weak chain, synthetic data (<= 60 min, 2 cores); ARGS="--num-images 16" for a smoke run
	$(BIN)/python benchmarks/bench_chain.py $(ARGS)

gpu-check: setup  ## AdvCAM throughput on a GPU in one table (<= 8 min); ARGS=--cpu for small CPU sizes
	PYTHON=$(BIN)/python benchmarks/gpu_check.sh $(ARGS)

reproduce-weak: setup  ## the paper's weak chain on a real VOC tree: make reproduce-weak VOC_ROOT=/path/to/VOC2012 [ARGS="..."]
	@if [ -z "$(VOC_ROOT)" ]; then echo "usage: make reproduce-weak VOC_ROOT=/path/to/VOCdevkit/VOC2012 [ARGS='hydra overrides']"; exit 2; fi
	$(BIN)/python -m advcam_pl.pipeline.reproduce --voc-root "$(VOC_ROOT)" $(ARGS)

reproduce-semi: setup  ## the weak chain up to the pseudo masks, then CCT on them: make reproduce-semi VOC_ROOT=/path/to/VOC2012 [ARGS="..."]
	@if [ -z "$(VOC_ROOT)" ]; then echo "usage: make reproduce-semi VOC_ROOT=/path/to/VOCdevkit/VOC2012 [ARGS='hydra overrides']"; exit 2; fi
	$(BIN)/python -m advcam_pl.pipeline.reproduce --experiment reproduce_semi --voc-root "$(VOC_ROOT)" $(ARGS)

# The CAM baseline first (it also trains the classifier that every point shares), then the multirun.
# Without VOC_ROOT: the demo's synthetic data and settings (experiment=demo), on CPU.
SWEEP_DATA = $(if $(VOC_ROOT),data.root=$(VOC_ROOT),experiment=demo)
sweep: setup  ## AdvCAM's knobs as in Fig. 6 / Table 2: make sweep SWEEP=fig6_lambda [VOC_ROOT=...] [POINTS="cam.climb.lam=0.0,7.0"] [ARGS="..."]
	@if [ ! -f conf/sweep/$(SWEEP).yaml ]; then echo "unknown SWEEP=$(SWEEP); one of: $$(ls conf/sweep/*.yaml | xargs -n1 basename | sed 's/.yaml//' | grep -v baseline_cam | tr '\n' ' ')"; exit 2; fi
	$(BIN)/python -m advcam_pl sweep=baseline_cam $(SWEEP_DATA) $(ARGS)
	$(BIN)/python -m advcam_pl -m sweep=$(SWEEP) $(SWEEP_DATA) $(ARGS) $(POINTS)

clean:  ## remove outputs (keeps .venv)
	rm -rf outputs logs .pytest_cache
