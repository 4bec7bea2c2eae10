# Two commands for a fresh machine: `make run` (the main job) and `make test`.
# Both create .venv with a Python >= 3.12 and install the package first (scripts/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python
SCENARIO ?= lab

.PHONY: venv run test lint bench clean

venv:
	@scripts/bootstrap.sh

run: venv
	$(VENV)/bin/citytwin run $(SCENARIO) --out runs/$(SCENARIO)

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check citytwin tests benchmarks
	$(VENV)/bin/mypy citytwin

bench: venv
	CITYTWIN_EXTRAS=dev,sumo scripts/bootstrap.sh
	$(PY) benchmarks/compare_sumo.py

clean:
	rm -rf runs .pytest_cache
