"""The audit log moved to `server.governance.audit` (hash-chained, forwarded to syslog): every process
must write the one format to the one file, so this module only re-exports it until its importers move."""

from server.governance.audit import AuditLog, read_audit

__all__ = ["AuditLog", "read_audit"]
