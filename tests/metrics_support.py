"""Reading a Prometheus text exposition in the tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, tuple[tuple[str, str], ...]]


def parse_samples(exposition: bytes) -> dict[Sample, float]:
    """Every sample of a rendered exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode("utf-8"))
        for sample in family.samples
    }
