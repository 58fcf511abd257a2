# The two commands a newcomer needs:
#   make serve   set up .venv, install the default model, serve OCR on http://localhost:8000
#   make test    set up .venv, install the default model, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/sroie-dev

.PHONY: setup models serve test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/ocr-server models install-default
	$(BIN)/ocr-server models install-golden

serve: models
	$(BIN)/ocr-server serve

test: models
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
