"""`detector audit export`'s pure parts on a synthetic log: the gaps in monitoring, the
records selected, and the report's HTML (sections, escaping, self-contained)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from vendors import amount_alert, country_alert

from detector.audit.chain import Chain, Head, digest, verify
from detector.audit.export import (
    Period,
    gaps,
    iso,
    print_pdf,
    render,
    select,
    verification_doc,
)
from detector.audit.history import history_of
from detector.audit.review import CHAIN
from detector.errors import UsageError

T0 = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)
ODD = "<b>m&'\"</b>"


def _at(seconds: float) -> int:
    return MS + int(seconds * 1000)


def _assigned(instance: str, partition: int) -> dict[str, Any]:
    return {
        "instance": instance,
        "partition": partition,
        "committed_offset": None,
        "reason": "assigned",
        "config_hash": "c0ffee" * 10 + "abcd",
        "config": {"detection": {"reference_size": 512}},
    }


def _released(partition: int, reason: str) -> dict[str, Any]:
    return {"partition": partition, "next_offset": 5, "reason": reason, "events": 5}


def _archived(events: int, labelled: int, accuracy: float | None, lag: int) -> dict[str, Any]:
    counts = {"events": events, "labelled": labelled, "accuracy": accuracy}
    return {
        "partition": 0,
        "snapshot": f"s{events}",
        "input_offset": events,
        "lag": lag,
        "models": {"fraud": {**counts, "estimated_accuracy": 0.875}},
    }


def _log() -> list[tuple[int, int, bytes]]:
    """Partition 0: sidecar/0 (pod-a released, pod-b died, pod-c) and the review chain;
    partition 1: sidecar/1 (pod-d, from 30 s to 400 s)."""
    side0, side1 = Chain("sidecar/0", "pod-a"), Chain("sidecar/1", "pod-d")
    review = Chain(CHAIN, "<ana>")
    fraud = amount_alert("a-fraud", emitted_at=iso(T0 + timedelta(seconds=10)))
    odd = country_alert("a-odd", model=ODD, summary="<script>alert(1)</script>")
    p0 = [
        side0.append("partition_assigned", _assigned("pod-a", 0), _at(0)),
        side0.append("alert", fraud, _at(10)),
        side0.append("state_archived", _archived(1000, 100, 0.9, 12), _at(50)),
        side0.append("partition_released", _released(0, "revoked"), _at(60)),
        side0.append("partition_assigned", _assigned("pod-b", 0), _at(120)),
        side0.append("state_archived", _archived(1400, 200, None, 0), _at(125)),
        side0.append("alert", odd, _at(130)),
        side0.append("partition_assigned", _assigned("pod-c", 0), _at(300)),
        review.append(
            "review",
            {"action": "ack", "alert_id": "a-fraud", "reason": "<i>on it</i>", "model": "fraud"},
            _at(100),
        ),
    ]
    silences, control = Chain("silences", "ben"), Chain("control", "cy")
    silence = {"version": 1, "id": "s1", "matchers": ['model="fraud"'], "starts_at_ms": MS}
    silence.update(ends_at_ms=MS + 1, created_by="ben", comment="<deploy>", created_at_ms=MS)
    p0.append(silences.append("silence", {"action": "created", **silence}, _at(20)))
    suspension = {"action": "suspend", "model": "fraud", "reason": "retraining <v2>"}
    p0.append(_raw(control, "suspension", suspension, _at(25)))
    p0.append(_raw(control, "state_snapshot", {"partition": 0}, _at(26)))
    router = Chain("router/1", "router-0")
    told = {"receiver": "ml<>", "integration": "ml/slack/0", "status": "firing"}
    told.update(alert_ids=["a-fraud"], new_alert_ids=["a-fraud"], accepted=False)
    told.update(reason="HTTP 500", http_status=500, attempts=3, group_key="g")
    p1 = [
        side1.append("partition_assigned", _assigned("pod-d", 1), _at(30)),
        router.append("notification", told, _at(40)),
        side1.append("partition_released", _released(1, "stopped"), _at(400)),
    ]
    return [(0, i, v) for i, v in enumerate(p0)] + [(1, i, v) for i, v in enumerate(p1)]


def _raw(chain: Chain, kind: str, body: dict[str, Any], at_ms: int) -> bytes:
    """A record of a kind Chain.append does not write (written by a later version)."""
    record = {k: v for k, v in orjson.loads(chain.append("review", body, at_ms)).items()}
    record["kind"] = kind
    del record["hash"]
    record["hash"] = digest(record)
    chain.head = Head(record["seq"] + 1, record["hash"])
    return orjson.dumps(record)


def test_gaps_in_monitoring() -> None:
    history = history_of(v for _, _, v in _log())
    end = T0 + timedelta(seconds=500)
    found = [(g.partition, g.start, g.end, g.why) for g in gaps(history, T0, end)]
    s = lambda n: T0 + timedelta(seconds=n)  # noqa: E731
    assert found == [
        (0, s(60), s(120), "released by pod-a (revoked)"),
        (0, s(130), s(300), "pod-b stopped without a release (died)"),
        (1, s(0), s(30), "not held at the period's start"),
        (1, s(400), s(500), "released by pod-d (stopped); not held since"),
    ]
    # Without a period: no start gap, and the last one is open-ended.
    assert [(g.partition, g.start, g.end) for g in gaps(history, None, None)][-1] == (
        1,
        s(400),
        None,
    )
    # A period inside a gap: clipped to it; gaps outside it are gone.
    assert [(g.partition, g.start, g.end) for g in gaps(history, s(140), s(200))] == [
        (0, s(140), s(200))
    ]


def test_records_selected_by_time_and_model() -> None:
    records = _log()
    history = history_of(v for _, _, v in records)
    values = [v for _, _, v in records]
    assert select(records, history, None, None, None) == values
    kinds = [orjson.loads(v)["kind"] for v in select(records, history, None, None, "fraud")]
    # The other model's alert is left out; the starts, stops and fraud's decision stay.
    assert kinds == [
        "partition_assigned",
        "alert",
        "state_archived",
        "partition_released",
        "partition_assigned",
        "state_archived",
        "partition_assigned",
        "review",
        "silence",
        "suspension",
        "state_snapshot",
        "partition_assigned",
        "notification",
        "partition_released",
    ]
    early = select(records, history, T0, T0 + timedelta(seconds=60), None)
    assert [orjson.loads(v)["at"] for v in early] == [
        iso(T0),
        iso(T0 + timedelta(seconds=10)),
        iso(T0 + timedelta(seconds=50)),
        iso(T0 + timedelta(seconds=20)),
        iso(T0 + timedelta(seconds=25)),
        iso(T0 + timedelta(seconds=26)),
        iso(T0 + timedelta(seconds=30)),
        iso(T0 + timedelta(seconds=40)),
    ]


def _rows(section: str) -> dict[str, int]:
    """Rows of each table of a section, by its class."""
    tables = re.findall(r"<table class='(\w+)'>.*?<tbody>(.*?)</tbody>", section)
    return {css: body.count("<tr>") for css, body in tables}


def _page(model: str | None = None) -> str:
    records = _log()
    history = history_of(v for _, _, v in records)
    verification = verification_doc(verify(records), "alerts.audit")
    period = Period(T0, T0 + timedelta(seconds=500), model, "alerts.audit", T0 + timedelta(hours=1))
    return render(history, verification, period)


def test_the_report_has_a_section_per_model() -> None:
    text = _page()
    assert re.findall(r"<section class='(\w+)' id='([\w-]+)'", text) == [
        ("summary", "summary"),
        ("model", "model-0"),
        ("model", "model-1"),
        ("appendix", "appendix"),
    ]
    assert re.findall(r"<h2>(.*?)</h2>", text) == [
        f"Model {'&lt;b&gt;m&amp;&#x27;&quot;&lt;/b&gt;'}",
        "Model fraud",
        "Appendix",
    ]
    model = text.split("id='model-1'")[1].split("</section>")[0]
    assert re.findall(r"<h3>(.*?)</h3>", model) == [
        "Monitoring configuration",
        "Alerts",
        "Notifications",
        "Decisions",
        "Silences",
        "Suspensions",
        "Label coverage and performance",
        "Gaps in monitoring",
    ]
    assert model.count("<figure class='evidence'") == 1 and model.count("<svg") == 1
    # The decision: who, why, and the time from publication to the ack (90 s).
    assert "<span class='by'>&lt;ana&gt;</span>" in model
    assert "<span class='reason'>&lt;i&gt;on it&lt;/i&gt;</span>" in model
    assert "<td>1 min 30 s</td>" in model
    assert _rows(model) == {
        "configs": 4,
        "alerts": 1,
        "notifications": 1,
        "decisions": 1,
        "silences": 1,
        "suspensions": 1,
        "coverage": 2,
        "gaps": 4,
    }
    # Label coverage at each archived state: 100 of the 400 events since the one before.
    coverage = model.split("<table class='coverage'>")[1].split("</table>")[0]
    assert re.findall(r"<tr>(.*?)</tr>", coverage.split("<tbody>")[1]) == [
        f"<td><span class='mono'>{iso(T0 + timedelta(seconds=50))}</span></td><td>0</td>"
        "<td>1000</td><td>100</td><td></td><td>90.0%</td><td>87.5%</td><td>12</td>",
        f"<td><span class='mono'>{iso(T0 + timedelta(seconds=125))}</span></td><td>0</td>"
        "<td>1400</td><td>200</td><td>25.0%</td><td>-</td><td>87.5%</td><td>0</td>",
    ]
    assert "<td>ml&lt;&gt;</td>" in model and "<td>not accepted: HTTP 500</td>" in model
    assert "<td>&lt;deploy&gt;</td>" in model and "<td>retraining &lt;v2&gt;</td>" in model
    other = text.split("id='model-0'")[1].split("</section>")[0]
    assert _rows(other) == {"configs": 4, "alerts": 1, "gaps": 4}  # no silence: fraud's
    appendix = text.split("id='appendix'")[1]
    assert _rows(appendix) == {"other": 1}
    assert "<code>{&quot;partition&quot;:0}</code>" in appendix
    assert "<span class='intact'>intact</span>, 15 records" in text
    only = _page("fraud")
    assert re.findall(r"<h2>(.*?)</h2>", only) == ["Model fraud", "Appendix"]


def test_the_report_is_self_contained_and_escaped() -> None:
    text = _page()
    assert "<script" not in text and "<i>" not in text and "<b>m" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    urls = set(re.findall(r"https?://[^\"'<> )]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert not re.search(r"(src|href)=['\"](?!#)", text)
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_a_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text("<p>x</p>", encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        print_pdf(page, tmp_path / "report.pdf", chromium="/nonexistent/chromium")
    assert str(caught.value) == (
        "the PDF needs Chromium (/nonexistent/chromium): install it ('apt-get install "
        "chromium'), or pass --no-pdf"
    )
