# d365-anaplan: everything a fresh machine needs is installed by these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13: python3.13 on PATH if it answers, else pyenv's 3.13.x.
PYTHON313 := $(shell if python3.13 -c 'import sys' >/dev/null 2>&1; then echo python3.13; \
	elif command -v pyenv >/dev/null 2>&1 && [ -n "$$(pyenv versions --bare 2>/dev/null | grep '^3\.13' | tail -1)" ]; then \
	echo "env PYENV_VERSION=$$(pyenv versions --bare | grep '^3\.13' | tail -1) python3.13"; fi)

VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
CHECKOV := $(TOOLS)/checkov/bin/checkov
SAM := $(TOOLS)/sam/bin/sam
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv tools config-table lint typecheck unit pytest pytest-devkit cfn statelint checkov sam-validate test demo bench bench-anaplan bench-dynamics bench-e2e clean

help:
	@echo "make demo   - run both flows on local sandboxes (creates the venv first)"
	@echo "make test   - lint, type-check, tests and template checks (creates everything first)"
	@echo "make bench  - benchmarks (figures printed)"

$(PY):
	@if [ -z "$(PYTHON313)" ]; then echo "Python 3.13 not found: install it (e.g. 'pyenv install 3.13') and retry" >&2; exit 1; fi
	$(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(PY) shared/requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# checkov and the SAM CLI pin their own boto3/cfn-lint: each lives in its own venv.
$(CHECKOV): requirements-tools.txt
	@if [ -z "$(PYTHON313)" ]; then echo "Python 3.13 not found" >&2; exit 1; fi
	rm -rf $(TOOLS)/checkov && $(PYTHON313) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet "$$(grep '^checkov==' requirements-tools.txt)"

$(SAM): requirements-tools.txt
	@if [ -z "$(PYTHON313)" ]; then echo "Python 3.13 not found" >&2; exit 1; fi
	rm -rf $(TOOLS)/sam && $(PYTHON313) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/pip install --quiet "$$(grep '^aws-sam-cli==' requirements-tools.txt)"

tools: $(CHECKOV) $(SAM)

# the README's configuration table, from the Field descriptions of shared/d365_anaplan/config/
config-table: venv
	$(VENV)/bin/python -m devkit.config_table

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# strict on the layer and the handlers (each handler is its own module named app); the dev kit in default mode
typecheck: venv
	$(VENV)/bin/mypy
	@for f in functions/*/app.py; do $(VENV)/bin/mypy --strict --follow-imports=silent $$f || exit 1; done
	$(VENV)/bin/mypy --follow-imports=silent --ignore-missing-imports devkit

# the deployed code's tests; the dev kit's own (engine, sandboxes, CLI) run in pytest-devkit
pytest: venv
	$(VENV)/bin/pytest -q -n 2 --dist loadfile --ignore=tests/devkit --ignore=tests/cli

pytest-devkit: venv
	$(VENV)/bin/pytest -q -n 2 --dist loadfile tests/devkit tests/cli

cfn: venv
	$(VENV)/bin/cfn-lint template.yaml

statelint: venv
	@for f in statemachine/*.asl.json; do echo "statelint $$f"; $(VENV)/bin/python -m devkit.asl_lint --ignore=URI $$f || exit 1; done

checkov: $(CHECKOV)
	$(CHECKOV) -f template.yaml --framework cloudformation --compact --quiet --skip-download

sam-validate: $(SAM)
	$(SAM) validate --lint --region $(AWS_DEFAULT_REGION) -t template.yaml

test: lint typecheck cfn statelint checkov sam-validate pytest pytest-devkit

demo: venv
	$(VENV)/bin/d365-anaplan demo

bench: bench-anaplan bench-dynamics bench-e2e

bench-anaplan: venv
	$(VENV)/bin/python -m devkit.bench anaplan

bench-dynamics: venv
	$(VENV)/bin/python -m devkit.bench dynamics

# the actuals flow end to end for 1,000,000 GL lines on the local engine (a few minutes; not part of `make test`)
bench-e2e: venv
	$(VENV)/bin/python -m devkit.bench e2e

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .pytest_cache .ruff_cache .aws-sam
