# Quickstart on a machine with only python3:  make demo   |   make test
# uv is bootstrapped into .uv/ with pip; everything else comes from uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced-$(UV_VERSION)
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint sync clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) uv.lock pyproject.toml */pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --all-packages --frozen
	touch $(STAMP)

sync: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pitahaya demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The fast lane, for the edit-test loop: no real server processes (e2e), no package index
# (network), no second pass of the registry suite on PostgreSQL + S3 (scale). CI runs `test`.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not e2e and not network and not scale" $(PYTEST_ARGS)

# Style (ruff), the architecture's import contracts (lint-imports) and types (mypy), all
# configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf .pitahaya .pytest_cache
