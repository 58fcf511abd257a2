"""Prometheus scrapes, parsed with `prometheus_client.parser`: samples by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

import requests


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
