# The README's commands. Everything the project needs is installed from here (PyPI through uv).
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck pytest bench clean

$(BIN)/envcore: pyproject.toml uv.lock $(wildcard backends/*/pyproject.toml storage/*/pyproject.toml integrations/*/pyproject.toml)
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(UV) sync --all-packages --locked --quiet
	@touch $@

# Azurite (the Azure Blob emulator the storage/azure tests start) comes from npm, pinned by its lockfile.
AZURITE := storage/azure/tests/node_modules/.bin/azurite-blob
$(AZURITE): storage/azure/tests/package.json storage/azure/tests/package-lock.json
	cd storage/azure/tests && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(BIN)/envcore $(AZURITE)

demo: $(BIN)/envcore
	$(BIN)/python -m envcore.demo

# Ratios against bare py-rattler, uv, cp and python, measured side by side (bench/README.md).
bench: setup
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# envcore, then each backend's and store's distribution package, with the same strict settings
typecheck: setup
	$(BIN)/mypy
	$(BIN)/mypy $(wildcard backends/*/envcore_* storage/*/envcore_*)

# The suite runs in PYTEST_WORKERS processes (pytest-xdist; 0 runs it in this one), each test file in one
# worker (its module fixtures built once): about 20 minutes on 2 cores with 2, against 25 or more in one process.
PYTEST_WORKERS ?= 2

# pytest exits 5 when it collects nothing: a run that tests nothing is a failure here.
pytest: setup
	@$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$code

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
