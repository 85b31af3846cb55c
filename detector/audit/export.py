"""``detector audit export``: an evidence bundle of the audit log (docs/audit.md).

Pure but for :func:`print_pdf` (headless Chromium): the command (detector.audit.cli) reads
the log and hands its records here. The bundle is a directory:

- ``audit.jsonl``: the selected records exactly as stored, one per line;
- ``verification.json``: :func:`detector.audit.chain.verify` over the whole log;
- ``report.html``: self-contained (inline CSS and SVG, no JavaScript, no external URL;
  every string from the log escaped), a summary page, then one section per model, each
  from a new printed page, then an appendix (the configurations in force, other records);
- ``report.pdf``: the page printed by headless Chromium.

Gaps in monitoring (:func:`gaps`) come from the sidecar chains' starts and stops: input
partition P was not processed between a ``partition_released`` of chain ``sidecar/P`` and
the next ``partition_assigned``, or, when an owner died (an assignment after an assignment
without a release), between the chain's last record before the new assignment and it; and
from the period's start, or to its end, when no instance held it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from detector.audit.chain import Verification
from detector.audit.history import AlertHistory, History, Silence, parse_time
from detector.errors import UsageError

CHROMIUM = "/usr/bin/chromium"
#: How long Chromium may take to print the page.
PRINT_TIMEOUT_S = 120.0


def iso(stamp: datetime | None) -> str:
    """RFC 3339 with milliseconds, Z (the audit log's own form); "" for None."""
    if stamp is None:
        return ""
    stamp = stamp.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def within(at: str, start: datetime | None, end: datetime | None) -> bool:
    """Whether the time ``at`` is in [start, end) (an unreadable time is kept)."""
    stamp = parse_time(at)
    if stamp is None:
        return True
    return (start is None or stamp >= start) and (end is None or stamp < end)


def _coverage(history: History, model: str, start: datetime | None, end: datetime | None) -> str:
    """The model's label coverage, accuracy and consumer lag at each archived snapshot
    (``state_archived`` records): coverage is the share of its events since the snapshot
    before (of the same input partition) whose labels arrived since."""
    from detector.tuning.report import escape, number_text, percent

    rows: list[list[str]] = []
    previous: dict[int | None, dict[str, Any]] = {}
    for snap in history.snapshots_of(model):
        counts = snap.models[model]
        before = previous.get(snap.partition)
        previous[snap.partition] = counts
        if not within(snap.at, start, end):
            continue
        events, labelled = counts.get("events"), counts.get("labelled")
        coverage = None
        if before is not None and type(events) is int and type(labelled) is int:
            new_events = events - int(before.get("events") or 0)
            new_labels = labelled - int(before.get("labelled") or 0)
            coverage = new_labels / new_events if new_events > 0 else None
        rows.append(
            [
                f"<span class='mono'>{escape(snap.at)}</span>",
                escape(str(snap.partition)),
                escape(number_text(events)),
                escape(number_text(labelled)),
                escape(percent(coverage)) if coverage is not None else "",
                escape(percent(counts.get("accuracy"))),
                escape(percent(counts.get("estimated_accuracy"))),
                escape(number_text(snap.lag)),
            ]
        )
    headers = [
        "archived at",
        "input partition",
        "events",
        "labelled",
        "labels since the one before",
        "accuracy (last window)",
        "estimated accuracy",
        "consumer lag (events)",
    ]
    return "<h4>At each archived state</h4>" + _table(
        headers,
        rows,
        "coverage",
        "No archived state of this model in the period (audit.archive_interval_s).",
    )


# -- gaps in monitoring --------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """Input partition ``partition`` processed by no instance from ``start`` to ``end``
    (None: the log's beginning, or still so at the end of the log)."""

    partition: int
    start: datetime | None
    end: datetime | None
    why: str

    def duration(self) -> timedelta | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


def gaps(history: History, start: datetime | None, end: datetime | None) -> list[Gap]:
    """Every gap of every input partition (chains ``sidecar/P``), clipped to [start,
    end), by partition and time."""
    found: list[Gap] = []
    for chain, events in history.starts_stops.items():
        kind, _, number = chain.partition("/")
        if kind != "sidecar" or not number.isdigit():
            continue
        partition = int(number)
        held: str | None = None  # the instance holding it
        since: datetime | None = None  # released at
        why = ""
        first = True
        for event in events:
            at = parse_time(event.at)
            if event.started:
                if held is not None:
                    last = parse_time(event.previous_at)
                    found.append(
                        Gap(partition, last, at, f"{held} stopped without a release (died)")
                    )
                elif first:
                    if start is not None and at is not None and start < at:
                        found.append(Gap(partition, start, at, "not held at the period's start"))
                else:
                    found.append(Gap(partition, since, at, why))
                held = event.instance
            else:
                held, since = None, at
                why = f"released by {event.instance} ({event.reason})"
            first = False
        if held is None and not first:
            found.append(Gap(partition, since, end, f"{why}; not held since"))
    clipped = []
    for gap in found:
        lo, hi = gap.start, gap.end
        if start is not None and (lo is None or lo < start):
            lo = start
        if end is not None and (hi is None or hi > end):
            hi = end
        if lo is not None and hi is not None and lo >= hi:
            continue
        clipped.append(Gap(gap.partition, lo, hi, gap.why))
    earliest = datetime.min.replace(tzinfo=UTC)
    return sorted(clipped, key=lambda g: (g.partition, g.start or earliest))


# -- selecting records ----------------------------------------------------------------------


def models_of(record: dict[str, Any], history: History) -> set[str] | None:
    """The models a record is about (None: about none in particular, as the starts, stops,
    configs and signatures are)."""
    body = record.get("body") if isinstance(record.get("body"), dict) else {}
    assert isinstance(body, dict)
    kind = record.get("kind")
    if kind in ("alert", "review", "suspension"):
        return {str(body.get("model"))}
    if kind == "notification":
        ids = body.get("alert_ids") or []
        return {history.alerts[i].model for i in ids if i in history.alerts}
    return None


def select(
    records: Iterable[tuple[int, int, bytes | None]],
    history: History,
    start: datetime | None,
    end: datetime | None,
    model: str | None,
) -> list[bytes]:
    """The values of the records in [start, end) (by ``at``), with ``model`` only those
    about it or about no model; unreadable ones kept (verification.json names them)."""
    from detector.audit.review import parse

    chosen = []
    for _, _, value in records:
        record = parse(value)
        if record is not None:
            if not within(str(record.get("at")), start, end):
                continue
            about = models_of(record, history)
            if model is not None and about is not None and model not in about:
                continue
        chosen.append(value or b"")
    return chosen


def verification_doc(
    result: Verification, topic: str, *, signatures_checked: bool = False
) -> dict[str, Any]:
    """``verification.json``: intact or the first break, and every chain's summary
    (``signed_seq``: with a public key, the last seq a valid signature vouches for)."""
    broken = result.broken
    return {
        "topic": topic,
        "intact": result.ok,
        "signatures_checked": signatures_checked,
        "records": result.records,
        "break": None
        if broken is None
        else {
            "partition": broken.partition,
            "offset": broken.offset,
            "chain": broken.chain,
            "seq": broken.seq,
            "reason": broken.reason,
            "text": f"audit chain broken at {broken}",
        },
        "chains": [
            {
                "chain": c.name,
                "partition": c.partition,
                "records": c.records,
                "first_seq": c.first_seq,
                "last_seq": c.last_seq,
                "first_at": c.first_at,
                "last_at": c.last_at,
                "last_offset": c.last_offset,
                "last_hash": c.last_hash,
                "kinds": dict(sorted(c.kinds.items())),
                "signed_seq": c.signed_seq,
            }
            for c in sorted(result.chains.values(), key=lambda c: (c.partition, c.name))
        ],
    }


# -- the page -------------------------------------------------------------------------------

_PRINT_CSS = """
@page { size: A4; margin: 12mm; }
body { max-width: none; margin: 0; font-size: 10.5px; }
h1 { font-size: 1.7em; margin-top: 0; } h2 { margin-top: 0; } h3 { margin: .9em 0 .2em; }
section.model, section.appendix { break-before: page; }
table { margin: .2em 0 .4em; } th, td { padding: .15em .35em; }
code, pre, td.num, td.mono { font-size: 9.5px; }
.figures { display: grid; grid-template-columns: repeat(3, 1fr); gap: .3em; }
figure.evidence { margin: 0; break-inside: avoid; }
figure.evidence svg { width: 100%; height: auto; display: block; }
p.none { color: #666; margin: .1em 0; }
.intact { color: #176; font-weight: 600; } .broken { color: #b00; font-weight: 600; }
"""


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{delta.total_seconds():.1f} s"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def _table(headers: Iterable[str], rows: list[list[str]], css: str, empty: str) -> str:
    """A table of already-escaped cells, or the ``empty`` sentence."""
    from detector.tuning.report import escape

    if not rows:
        return f"<p class='none {css}'>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def concerns(silence: Silence, model: str, alerts: list[AlertHistory]) -> bool:
    """Whether a silence applies to the model: its matchers match the model's name alone,
    or one of its alerts (a silence the router cannot read concerns every model)."""
    import orjson

    from detector.router.model import LABEL_NAMES, InvalidAlert, RoutedAlert
    from detector.router.silences import Silence as RouterSilence
    from detector.router.silences import SilenceError

    try:
        parsed = RouterSilence.from_json(orjson.dumps(silence.silence))
    except SilenceError:
        return True
    labels = [{**dict.fromkeys(LABEL_NAMES, ""), "model": model}]
    for alert in alerts:
        try:
            labels.append(dict(RoutedAlert.from_json(alert.alert).labels))
        except InvalidAlert:
            continue
    return any(parsed.matches(each) for each in labels)


@dataclass
class Period:
    """What the bundle covers."""

    start: datetime | None
    end: datetime | None
    model: str | None
    topic: str
    generated: datetime


def render(history: History, verification: dict[str, Any], period: Period) -> str:
    """The report's HTML."""
    from detector.tuning.report import CSS, escape

    models = [period.model] if period.model is not None else history.models()
    out = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>Audit evidence: {escape(period.topic)}</title>",
        f"<style>{CSS}{_PRINT_CSS}</style></head><body>",
        _summary(history, verification, period, models),
    ]
    for i, model in enumerate(models):
        out.append(_model_section(history, period, model, i))
    out.append(_appendix(history, period))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _span(period: Period) -> str:
    start = iso(period.start) if period.start else "the log's first record"
    end = iso(period.end) if period.end else f"the export ({iso(period.generated)})"
    return f"from {start} to {end}"


def _signed(chain: dict[str, Any], checked: bool) -> str:
    if not checked:
        return "not checked"
    if chain["signed_seq"] is None:
        return "not signed"
    return f"up to seq {chain['signed_seq']}"


def _summary(
    history: History, verification: dict[str, Any], period: Period, models: list[str]
) -> str:
    from detector.tuning.report import escape

    if verification["intact"]:
        result = f"<span class='intact'>intact</span>, {verification['records']:,} records"
    else:
        result = f"<span class='broken'>{escape(verification['break']['text'])}</span>"
    rows = [
        [
            escape(c["chain"]),
            str(c["partition"]),
            f"{c['records']:,}",
            f"{c['first_seq']}-{c['last_seq']}",
            f"<span class='mono'>{escape(c['first_at'])}</span>",
            f"<span class='mono'>{escape(c['last_at'])}</span>",
            _signed(c, verification["signatures_checked"]),
        ]
        for c in verification["chains"]
    ]
    shown = ", ".join(escape(m) for m in models) or "none"
    return "\n".join(
        [
            "<section class='summary' id='summary'>",
            "<h1>Audit evidence bundle</h1>",
            "<dl class='counts'>",
            f"<dt>audit topic</dt><dd><code>{escape(period.topic)}</code></dd>",
            f"<dt>period</dt><dd>{escape(_span(period))}</dd>",
            f"<dt>models</dt><dd class='models'>{shown}</dd>",
            f"<dt>chain verification</dt><dd class='verification'>{result} (the whole log; "
            "verification.json)</dd>",
            f"<dt>generated</dt><dd>{escape(iso(period.generated))}</dd></dl>",
            "<h3>Chains</h3>",
            _table(
                ["chain", "partition", "records", "seq", "first", "last", "signed"],
                rows,
                "chains",
                "The log holds no chain.",
            ),
            "<p>Files: <code>audit.jsonl</code> (the records of the period as stored), "
            "<code>verification.json</code>, this page and <code>report.pdf</code>.</p>",
            "</section>",
        ]
    )


def _model_section(history: History, period: Period, model: str, index: int) -> str:
    from detector.audit.figures import evidence_svg
    from detector.tuning.report import escape, number_text, percent, window_text

    start, end = period.start, period.end
    every = history.alerts_of(model)
    alerts = [a for a in every if within(a.at, start, end)]
    numbers = {a.alert_id: n for n, a in enumerate(alerts, start=1)}
    out = [
        f"<section class='model' id='model-{index}' data-model='{escape(model)}'>",
        f"<h2>Model {escape(model)}</h2>",
    ]
    # The configuration: the records in the period and the one in force at its start.
    configs = [c for c in history.configs if within(c.at, start, end)]
    before = [c for c in history.configs if start is not None and within(c.at, None, start)]
    if before:
        configs.insert(0, before[-1])
    rows = [
        [
            f"<span class='mono'>{escape(c.at)}</span>",
            escape(c.chain),
            escape(f"{c.kind} ({c.reason})"),
            f"<a href='#config-{escape(c.config_hash)}' class='mono'>"
            f"{escape(c.config_hash[:16])}</a>",
        ]
        for c in configs
    ]
    out.append("<h3>Monitoring configuration</h3>")
    out.append(
        _table(["at", "chain", "record", "config hash"], rows, "configs", "No config record.")
    )
    # Alerts, their evidence and their figures.
    rows = [
        [
            f"A{numbers[a.alert_id]}",
            f"<span class='mono'>{escape(a.alert.get('detected_at'))}</span>",
            escape(a.alert.get("feature")),
            escape(a.alert.get("drift_type")),
            escape(a.alert.get("severity")),
            escape(a.alert.get("summary")),
            escape(a.state),
        ]
        for a in alerts
    ]
    out.append("<h3>Alerts</h3>")
    headers = ["#", "detected at", "feature", "drift type", "severity", "summary", "state"]
    out.append(_table(headers, rows, "alerts", "No alert in the period."))
    if alerts:
        out.append("<div class='figures'>")
        for a in alerts:
            out.append(
                f"<figure class='evidence' data-alert-id='{escape(a.alert_id)}'>"
                f"{evidence_svg(a.alert)}<figcaption>A{numbers[a.alert_id]}: reference "
                "(blue) and current (orange) window</figcaption></figure>"
            )
        out.append("</div>")
    # Who was told.
    rows = []
    for a in alerts:
        for n in a.notifications:
            outcome = "accepted" if n.accepted else f"not accepted: {n.reason}"
            rows.append(
                [
                    f"<span class='mono'>{escape(n.at)}</span>",
                    f"A{numbers[a.alert_id]}",
                    escape(n.receiver),
                    escape(n.integration),
                    escape(n.status),
                    escape(outcome),
                    str(n.attempts),
                ]
            )
    out.append("<h3>Notifications</h3>")
    headers = ["at", "alert", "receiver", "integration", "status", "outcome", "attempts"]
    out.append(_table(headers, rows, "notifications", "No notification recorded."))
    # People's decisions.
    rows = []
    for a in every:
        first = a.first_ack()
        for d in a.decisions:
            if not within(d.at, start, end):
                continue
            shown = numbers.get(a.alert_id)
            rows.append(
                [
                    f"<span class='mono'>{escape(d.at)}</span>",
                    f"A{shown}" if shown else f"<span class='mono'>{escape(a.alert_id)}</span>",
                    escape(d.action),
                    f"<span class='by'>{escape(d.by)}</span>",
                    f"<span class='reason'>{escape(d.reason)}</span>",
                    escape(_duration(a.time_to_ack())) if d is first else "",
                ]
            )
    out.append("<h3>Decisions</h3>")
    headers = ["at", "alert", "action", "by", "reason", "time to acknowledge"]
    out.append(_table(headers, rows, "decisions", "No decision recorded."))
    # Silences and suspensions.
    rows = [
        [
            f"<span class='mono'>{escape(s.at)}</span>",
            escape(s.action),
            escape(s.by),
            escape(", ".join(str(m) for m in s.silence.get("matchers") or [])),
            escape(s.silence.get("comment")),
        ]
        for s in history.silences
        if within(s.at, start, end) and concerns(s, model, every)
    ]
    out.append("<h3>Silences</h3>")
    out.append(
        _table(["at", "action", "by", "matchers", "comment"], rows, "silences", "No silence.")
    )
    rows = [
        [
            f"<span class='mono'>{escape(s.at)}</span>",
            escape(s.action),
            escape(s.by),
            escape(s.reason),
        ]
        for s in history.suspensions_of(model)
        if within(s.at, start, end)
    ]
    out.append("<h3>Suspensions</h3>")
    out.append(_table(["at", "action", "by", "reason"], rows, "suspensions", "No suspension."))
    # Labels and performance: what the log holds (the performance alerts).
    rows = []
    for a in alerts:
        if a.alert.get("drift_type") not in ("performance", "estimated_performance"):
            continue
        evidence = a.alert.get("evidence") or {}
        calibration = evidence.get("calibration") or {}
        rows.append(
            [
                f"A{numbers[a.alert_id]}",
                escape(a.alert.get("drift_type")),
                window_text(evidence.get("reference") or {}, None),
                window_text(evidence.get("current") or {}, None),
                escape(number_text(calibration.get("count")))
                + (
                    f" ({percent(calibration['realized_accuracy'])} realized)"
                    if calibration.get("realized_accuracy") is not None
                    else ""
                ),
            ]
        )
    out.append("<h3>Label coverage and performance</h3>")
    headers = ["alert", "drift type", "reference", "current", "calibration window"]
    out.append(
        _table(
            headers,
            rows,
            "performance",
            "No performance alert in the period.",
        )
    )
    out.append(_coverage(history, model, start, end))
    # Gaps.
    partitions = sorted({a.alert.get("trigger", {}).get("partition") for a in every} - {None})
    rows = [
        [
            str(g.partition) + (" *" if g.partition in partitions else ""),
            f"<span class='mono'>{escape(iso(g.start) or 'the log start')}</span>",
            f"<span class='mono'>{escape(iso(g.end) or 'still at the export')}</span>",
            escape(_duration(g.duration())),
            escape(g.why),
        ]
        for g in gaps(history, start, end)
    ]
    out.append("<h3>Gaps in monitoring</h3>")
    out.append(
        _table(
            ["input partition", "from", "to", "for", "why"],
            rows,
            "gaps",
            "No gap: an instance held every input partition throughout.",
        )
    )
    if rows and partitions:
        out.append("<p class='muted'>* a partition this model's alerts came from.</p>")
    out.append("</section>")
    return "\n".join(out)


def _appendix(history: History, period: Period) -> str:
    import yaml

    from detector.tuning.report import escape

    out = ["<section class='appendix' id='appendix'>", "<h2>Appendix</h2>"]
    out.append("<h3>Configurations recorded</h3>")
    seen: set[str] = set()
    for c in history.configs:
        if c.config_hash in seen:
            continue
        seen.add(c.config_hash)
        text = yaml.safe_dump(c.config, sort_keys=True, allow_unicode=True, width=100)
        out.append(
            f"<h4 id='config-{escape(c.config_hash)}' class='mono'>{escape(c.config_hash)}</h4>"
            f"<p class='muted'>first recorded at {escape(c.at)} on {escape(c.chain)}</p>"
            f"<pre class='config-yaml'>{escape(text)}</pre>"
        )
    if not seen:
        out.append("<p class='none'>No config record.</p>")
    other = [o for o in history.other if within(o.at, period.start, period.end)]
    rows = [
        [
            f"<span class='mono'>{escape(o.at)}</span>",
            escape(o.chain),
            escape(o.kind),
            escape(o.by),
            f"<code>{escape(_compact(o.body))}</code>",
        ]
        for o in other
    ]
    out.append("<h3>Other records</h3>")
    out.append(
        _table(["at", "chain", "kind", "by", "body"], rows, "other", "No record of another kind.")
    )
    out.append("</section>")
    return "\n".join(out)


def _compact(body: dict[str, Any]) -> str:
    import orjson

    text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= 400 else text[:399] + "…"


# -- the PDF --------------------------------------------------------------------------------


def print_pdf(page: Path, pdf: Path, chromium: str = CHROMIUM) -> None:
    """Print ``page`` to ``pdf`` with headless Chromium; UsageError when it is missing or
    fails."""
    binary = shutil.which(chromium)
    if binary is None:
        raise UsageError(
            f"the PDF needs Chromium ({chromium}): install it ('apt-get install chromium'), "
            "or pass --no-pdf"
        )
    with tempfile.TemporaryDirectory(prefix="detector-export-") as profile:
        argv = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf}",
            page.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=PRINT_TIMEOUT_S, check=False, text=True
            )
        except subprocess.TimeoutExpired:
            raise UsageError(
                f"Chromium did not print {page} within {PRINT_TIMEOUT_S:.0f} s"
            ) from None
    if done.returncode != 0 or not pdf.exists():
        lines = (done.stderr or "").strip().splitlines()
        raise UsageError(
            f"Chromium could not print {page} (exit {done.returncode})"
            + (f": {lines[-1]}" if lines else "")
        )


__all__ = [
    "Gap",
    "Period",
    "concerns",
    "gaps",
    "iso",
    "models_of",
    "print_pdf",
    "render",
    "select",
    "verification_doc",
    "within",
]
