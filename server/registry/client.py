"""The MLflow Model Registry, as the sync and `models push` need it, through MLflow's own client.

`mlflow-skinny` is an optional extra (`pip install 'ocr-server[mlflow]'`): it is imported here, when
a registry is first used, never by the server's workers nor by the Gunicorn master. Every MLflow
failure, a registry that cannot be reached included, comes out as `RegistryError` with MLflow's
message, so callers handle one exception.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from server.registry.tags import TAG_VERSION

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Where a version's files live inside the MLflow run that `models push` logs them in.
ARTIFACT_PATH = "model"
READY = "READY"  # MLflow's status of a model version whose registration has finished


class RegistryError(RuntimeError):
    """The registry could not be asked, or refused or failed what was asked; the message says which."""


def redact(uri: str) -> str:
    """`uri` without the password of its userinfo (for logs, status files and the audit log)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def limit_http_retries(timeout_s: int) -> None:
    """Make each MLflow HTTP request fail after `timeout_s`, without MLflow's own retries (by default
    7, backing off for minutes): the sync retries on its own schedule and reports meanwhile. MLflow
    reads these variables at each request; a value set by the operator is kept."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True)
class RegistryVersion:
    """One model version as the registry lists it."""

    number: str  # MLflow's version number ("1", "2", ...)
    status: str  # READY, PENDING_REGISTRATION or FAILED_REGISTRATION
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def name(self) -> str | None:
        """Our version name (the `ocr.version` tag), if it is one of ours."""
        return self.tags.get(TAG_VERSION)


def _client_class() -> type["MlflowClient"]:
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise RegistryError("the MLflow client is not installed: pip install 'ocr-server[mlflow]' "
                            "(mlflow-skinny)") from exc
    return MlflowClient


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


class MlflowRegistry:
    """The versions and aliases of one registered model in one MLflow tracking server."""

    def __init__(self, tracking_uri: str, model: str) -> None:
        self.tracking_uri = tracking_uri
        self.model = model
        self._client = _client_class()(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _error(self, what: str, exc: BaseException) -> RegistryError:
        """`exc` as a RegistryError; MLflow's messages quote the URL, so its password is taken out."""
        message = str(exc)
        password = urlsplit(self.tracking_uri).password
        if password:
            message = message.replace(password, "***")
        return RegistryError(f"{what}: {message}")

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # MLflow raises MlflowException, and requests' errors from artifact stores
            raise self._error(what, exc) from exc

    def _pages(self) -> Iterator[Any]:
        token = None
        while True:
            page = self._call("list versions", self._client.search_model_versions,
                              filter_string=f"name='{self.model}'", max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def versions(self) -> list[RegistryVersion]:
        """Every version of the model, oldest (lowest number) first."""
        found = [RegistryVersion(str(v.version), str(v.status), dict(v.tags or {}), v.run_id) for v in self._pages()]
        return sorted(found, key=lambda v: int(v.number))

    def aliases(self) -> dict[str, str]:
        """Alias -> version number (`{"champion": "3"}`)."""
        try:
            model = self._client.get_registered_model(self.model)
        except Exception as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"registered model {self.model!r} does not exist in {redact(self.tracking_uri)} "
                                    "(ocr-server models push creates it)") from exc
            raise self._error("read the registered model", exc) from exc
        return {str(alias): str(number) for alias, number in (model.aliases or {}).items()}

    def download(self, version: RegistryVersion, dest: Path) -> None:
        """Put the files of `version` into the existing, empty directory `dest`."""
        import mlflow.artifacts

        uri = self._call("download", self._client.get_model_version_download_uri, self.model, version.number)
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
        try:
            local = Path(self._call("download", mlflow.artifacts.download_artifacts, artifact_uri=uri,
                                    dst_path=str(scratch), tracking_uri=self.tracking_uri))
            if not local.is_dir():
                raise RegistryError(f"download: MLflow version {version.number}'s artifacts at {uri} are not a folder")
            for entry in local.iterdir():
                os.rename(entry, dest / entry.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def register(self, version_dir: Path, tags: dict[str, str], experiment: str, run_name: str) -> RegistryVersion:
        """Log `version_dir` as the artifacts of a new run of `experiment` and register them as a new
        version of the model (created if needed) with `tags`; returns it once MLflow says READY."""
        client = self._client
        found = self._call("find the experiment", client.get_experiment_by_name, experiment)
        experiment_id = found.experiment_id if found else self._call("create the experiment",
                                                                     client.create_experiment, experiment)
        run = self._call("create a run", client.create_run, experiment_id, run_name=run_name,
                         tags={k: v for k, v in tags.items() if not k.startswith("card.")})
        run_id = run.info.run_id
        try:
            self._call("upload the files", client.log_artifacts, run_id, str(version_dir), artifact_path=ARTIFACT_PATH)
        except RegistryError:
            self._call("mark the run failed", client.set_terminated, run_id, status="FAILED")
            raise
        self._call("finish the run", client.set_terminated, run_id)
        try:
            client.create_registered_model(self.model)
        except Exception as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise self._error(f"create the registered model {self.model!r}", exc) from exc
        created = self._call("register the version", client.create_model_version, self.model,
                             source=f"runs:/{run_id}/{ARTIFACT_PATH}", run_id=run_id, tags=tags)
        if str(created.status) != READY:
            raise RegistryError(f"MLflow version {created.version} is {created.status}, not {READY}")
        return RegistryVersion(str(created.version), str(created.status), dict(created.tags or tags), run_id)
