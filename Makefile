# Every target sets up what it needs: a fresh machine only needs Python 3.11 and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when pyproject.toml changes, or when a folder gains or loses its __init__.py: the editable
# install records which packages are namespace packages (whose __init__.py it would then never run).
INSTALL_KEY := $(shell { cat pyproject.toml; find gbifdl_assets -name __init__.py | sort; } | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(INSTALL_KEY)
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
PYTEST_ARGS ?=
# Two workers, a test file per worker at a time (module fixtures stay shared): the e2e and reliability
# tests mostly wait on Dagster processes, so the suite takes about half as long on two cores.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: demo test lint dev bench soak clean venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither" || true
	@set -o pipefail; $(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

# The framework tests train tiny models with real PyTorch (the CPU wheel) and TensorFlow; only the
# test target pulls them in, so `make demo` stays light.
FRAMEWORKS := $(VENV)/.frameworks-$(INSTALL_KEY)
$(FRAMEWORKS): $(STAMP)
	@set -o pipefail; $(BIN)/python -m pip install -q -e '.[dev,torch,tensorflow]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@rm -f $(VENV)/.frameworks-*; touch $(FRAMEWORKS)

# ./dagster.yaml configures the embedded instance: it is copied into DAGSTER_HOME whenever the two
# differ (the previous copy kept as dagster.yaml.bak), so an edit reaches the instance at the next run.
define sync_instance_config
	@mkdir -p $(DAGSTER_HOME)
	@if ! cmp -s dagster.yaml $(DAGSTER_HOME)/dagster.yaml; then \
	  if [ -f $(DAGSTER_HOME)/dagster.yaml ]; then \
	    cp $(DAGSTER_HOME)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml.bak; \
	    echo "$(DAGSTER_HOME)/dagster.yaml updated from ./dagster.yaml (the previous copy is dagster.yaml.bak)"; \
	  fi; \
	  cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml; \
	fi
endef

## make demo: materialize the example training set end to end (offline sandbox when GBIF is unreachable)
demo: $(STAMP)
	$(sync_instance_config)
	$(BIN)/gbifdl demo

## make test: the whole suite against real PostgreSQL, an S3 endpoint and the sandbox, started by the harness
test: $(STAMP) $(FRAMEWORKS)
	$(BIN)/ruff check gbifdl_assets gbifdl_assets_tests
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gbifdl_assets gbifdl_assets_tests
	$(BIN)/ruff format --check gbifdl_assets gbifdl_assets_tests

## make dev: the Dagster UI, daemon and code server on the embedded instance
# GBIF, or (unreachable, or GBIFDL_OFFLINE=1) the offline sandbox in the background on 127.0.0.1:8765,
# reused when it already runs: `gbifdl endpoint` decides, as the demo and the CLI do, and hands the
# code location GBIF_API_URL (and the sandbox's test account) through an env file.
ENDPOINT_ENV := $(DAGSTER_HOME)/gbif-endpoint.env
dev: $(STAMP)
	$(sync_instance_config)
	@$(BIN)/gbifdl endpoint --env-file $(ENDPOINT_ENV) --sandbox-log $(DAGSTER_HOME)/gbif-sandbox.log >/dev/null
	@$(BIN)/dagster instance concurrency set gbif_download 3 >/dev/null
	set -a && . $(ENDPOINT_ENV) && set +a && exec $(BIN)/dagster dev -w workspace.yaml

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,bench]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(BIN)/python -m pytest -o python_files="bench_*.py" gbifdl_assets_tests/bench -q -s -p no:cacheprovider

## make soak: the long reliability runs (load runs of 10,000, 100,000 and 1,000,000 images -> LOAD_REPORT.md, daemon + PostgreSQL restart)
soak: $(STAMP)
	GBIFDL_SOAK=1 $(BIN)/python -m pytest -m soak gbifdl_assets_tests/reliability -q -s -p no:cacheprovider $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .dagster_home .pytest_cache .ruff_cache
