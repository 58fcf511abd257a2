"""The results a worker served recently, kept so that `POST /v1/feedback` can name them by request id.

Bounded twice, because a worker must not grow with traffic: at most `capacity` requests, and at most
`capacity * CHARS_PER_ENTRY` characters of text (a few multi-page requests must not pin megabytes),
oldest evicted first. Each worker has its own store (Gunicorn workers share no memory), so feedback
that reaches another worker than the one that served the request finds nothing here; the feedback API
then asks for the recognised text instead.

Each (request, image) accepts feedback once: a client retrying a feedback call must not count twice.
A result answered from a PDF's own text layer was not read by the model and takes no feedback.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

# The average characters of text a stored request may use before the oldest are evicted; a receipt
# is ~1-2 thousand characters.
CHARS_PER_ENTRY = 4096


class UnknownRequest(KeyError):
    """The request id is not (or no longer) in this worker's store."""


class AlreadyRecorded(ValueError):
    """Feedback for this request and image was already recorded."""


class ImageIndexError(ValueError):
    """The image index is missing for a multi-image request, or out of range; the message says which."""


@dataclass
class _Entry:
    model_version: str
    texts: tuple[str | None, ...]  # recognised text of each result, in order; None: from a PDF's text layer
    chars: int
    claimed: set[int] = field(default_factory=set)


class RecentResults:
    def __init__(self, capacity: int, chars_per_entry: int = CHARS_PER_ENTRY) -> None:
        self.capacity = capacity
        self.max_chars = capacity * chars_per_entry
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, request_id: str, model_version: str, texts: list[str | None]) -> None:
        """Keep what `request_id` returned; a repeated id (clients may set X-Request-Id) replaces it."""
        if self.capacity == 0:
            return
        entry = _Entry(model_version, tuple(texts), sum(len(text or "") for text in texts))
        with self._lock:
            old = self._entries.pop(request_id, None)
            if old is not None:
                self._chars -= old.chars
            self._entries[request_id] = entry
            self._chars += entry.chars
            while len(self._entries) > self.capacity or (self._chars > self.max_chars and len(self._entries) > 1):
                _, evicted = self._entries.popitem(last=False)
                self._chars -= evicted.chars

    def claim(self, request_id: str, image_index: int | None) -> tuple[str, str]:
        """(model version, recognised text) of one image of `request_id`, marking its feedback as given.

        `image_index` may be omitted only for a single-image request.
        """
        with self._lock:
            entry = self._entries.get(request_id)
            if entry is None:
                raise UnknownRequest(request_id)
            if image_index is None:
                if len(entry.texts) != 1:
                    raise ImageIndexError(
                        f"request {request_id} had {len(entry.texts)} images: give image_index")
                image_index = 0
            if not 0 <= image_index < len(entry.texts):
                raise ImageIndexError(
                    f"image_index {image_index} is out of range: request {request_id} had {len(entry.texts)} image(s)")
            text = entry.texts[image_index]
            if text is None:
                raise ImageIndexError(f"result {image_index} of request {request_id} was read from the PDF's text "
                                      "layer, not by the model: it takes no feedback")
            if image_index in entry.claimed:
                raise AlreadyRecorded(f"feedback for request {request_id} image {image_index} was already recorded")
            entry.claimed.add(image_index)
            return entry.model_version, text
