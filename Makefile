# One target per chore. `make run` and `make test` are the README's two commands:
# both install what they need (system packages via scripts/install-system-deps.sh, Python
# packages into .venv) and are safe to run again.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint typecheck unit bench sysdeps venv clean screenshots

sysdeps:
	bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

run: sysdeps venv
	$(VENV)/bin/peercall $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	bash scripts/run-tests.sh $(PY) $(PYTEST_ARGS)

test: sysdeps venv lint unit

bench: sysdeps venv
	bash scripts/run-bench.sh $(PY)

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
