"""Prometheus scrapes, parsed with `prometheus_client.parser`: samples by name and labels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from tests.support.load import Outcome


@dataclass
class Scrape:
    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def parse(cls, text: str) -> "Scrape":
        from prometheus_client.parser import text_string_to_metric_families

        return cls([(s.name, dict(s.labels), s.value)
                    for family in text_string_to_metric_families(text) for s in family.samples])

    def select(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples called `name` whose labels include `labels`."""
        return [(have, value) for sample, have, value in self.samples
                if sample == name and all(have.get(k) == v for k, v in labels.items())]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the matching samples (0 when there are none, as Prometheus would read an absent counter)."""
        return sum(value for _, value in self.select(name, **labels))


def scrape(url: str) -> Scrape:
    response = requests.get(url, timeout=60)
    response.raise_for_status()
    return Scrape.parse(response.text)


Gap = dict[tuple[str, str], tuple[int, float]]  # (status, model version) -> (answered, counted)


def uncounted_answers(metrics: Scrape, outcomes: list["Outcome"]) -> tuple[Gap, float]:
    """Compare `ocr_requests_total` with what clients were answered, by (status, model version): the
    keys with fewer requests counted than answered, and how many more were counted
    than answered in all (requests a killed worker counted but could not send)."""
    counted = {(labels["status"], labels["model_version"]): value
               for labels, value in metrics.select("ocr_requests_total")}
    answered = Counter((str(o.status), o.version or "none") for o in outcomes if o.status is not None)
    short = {key: (count, counted.get(key, 0.0)) for key, count in answered.items() if counted.get(key, 0.0) < count}
    return short, sum(counted.values()) - sum(answered.values())
