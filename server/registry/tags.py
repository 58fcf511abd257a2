"""How one of our versions is described in an MLflow Model Registry: the tags of its model version.

MLflow numbers the versions of a registered model 1, 2, 3 in the order they were registered; our
versions have names (`1.2.0-ppocrv4`) that order them and that the repository, the pin, the audit log
and every response use. The link is a tag that `ocr-server models push` sets on the model version:

    ocr.version         our version name; the directory it is synced into. A model version without
                        it is not one of ours and is left alone
    ocr.pipeline        the pipeline it belongs to (a pod syncs only its own, OCR_PIPELINE)
    ocr.version_digest  sha256 of its manifest.json: the synced copy must have exactly this manifest,
                        whose checksums cover every other file (server.governance.verify)
    ocr.signed          "true" when a model.sig travelled with it, then ocr.key_id: the key it names
    card.*              the model card, flattened (card.trained_by, card.evaluation.metrics.cer, ...),
                        so that people can read and search it in MLflow; the manifest holds the card
                        itself, and it is signed there

So MLflow version 7 tagged `ocr.version=2.1.0-ppocrv4` is served, pinned and audited as 2.1.0-ppocrv4;
the registry's number is kept beside it in the sync's status and the audit log.
"""

from __future__ import annotations

from typing import Any

from server.repository.card import ModelCard

TAG_VERSION = "ocr.version"
TAG_PIPELINE = "ocr.pipeline"
TAG_DIGEST = "ocr.version_digest"
TAG_SIGNED = "ocr.signed"
TAG_KEY_ID = "ocr.key_id"
CARD_PREFIX = "card."
# The card's numbers; every other card value is text.
_METRICS = ("evaluation", "metrics")


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)
    else:
        out[prefix] = repr(value) if isinstance(value, float) else str(value)


def card_tags(card: ModelCard | None) -> dict[str, str]:
    """The card as `card.*` tags (nothing for no card)."""
    out: dict[str, str] = {}
    if card is not None:
        for key, value in card.to_json().items():
            _flatten(CARD_PREFIX + key, value, out)
    return out


def card_from_tags(tags: dict[str, str]) -> ModelCard | None:
    """The card that `card_tags` wrote (None when there are no `card.*` tags); raises CardError when
    the tags do not make a valid card."""
    data: dict[str, Any] = {}
    for key, value in tags.items():
        if not key.startswith(CARD_PREFIX):
            continue
        path = key[len(CARD_PREFIX):].split(".")
        if tuple(path[:2]) == _METRICS and len(path) > 2:  # a metric's own name may hold dots
            path = [*_METRICS, ".".join(path[2:])]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _number(value) if tuple(path[:2]) == _METRICS else value
    return ModelCard.from_json(data) if data else None


def _number(text: str) -> float | str:
    """A metric's value back as a number; text that is none stays text, for the card to refuse."""
    try:
        return float(text)
    except ValueError:
        return text
