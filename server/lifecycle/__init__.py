"""The model lifecycle: which version each worker serves, and how it gets there (see README,
"Architecture"). Other layers use the names exported here."""

from server.lifecycle.ab_report import markdown as report_markdown
from server.lifecycle.commands import Refused
from server.lifecycle.config import LifecycleConfig
from server.lifecycle.loader import LoadedModel
from server.lifecycle.manager import NotReadyError
from server.lifecycle.rollout import Rollout
from server.lifecycle.service import Lifecycle
from server.lifecycle.states import VersionState

__all__ = ["Lifecycle", "LifecycleConfig", "LoadedModel", "NotReadyError", "Refused", "Rollout", "VersionState",
           "report_markdown"]
