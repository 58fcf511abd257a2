"""The results the server answered recently, kept so that `POST /v1/feedback` can name them by request id.

One SQLite database in the state directory, shared by every worker of the machine and kept across
restarts: Gunicorn workers share no memory, and a client's feedback call is answered by whichever
worker its connection reaches, often not the one that read the image. WAL mode lets the workers write
their results while others read; each (request, image) is claimed by an insert that the database
refuses a second time, so a retried feedback call counts once whichever workers answer the two.

Bounded twice, because the file must not grow with traffic: at most `capacity` requests, and at most
`capacity * CHARS_PER_ENTRY` characters of text (a few multi-page requests must not pin megabytes),
oldest evicted first. A result answered from a PDF's own text layer was not read by the model and
takes no feedback.

A store that cannot be written (state directory full or read-only) must not fail the OCR request
that was answered: `remember` logs it (once, until the store works again) and goes on, and `claim`
raises `StoreUnavailable` for the feedback call to answer 503.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from server.storage.sqlite import Database

log = logging.getLogger(__name__)

# The average characters of text a stored request may use before the oldest are evicted; a receipt
# is ~1-2 thousand characters.
CHARS_PER_ENTRY = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    model_version TEXT NOT NULL,
    texts TEXT NOT NULL,
    chars INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    seq INTEGER NOT NULL REFERENCES results(seq) ON DELETE CASCADE,
    image_index INTEGER NOT NULL,
    PRIMARY KEY (seq, image_index)
);
"""


class UnknownRequest(KeyError):
    """The request id is not (or no longer) among the recent results."""


class AlreadyRecorded(ValueError):
    """Feedback for this request and image was already recorded."""


class ImageIndexError(ValueError):
    """The image index is missing for a multi-image request, or out of range; the message says which."""


class StoreUnavailable(RuntimeError):
    """The database cannot be opened, read or written; the message says why."""


class RecentResults:
    def __init__(self, path: Path, capacity: int, chars_per_entry: int = CHARS_PER_ENTRY) -> None:
        self.path = path
        self.capacity = capacity
        self.max_chars = capacity * chars_per_entry
        self._db = Database(path, _SCHEMA)
        self._failing = False  # the last `remember` failed (logged once per streak, not per request)

    def _connection(self) -> sqlite3.Connection:
        try:
            return self._db.connection()
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"the recent results in {self.path} cannot be opened: {exc}") from exc

    def __len__(self) -> int:
        try:
            return int(self._connection().execute("SELECT COUNT(*) FROM results").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the recent results in {self.path} cannot be read: {exc}") from exc

    def remember(self, request_id: str, model_version: str, texts: list[str | None]) -> bool:
        """Keep what `request_id` returned (False: it could not be kept, and the log says why); a repeated
        id (clients may set X-Request-Id) replaces it."""
        if self.capacity == 0:
            return False
        chars = sum(len(text or "") for text in texts)
        try:
            self._connection()
            with self._db.transaction() as connection:
                connection.execute("DELETE FROM results WHERE request_id = ?", (request_id,))
                connection.execute(
                    "INSERT INTO results (request_id, model_version, texts, chars) VALUES (?, ?, ?, ?)",
                    (request_id, model_version, json.dumps(texts), chars))
                self._evict(connection)
        except (StoreUnavailable, sqlite3.Error) as exc:
            if not self._failing:
                log.error("feedback by request id is unavailable until %s can be written again: %s", self.path, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("%s is written again: feedback by request id works", self.path)
        self._failing = False
        return True

    def _evict(self, connection: sqlite3.Connection) -> None:
        """Drop the oldest past either bound; the newest result stays even if it alone is over the characters."""
        connection.execute(
            "DELETE FROM results WHERE seq NOT IN (SELECT seq FROM results ORDER BY seq DESC LIMIT ?)", (self.capacity,))
        # `seq` of the newest result whose running total (newest first) is past the bound, if any
        row = connection.execute(
            "SELECT seq FROM (SELECT seq, SUM(chars) OVER (ORDER BY seq DESC) AS running FROM results) "
            "WHERE running > ? ORDER BY seq DESC LIMIT 1", (self.max_chars,)).fetchone()
        if row is None:
            return
        newest = connection.execute("SELECT MAX(seq) FROM results").fetchone()[0]
        connection.execute("DELETE FROM results WHERE seq < ?" if row[0] == newest else "DELETE FROM results WHERE seq <= ?",
                           (row[0],))

    def claim(self, request_id: str, image_index: int | None) -> tuple[str, str]:
        """(model version, recognised text) of one image of `request_id`, marking its feedback as given.

        `image_index` may be omitted only for a single-image request.
        """
        self._connection()
        try:
            with self._db.transaction() as connection:
                row = connection.execute(
                    "SELECT seq, model_version, texts FROM results WHERE request_id = ?", (request_id,)).fetchone()
                if row is None:
                    raise UnknownRequest(request_id)
                seq, version, texts = row[0], row[1], json.loads(row[2])
                index = _image_index(request_id, texts, image_index)
                try:
                    connection.execute("INSERT INTO claims (seq, image_index) VALUES (?, ?)", (seq, index))
                except sqlite3.IntegrityError:
                    raise AlreadyRecorded(
                        f"feedback for request {request_id} image {index} was already recorded") from None
                return version, texts[index]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the recent results in {self.path} cannot be updated: {exc}") from exc


def _image_index(request_id: str, texts: list[str | None], image_index: int | None) -> int:
    if image_index is None:
        if len(texts) != 1:
            raise ImageIndexError(f"request {request_id} had {len(texts)} images: give image_index")
        image_index = 0
    if not 0 <= image_index < len(texts):
        raise ImageIndexError(
            f"image_index {image_index} is out of range: request {request_id} had {len(texts)} image(s)")
    if texts[image_index] is None:
        raise ImageIndexError(f"result {image_index} of request {request_id} was read from the PDF's text "
                              "layer, not by the model: it takes no feedback")
    return image_index
