# The two commands a newcomer needs:
#   make serve   set up .venv, install the default model, serve OCR on http://localhost:8000
#   make test    set up .venv, install the default model, run the test suite (make test-fast: a quick tier)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/sroie-dev

.PHONY: setup models serve test test-fast clean interop-setup bench-setup bench-paddleocr-setup bench-parity bench-pipeline bench-server bench-memory bench

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

test: models interop-setup
	$(BIN)/python -m pytest -q

# The inner loop: the unit tests and one real server (README, "Development"); `make test` runs all.
FAST_TESTS := tests/test_architecture.py tests/test_controller.py tests/test_lifecycle.py tests/test_config.py \
	tests/test_decode.py tests/test_pipeline_units.py tests/test_textmetrics.py tests/test_ocr_api.py
test-fast: models
	$(BIN)/python -m pytest -q $(FAST_TESTS)

# The OpenSSF model-signing CLI in a venv of its own, for the signature interoperability tests.
MODEL_SIGNING_VENV ?= .venv-modelsigning
MODEL_SIGNING_STAMP := $(MODEL_SIGNING_VENV)/.installed

$(MODEL_SIGNING_STAMP): tests/requirements-model-signing.txt
	$(PYTHON) -m venv $(MODEL_SIGNING_VENV)
	$(MODEL_SIGNING_VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements-model-signing.txt
	touch $(MODEL_SIGNING_STAMP)

interop-setup: $(MODEL_SIGNING_STAMP)

clean:
	rm -rf $(VENV) $(MODEL_SIGNING_VENV) .pytest_cache

# Benchmarks (bench/README.md). DATA is an SROIE-layout directory; results go to bench/results/.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) bench/requirements.txt bench/requirements-anchors.txt
	$(BIN)/pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r bench/requirements-anchors.txt
	touch $(BENCH_STAMP)

bench-setup: $(BENCH_STAMP)

# PaddleOCR 3.x in a venv of its own (its OpenCV would shadow the server's); bench/README.md.
PADDLEOCR_VENV ?= .venv-paddleocr
PADDLEOCR_STAMP := $(PADDLEOCR_VENV)/.installed

$(PADDLEOCR_STAMP): bench/requirements-paddleocr.txt
	$(PYTHON) -m venv $(PADDLEOCR_VENV)
	$(PADDLEOCR_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements-paddleocr.txt
	touch $(PADDLEOCR_STAMP)

bench-paddleocr-setup: $(PADDLEOCR_STAMP)

bench-parity: bench-setup models
	$(BIN)/python -m bench.parity --data $(DATA)

bench-pipeline: bench-setup models
	$(BIN)/python -m bench.pipeline --data $(DATA)

bench-server: models
	$(BIN)/python -m bench.server --data $(DATA)

bench-memory: models
	$(BIN)/python -m bench.memory --data $(DATA)

bench: bench-parity bench-pipeline bench-server bench-memory
