from __future__ import annotations

import threading

import pytest
from metrics_support import Sample, parse_samples
from prometheus_client.parser import text_string_to_metric_families

from detector.ops.metrics import OTHER, LabelCap, Metrics

NS = "drift_detector_"


def _samples(metrics: Metrics) -> dict[Sample, float]:
    return parse_samples(metrics.render())


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return _samples(metrics)[(NS + name, tuple(sorted(labels.items())))]


class TestMetrics:
    def test_render_parses_and_has_every_metric(self) -> None:
        """A fresh registry renders parseable text with all the sidecar's metric families."""
        metrics = Metrics(process_metrics=False)
        text = metrics.render().decode("utf-8")
        names = {family.name for family in text_string_to_metric_families(text)}
        expected = {
            "events_consumed",
            "events_processed",
            "consumer_lag",
            "processing_latency_seconds",
            "active_detectors",
            "alerts_emitted",
            "dead_letters",
            "checkpoint_duration_seconds",
            "restore_duration_seconds",
            "limit_rejections",
            "expired_detectors",
        }
        assert {NS + name for name in expected} <= names

    def test_observe_batch_counts_consumed_processed_and_latency(self) -> None:
        """
        observe_batch counts consumed records by topic and partition, processed events by
        model, and makes one latency observation per call.
        """
        metrics = Metrics(process_metrics=False)
        metrics.observe_batch(
            "predictions", 0, consumed=10, processed={"churn": 7, "fraud": 2}, seconds=0.02
        )
        metrics.observe_batch("predictions", 0, consumed=5, processed={"churn": 5}, seconds=0.01)
        metrics.observe_batch("predictions", 1, consumed=1, processed={}, seconds=0.001)

        assert _value(metrics, "events_consumed_total", topic="predictions", partition="0") == 15
        assert _value(metrics, "events_consumed_total", topic="predictions", partition="1") == 1
        assert _value(metrics, "events_processed_total", model="churn") == 12
        assert _value(metrics, "events_processed_total", model="fraud") == 2
        assert _value(metrics, "processing_latency_seconds_count") == 3
        assert _value(metrics, "processing_latency_seconds_sum") == pytest.approx(0.031)

    def test_counters_and_gauges_reflect_calls(self) -> None:
        """Each runner-facing method moves exactly its metric."""
        metrics = Metrics(process_metrics=False)
        metrics.alert("churn", "feature")
        metrics.alert("churn", "feature")
        metrics.alert("churn", "prediction")
        metrics.dead_letter("invalid_json")
        metrics.dead_letter("invalid_json", 2)
        metrics.set_lag("predictions", 3, 42)
        metrics.set_lag("predictions", 3, 40)
        metrics.set_active_detectors(17)
        metrics.checkpoint(0.2)
        metrics.restore(1.5)
        metrics.restore(0.5)
        metrics.limit_rejection("max_models")
        metrics.limit_rejection("max_features", 3)
        metrics.expired(4)

        assert _value(metrics, "alerts_emitted_total", model="churn", drift_type="feature") == 2
        assert _value(metrics, "alerts_emitted_total", model="churn", drift_type="prediction") == 1
        assert _value(metrics, "dead_letters_total", reason="invalid_json") == 3
        assert _value(metrics, "consumer_lag", topic="predictions", partition="3") == 40
        assert _value(metrics, "active_detectors") == 17
        assert _value(metrics, "checkpoint_duration_seconds_count") == 1
        assert _value(metrics, "restore_duration_seconds_count") == 2
        assert _value(metrics, "restore_duration_seconds_sum") == pytest.approx(2.0)
        assert _value(metrics, "limit_rejections_total", limit="max_models") == 1
        assert _value(metrics, "limit_rejections_total", limit="max_features") == 3
        assert _value(metrics, "expired_detectors_total") == 4

    def test_forget_partition_drops_its_lag(self) -> None:
        """A revoked partition's lag series disappears; forgetting twice is harmless."""
        metrics = Metrics(process_metrics=False)
        metrics.set_lag("predictions", 0, 5)
        metrics.set_lag("predictions", 1, 6)
        metrics.forget_partition("predictions", 0)
        metrics.forget_partition("predictions", 0)
        lag = {k: v for k, v in _samples(metrics).items() if k[0] == NS + "consumer_lag"}
        assert lag == {(NS + "consumer_lag", (("partition", "1"), ("topic", "predictions"))): 6}

    def test_model_label_values_are_capped(self) -> None:
        """
        Past max_models distinct model names, new names are counted under ``__other__``;
        names already seen keep their own series.
        """
        metrics = Metrics(max_models=2, process_metrics=False)
        metrics.processed({"a": 1, "b": 1})
        metrics.processed({"c": 1, "d": 2, "a": 1})
        metrics.alert("e", "feature")
        processed = {
            dict(labels)["model"]: value
            for (name, labels), value in _samples(metrics).items()
            if name == NS + "events_processed_total"
        }
        assert processed == {"a": 2, "b": 1, OTHER: 3}
        assert _value(metrics, "alerts_emitted_total", model=OTHER, drift_type="feature") == 1

    def test_registries_are_independent(self) -> None:
        """Two Metrics objects do not share series (each test, each instance, its own)."""
        first, second = Metrics(process_metrics=False), Metrics(process_metrics=False)
        first.expired()
        assert _value(first, "expired_detectors_total") == 1
        assert _value(second, "expired_detectors_total") == 0

    def test_process_metrics_are_included_by_default(self) -> None:
        """The default registry also renders the standard process/Python collectors."""
        text = Metrics().render().decode("utf-8")
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "python_info" in names


class TestLabelCap:
    def test_admits_first_values_then_folds(self) -> None:
        """The first ``limit`` distinct values pass; later new values become ``__other__``."""
        cap = LabelCap(2)
        folded = [cap(v) for v in ["x", "y", "x", "z", "y", "w"]]
        assert folded == ["x", "y", "x", OTHER, "y", OTHER]
        assert len(cap) == 2

    def test_is_thread_safe(self) -> None:
        """Concurrent callers never admit more than ``limit`` distinct values."""
        cap = LabelCap(10)
        seen: set[str] = set()
        lock = threading.Lock()

        def work(offset: int) -> None:
            for i in range(200):
                value = cap(f"m{(i * 7 + offset) % 50}")
                with lock:
                    seen.add(value)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen - {OTHER}) == 10
        assert len(cap) == 10

    def test_limit_must_be_positive(self) -> None:
        """A cap of zero is a programming error."""
        with pytest.raises(ValueError, match="limit"):
            LabelCap(0)
