# Every target creates the virtualenv it needs; override PYTHON, VENV, DATASET, DATA_DIR, ARGS.
# PYTHON: the first of python3.12, python3.11, python3.10 that runs (or python3 if it is one of
# those versions); e.g. `make test PYTHON=python3.10` to choose.
SUPPORTED_PYTHONS := python3.12 python3.11 python3.10
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword \
  $(foreach python,$(SUPPORTED_PYTHONS),$(if $(shell $(python) -c '' 2>/dev/null && echo ok),$(python))) \
  $(shell python3 -c 'import sys; print("python3" if (3, 10) <= sys.version_info[:2] <= (3, 12) else "")' 2>/dev/null))
endif
VENV ?= .venv
DATASET ?= ml100k
DATA_DIR ?= ../shared/data
ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv train test benchmark clean

$(STAMP): setup.py
	@test -n "$(PYTHON)" || { echo "error: no python3.12, python3.11 or python3.10 found;" \
	  "run e.g. make PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[serving,plots,test]"
	touch $(STAMP)

venv: $(STAMP)

## train: install, train on $(DATASET) from $(DATA_DIR), export to saved_models/$(DATASET)
train: $(STAMP)
	$(BIN)/python -m keras_autorec.train --dataset=$(DATASET) \
	  $(if $(DATA_DIR),--data_dir=$(DATA_DIR)) --metrics_file=metrics.json $(ARGS)

## test: install and run the test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q tests

## benchmark: parse, training and serving speed (prints tables)
benchmark: $(STAMP)
	$(BIN)/python benchmarks/parse_speed.py
	$(BIN)/python benchmarks/train_speed.py --shapes ml1m ml10m
	$(BIN)/python benchmarks/serving_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
