# Everything a new machine needs: `make demo` runs the quickstart study, `make test` the whole suite.
# Both build .venv from nothing with pip (exact versions from constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test test-fast lint demo bench chromium clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Chromium is only for the MLflow UI test; that test skips with the reason if it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1) \
	  || echo "chromium not installed: the MLflow UI browser test will skip"; }

test: venv chromium
	$(BIN)/python -m pytest -q tests

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: venv
	$(BIN)/ruff check trainer tuner tests benchmarks
	$(BIN)/mypy

demo: venv
	$(BIN)/tune run search_spaces/quickstart.yaml

bench: venv
	for b in trainer data tuner tracking; do $(BIN)/python -m benchmarks.bench_$$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
