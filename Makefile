# binance-etl — the commands a newcomer runs. Each target does its own set-up and is idempotent.
SHELL := /bin/bash
UV_VERSION := 0.13.8
BOOT := .local/bootstrap
UV := $(BOOT)/bin/uv
PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: install demo test lint unit integration bench stack stack-down db-start db-stop requirements clean

# After .venv/: the JVM class-data archive that cuts ~5 s from a Spark start (etl/jvmcache.py). A no-op
# (~1 s) while the archive matches the JDK and pyspark; an optimisation, so no reason to fail.
install: .venv/.installed
	@$(PY) -m etl.jvmcache --quiet \
		|| echo "make: continuing without the JVM class-data archive (Spark starts slower)" >&2

$(UV):
	@mkdir -p .local
	python3 -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python python3.11
	@touch $@

requirements: $(UV)  ## re-export requirements.txt from the lock file
	$(UV) export --frozen --no-default-groups --no-hashes --no-emit-project -o requirements.txt --quiet

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy .

unit: install
	$(PY) -m pytest -m "not integration" -q

integration: install
	$(PY) -m pytest -m integration -q

test: install lint  ## everything CI runs: lint, type checks, unit and integration tests
	$(PY) -m pytest -q

demo: install  ## the pipeline end to end on local defaults; `make demo SERVE=1` keeps the dashboard up
	$(PY) scripts/demo.py $(if $(SERVE),--serve)

bench: install  ## benchmarks: print figures and ratios (not timed tests)
	$(PY) -m bench

stack: install  ## the docker-compose stack as plain processes (no Docker needed)
	$(PY) scripts/stack.py up

stack-down: install
	$(PY) scripts/stack.py down

db-start: install
	$(PY) -m binance_etl.localpg start

db-stop: install
	$(PY) -m binance_etl.localpg stop

clean:
	-$(PY) -m binance_etl.localpg stop
	rm -rf .venv .local data
