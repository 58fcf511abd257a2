"""Versions from an MLflow Model Registry (`OCR_MODEL_SOURCE=mlflow`): the sync that copies them into
the local repository and turns `@champion` into the pin, and `ocr-server models push`.

One sync process per machine (per pod), started and supervised by the Gunicorn master
(`server.process.sidecar`) as `python -m server.registry`; the workers never talk to the registry:
they follow the repository and the pin, as with any other source of versions. See README, "Models
from an MLflow registry".
"""
