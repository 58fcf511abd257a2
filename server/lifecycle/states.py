"""The states of a model version: one vocabulary for the source, the verdicts, the admin view and metrics.

A version's state is always a `VersionState` plus a human `reason` (`Status`); the reason says why a
version is pending, rejected or being retried, and is empty otherwise. Each piece of the lifecycle can
only see part of the picture, so each decides the states it can know and the admin view
(`server.lifecycle.status`) combines them, first match wins:

    worker board (what each live worker does)   SERVING, LOADING
    repository scan (`server.lifecycle.source`) REJECTED (invalid on disk)
    verdict (`server.lifecycle.verdicts`)       REJECTED (failed a load or the gate)
    repository scan                             PENDING (files still changing)
    verdict                                     READY (approved), RETIRED once it has served
    worker board, local failures               RETRYING
    otherwise                                   NEW

Transitions (machine-wide; a change of the version's files starts it again at PENDING or NEW):

    PENDING  --files settle, whole-->  NEW         PENDING --settled, still wrong--> REJECTED
    NEW      --a worker tries it-->    LOADING
    LOADING  --passes the gate-->      SERVING     (READY where it was approved but another one serves)
    LOADING  --fails: the version-->   REJECTED    (verification, probe, load, warm-up or the gate)
    LOADING  --fails: not the version-> RETRYING   (e.g. an unreadable golden set) --backoff--> LOADING
    SERVING  --replaced-->             RETIRED     --pinned or rolled back to--> LOADING
    SERVING  --fails the re-check-->   REJECTED    (its files on disk changed since approval, or its
                                                    signature no longer verifies: every worker moves to
                                                    the best other eligible version; with none, it stays
                                                    SERVING, with the rejection as its reason, from the
                                                    copy verified when it was loaded)
    READY    --preferred again-->      LOADING
    REJECTED --its files change-->     PENDING / NEW

REJECTED is sticky: it is recorded once for the version's fingerprint and every worker follows it. A
failure that holds for every worker alike (a signature that does not verify, at a load or at the
re-check) also replaces a standing approval of those files.

The reason of a rejection comes with a short code (the verdict's `result`, a metric label): from the
scan `no_manifest`, `bad_manifest`, `version_mismatch`, `verify_failed`, `outside_repository`,
`not_a_directory`; from a load `load_error`, `crashed`, `gate_rejected`; from the signature check
(`server.governance.verify.SignatureProblem`) `unsigned`, `bad_signature`, `revoked_key`,
`revoked_version`, `untrusted_key`, `wrong_pipeline`, `incomplete`, `tampered` - the last also from
the re-check when a file no longer matches the manifest the version was approved with.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class VersionState(str, Enum):
    PENDING = "pending"  # files still changing (a copy in progress) or not yet whole
    NEW = "new"  # whole on disk (manifest and checksums verify), not judged yet
    LOADING = "loading"  # a worker is probing, loading, warming up or gating it
    RETRYING = "retrying"  # a load failed for a reason outside the version; tried again with backoff
    READY = "ready"  # approved (verified, warmed up, passed the gate), not served yet
    SERVING = "serving"  # a live worker serves it (with a reason only if it was rejected since)
    RETIRED = "retired"  # approved and served before, replaced since
    REJECTED = "rejected"  # failed verification, probe, load or the gate; until its files change


@dataclass(frozen=True)
class Status:
    state: VersionState
    reason: str = ""
