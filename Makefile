# Every target creates the virtualenv it needs; override PYTHON, VENV, DATASET, DATA_DIR, ARGS.
PYTHON ?= python3.11
VENV ?= .venv
DATASET ?= ml100k
DATA_DIR ?= ../shared/data
ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv train test benchmark clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[serving,plots,test]"
	touch $(STAMP)

venv: $(STAMP)

## train: install, train on $(DATASET) from $(DATA_DIR), export to saved_models/autorec
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
