# airhook: the two commands are `make demo` and `make test`; both start from nothing.
# devstack/ (the local Airflow the demo, tests and benchmarks run) is imported from the checkout:
# it is not part of the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYVER := $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
CONSTRAINTS := constraints/constraints-$(PYVER).txt
STAMP := $(VENV)/.installed-$(PYVER)

.PHONY: install test lint demo bench bench-receiver bench-outbound bench-dispatch bench-manage bench-backpressure constraints clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	@test -f $(CONSTRAINTS) || { echo "no $(CONSTRAINTS): airhook pins versions for Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) --no-build-isolation -e '.[test]'
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: $(STAMP)
	$(MAKE) lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m devstack.demo --home .demo --dags dags

bench: $(STAMP)
	PYTHONPATH=. $(PY) bench/core.py

bench-receiver: $(STAMP)
	PYTHONPATH=. $(PY) bench/receiver.py

bench-outbound: $(STAMP)
	PYTHONPATH=. $(PY) bench/outbound.py

bench-dispatch: $(STAMP)
	PYTHONPATH=. $(PY) bench/dispatch.py

bench-manage: $(STAMP)
	PYTHONPATH=. $(PY) bench/manage.py

bench-backpressure: $(STAMP)
	PYTHONPATH=. $(PY) bench/backpressure.py

constraints: $(STAMP)
	$(PY) -m pip freeze --all --exclude-editable | grep -v '^airflow-provider-airhook' > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) build dist *.egg-info plugin/*.egg-info .pytest_cache .ruff_cache .demo
