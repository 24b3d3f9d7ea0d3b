# pnn: make demo | make test. Stage targets follow the pipeline and depend on their inputs
# as files, so re-running a finished stage does nothing and editing the config reruns it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PNN := $(BIN)/pnn
CONFIG ?= configs/demo.yaml

# Run directory and toy-data directory, read from the config (override with RUN=..., DATA=...).
yaml_top = $(shell sed -n 's/^$(1):[[:space:]]*\([^[:space:]\#]*\).*/\1/p' $(CONFIG) | head -n1)
OUTPUT_DIR := $(or $(call yaml_top,output_dir),runs)
RUN ?= $(OUTPUT_DIR)/$(call yaml_top,name)
DATA_DIR := $(shell sed -n '/^generate:/,/^[^[:space:]\#]/s/^[[:space:]]*output:[[:space:]]*\([^[:space:]\#]*\).*/\1/p' $(CONFIG) | head -n1)
DATA ?= $(if $(DATA_DIR),$(DATA_DIR)/toy.json)

INSTALLED := $(VENV)/.installed
EVENTS := $(RUN)/events.parquet
MODEL := $(RUN)/model/metadata.json
EVALUATED := $(RUN)/evaluate/index.json
SUMMARY := $(RUN)/summary.json
STUDY := $(RUN)/study/study.md
EXPORTED := $(RUN)/export/pnn_onnx.json
LIMITS := $(RUN)/limits/limits.json
INSPECTED := $(RUN)/inputs/inputs.json
TUNED := $(RUN)/tune/best.yaml

.PHONY: install demo demo-2d test test-slurm lint data ingest train inspect evaluate limits report study export tune submit status clean benchmark
.DELETE_ON_ERROR:

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The whole chain on the embedded toy; always ends by printing the summary table.
demo: | $(INSTALLED)
	$(MAKE) -j2 $(LIMITS) $(INSPECTED)
	$(PNN) report $(CONFIG)

# The same chain with two signal parameters: the X -> Y H toy over an (mX, mY) grid.
demo-2d: | $(INSTALLED)
	$(MAKE) demo CONFIG=configs/demo_2d.yaml

# Under CI=true this includes the jobs on a real one-node Slurm (tests/test_slurm.py).
test: $(INSTALLED)
	$(BIN)/python -m pytest -q

# Only the real-Slurm tests; installs slurm-wlm and munge when missing (needs root and apt-get).
test-slurm: $(INSTALLED)
	PNN_SLURM_INSTALL=1 $(BIN)/python -m pytest -q -m slurm

lint: $(INSTALLED)
	$(BIN)/ruff check pnn tests scripts

data: $(DATA)
ingest: $(EVENTS)
train: $(MODEL)
inspect: $(INSPECTED)
evaluate: $(EVALUATED)
limits: $(LIMITS)
report: $(SUMMARY)
study: $(STUDY)
export: $(EXPORTED)
tune: $(TUNED)

ifneq ($(DATA),)
$(DATA): $(CONFIG) | $(INSTALLED)
	$(PNN) generate $(CONFIG)
endif

$(EVENTS): $(CONFIG) $(DATA) | $(INSTALLED)
	$(PNN) ingest $(CONFIG)

$(MODEL): $(EVENTS) $(CONFIG)
	$(PNN) train $(CONFIG)

# Input diagnostics: distributions (raw and as the fold-0 scaler gives them), correlations.
$(INSPECTED): $(EVENTS) $(MODEL) $(CONFIG)
	$(PNN) inspect $(CONFIG)

$(EVALUATED): $(MODEL) $(EVENTS) $(CONFIG)
	$(PNN) evaluate $(CONFIG)

# One mass hypothesis alone, e.g. make evaluate-750. Its metrics.json is reached only through
# this pattern chain, so make would delete it as an intermediate file afterwards (and report
# would then miss that mass): .PRECIOUS keeps every per-mass output. (.SECONDARY takes no
# patterns and .NOTINTERMEDIATE needs make 4.4.)
# With several parameters, one point by its folder name: make evaluate-point-mX1000_mY300.
evaluate-%: $(RUN)/evaluate/m%/metrics.json ;
evaluate-point-%: $(RUN)/evaluate/%/metrics.json ;
.PRECIOUS: $(RUN)/evaluate/%/metrics.json $(RUN)/limits/%/limits.json

$(RUN)/evaluate/%/metrics.json: $(MODEL) $(EVENTS) $(CONFIG)
	$(PNN) evaluate $(CONFIG) --point $*

# summary.json and report.html: everything the page shows (inputs, model, per-mass outputs,
# limits when they exist)
$(SUMMARY): $(EVALUATED) $(INSPECTED) $(MODEL) $(CONFIG) $(wildcard $(RUN)/evaluate/*/metrics.json) \
		$(wildcard $(RUN)/evaluate/sanity.json) $(wildcard $(LIMITS))
	$(PNN) report $(CONFIG)

# Templates, workspaces and CLs limits of every evaluated mass, then limits.json and the Brazil plot.
$(LIMITS): $(EVALUATED) $(CONFIG)
	$(PNN) limits $(CONFIG)

# One mass alone, e.g. make limits-750 (collect afterwards with make limits)
limits-%: $(RUN)/limits/m%/limits.json ;
limits-point-%: $(RUN)/limits/%/limits.json ;

$(RUN)/limits/%/limits.json: $(RUN)/evaluate/%/metrics.json $(CONFIG)
	$(PNN) limits $(CONFIG) --point $*

# The validation study: baselines, hold-outs, detuning, importance (see README).
$(STUDY): $(MODEL) $(EVENTS) $(CONFIG)
	$(PNN) study all $(CONFIG)
# ONNX models for C++ (ONNX Runtime), written after training
$(EXPORTED): $(MODEL)
	$(PNN) export $(CONFIG)

# Hyperparameter search of the config's tune: section with WORKERS local processes (default:
# tune.workers); a rerun resumes the study. Then: pnn run $(TUNED)
WORKERS ?=
$(TUNED): $(EVENTS) $(CONFIG)
	$(PNN) tune $(CONFIG) $(if $(WORKERS),--workers $(WORKERS))

# Batch jobs for one stage, e.g. make submit STAGE=evaluate SCHEDULER=slurm [ARGS=--dry-run]
STAGE ?= evaluate
SCHEDULER ?= local
submit: | $(INSTALLED)
	$(PNN) submit $(CONFIG) $(STAGE) --scheduler $(SCHEDULER) $(ARGS)

status: | $(INSTALLED)
	$(PNN) status $(CONFIG) $(STAGE)

benchmark: $(INSTALLED)
	$(BIN)/python scripts/benchmark.py

clean:
	rm -rf $(RUN)
