"""Gunicorn configuration: everything lives in `server/process/gunicorn_config.py`, built from OCR_* variables.

Run with `gunicorn -c gunicorn.conf.py` (what the Docker image does) or `ocr-server serve`.
"""

from server.process.gunicorn_config import *  # noqa: F401,F403
