"""The review console on a real broker, in headless Chromium: a sidecar's alerts of a
drifting stream, a reviewer who opens the page, goes to an alert and acknowledges it with a
reason; the decision is in the audit log (by the reviewer's identity) and in `detector
review list`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from chromium import Chromium
from support import drifting_models, settings_for, sidecar_thread

from detector.cli import main
from detector.console.app import Console
from detector.console.auth import Authenticator, load_tokens
from detector.console.server import ConsoleServer
from detector.console.source import KafkaAuditSource
from detector.kafka.audit import read_log

pytestmark = pytest.mark.integration

TOKEN = "ana-token-0123456789abcdef"
REASON = "looking at the fraud feed's amount pipeline"

_PAGE_JS = """
JSON.stringify({
  identity: document.getElementById('identity') && document.getElementById('identity').textContent,
  links: Array.from(document.querySelectorAll('tr[data-alert-id] a')).map(a => a.href),
  state: document.getElementById('state') && document.getElementById('state').textContent,
  plot: document.getElementById('plot') ? document.getElementById('plot').naturalWidth : null,
  decisions: Array.from(document.querySelectorAll('table.decisions tbody tr')).map(
    r => Array.from(r.cells).map(c => c.textContent)),
  forms: Array.from(document.querySelectorAll('form.decision')).map(f => f.id),
  background: getComputedStyle(document.querySelector('header')).backgroundColor,
})
"""


def _page(browser: Chromium) -> dict[str, Any]:
    result = browser.send("Runtime.evaluate", expression=_PAGE_JS, returnByValue=True)
    return json.loads(result["result"]["value"])  # type: ignore[no-any-return]


def _open(browser: Chromium, url: str) -> dict[str, Any]:
    browser.send("Page.navigate", url=url)
    browser.wait_for("Page.loadEventFired")
    return _page(browser)


def test_a_reviewer_acknowledges_an_alert_in_the_browser(
    kafka: Any, unique: Any, tmp_path: Path, capsys: Any
) -> None:
    source, alert_topic, config = drifting_models(kafka, unique, tmp_path, 2000, 1000)
    settings = settings_for(config)
    with sidecar_thread(settings):
        kafka.wait_committed(settings.kafka.group_id, source, kafka.end_offsets(source))
    published = {r.json()["alert_id"]: r.json() for r in kafka.read_all(alert_topic)}
    assert published, "the stream must trigger alerts"

    tokens = tmp_path / "tokens"
    tokens.write_text(f"# reviewers\nana:{TOKEN}\n")
    console = Console(KafkaAuditSource(settings), Authenticator(load_tokens(str(tokens))))
    browser = Chromium(tmp_path / "chromium-profile")
    try:
        with ConsoleServer(console) as server:
            browser.connect()
            for domain in ("Runtime", "Log", "Network", "Page"):
                browser.send(f"{domain}.enable")
            headers = {"Authorization": f"Bearer {TOKEN}"}
            browser.send("Network.setExtraHTTPHeaders", headers=headers)
            front = _open(browser, f"{server.url}/")
            assert front["identity"] == "ana"
            assert len(front["links"]) == len(published)
            alert_url = front["links"][0]
            alert_id = alert_url.rsplit("/", 1)[1]
            assert alert_id in published

            before = _open(browser, alert_url)
            assert (before["state"], before["decisions"]) == ("open", [])
            assert before["forms"] == ["form-ack", "form-resolve", "form-comment"]
            assert before["plot"] > 0  # the evidence drawn, as an image the CSP allows
            assert before["background"] == "rgb(29, 35, 48)"  # the stylesheet applied

            submit = (
                f"document.getElementById('reason-ack').value = {json.dumps(REASON)};"
                "document.getElementById('submit-ack').click();"
            )
            browser.send("Runtime.evaluate", expression=submit)
            browser.wait_for("Page.loadEventFired")  # after the 303 back to the alert
            after = _page(browser)
            assert after["state"] == "acknowledged"
            assert [row[1:] for row in after["decisions"]] == [["ana", "ack", REASON]]
            assert after["forms"] == ["form-resolve", "form-comment", "form-reopen"]
            errors = browser.errors()
            requests = [
                (e["params"]["request"]["method"], e["params"]["request"]["url"])
                for e in browser.events
                if e["method"] == "Network.requestWillBeSent"
            ]
    finally:
        browser.close()
    assert errors == []  # no Content-Security-Policy violation either
    assert ("POST", alert_url) in requests
    assert all(url.startswith((server.url, "data:")) for _, url in requests), requests

    topic = settings.audit.topic_for(settings.kafka)
    records = [orjson.loads(v) for _, _, v in read_log(settings.kafka, topic) if v is not None]
    decisions = [r for r in records if r["chain"] == "review"]
    assert [(r["seq"], r["by"], r["kind"]) for r in decisions] == [(0, "ana", "review")]
    alert = published[alert_id]
    assert decisions[0]["body"] == {
        "action": "ack",
        "alert_id": alert_id,
        "reason": REASON,
        "model": alert["model"],
        "feature": alert["feature"],
        "drift_type": alert["drift_type"],
    }

    capsys.readouterr()
    assert main(["review", "list", "--state", "acknowledged", "--config", str(config)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1] == "1 alerts"
    assert listed[1].startswith(alert_id)
    assert listed[1].endswith(f"acknowledged  ack by ana: {REASON}")
