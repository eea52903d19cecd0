# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv themselves.
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test lint typecheck unit system-packages bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

# Debian packages the tests drive: docker-compose validates docker-compose.yml; Chromium opens the dashboard.
system-packages:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing Debian's docker-compose (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose; }
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

demo: $(VENV)/.installed
	$(VENV)/bin/milepost demo

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

unit: $(VENV)/.installed-dev system-packages
	$(VENV)/bin/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) milepost-data .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (not tests): `make bench` runs them all, `make bench-<name>` one of them.
# BENCH_SIZE=quick takes under 2 minutes; full (the figures of record) under 20.
BENCH_SIZE ?= full
BENCHMARKS := ingest correlator alerts simulator dashboard
.PHONY: $(addprefix bench-,$(BENCHMARKS))

bench: $(addprefix bench-,$(BENCHMARKS))

bench-ingest: $(VENV)/.installed-dev
	$(PY) -m bench.ingest --size $(BENCH_SIZE)

bench-correlator: $(VENV)/.installed-dev
	$(PY) -m bench.correlator --size $(BENCH_SIZE)

bench-alerts: $(VENV)/.installed-dev
	$(PY) -m bench.alerts --size $(BENCH_SIZE)

bench-simulator: $(VENV)/.installed-dev
	$(PY) -m bench.simulator --size $(BENCH_SIZE)

bench-dashboard: $(VENV)/.installed-dev system-packages
	$(PY) -m bench.dashboard --size $(BENCH_SIZE)
