"""`detector audit export` on a real broker: a sidecar on a drifting two-model stream, one
alert acknowledged, then the bundle: the records as stored, their verification, the HTML
report and the PDF printed by headless Chromium, one page per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from audit_keys import write_keys
from pypdf import PdfReader
from support import drifting_models, run_through, settings_for, with_audit

from detector.cli import main

pytestmark = pytest.mark.integration


def test_the_evidence_bundle(kafka: Any, unique: Any, tmp_path: Path, capsys: Any) -> None:
    _, alert_topic, config = drifting_models(kafka, unique, tmp_path, 3000, 1500)
    run_through(kafka, settings_for(config))
    published = [r.json() for r in kafka.read_all(alert_topic)]
    assert {a["model"] for a in published} == {"churn", "fraud"}
    acked = published[0]
    argv = ["--config", str(config)]
    reason = "looking at <the> upstream feed"
    assert main(["review", "ack", acked["alert_id"], "--by", "ana", "--reason", reason, *argv]) == 0

    out = tmp_path / "bundle"
    capsys.readouterr()
    assert main(["audit", "export", *argv, "--output", str(out)]) == 0
    audit_topic = f"{alert_topic}.audit"
    stored = [r.value for r in kafka.read_all(audit_topic)]
    total = len(stored)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{out}: {total} records of {audit_topic}, 2 models"
    assert lines[1] == f"audit log {audit_topic}: intact, {total} records in 3 chains"
    assert sorted(p.name for p in out.iterdir()) == [
        "audit.jsonl",
        "report.html",
        "report.pdf",
        "verification.json",
    ]

    # The records exactly as stored, partition by partition in offset order.
    by_partition = sorted(kafka.read_all(audit_topic), key=lambda r: (r.partition, r.offset))
    assert (out / "audit.jsonl").read_bytes().splitlines() == [r.value for r in by_partition]
    verification = orjson.loads((out / "verification.json").read_bytes())
    assert (verification["intact"], verification["break"], verification["records"]) == (
        True,
        None,
        total,
    )
    assert [(c["chain"], c["partition"]) for c in verification["chains"]] == [
        ("review", 0),
        ("sidecar/0", 0),
        ("sidecar/1", 1),
    ]

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Model churn</h2>" in page and "<h2>Model fraud</h2>" in page
    model = "churn" if acked["model"] == "churn" else "fraud"
    section = page.split(f"data-model='{model}'>")[1].split("</section>")[0]
    assert "<span class='by'>ana</span>" in section
    assert "<span class='reason'>looking at &lt;the&gt; upstream feed</span>" in section
    assert section.count("<figure class='evidence'") == sum(
        1 for a in published if a["model"] == model
    )
    assert "<script" not in page

    # The PDF: the summary page, then one page per model, then the appendix.
    pdf = PdfReader(out / "report.pdf")
    texts = [p.extract_text() for p in pdf.pages]
    first = {
        heading: next(i for i, t in enumerate(texts) if heading in t)
        for heading in ("Audit evidence bundle", "Model churn", "Model fraud", "Appendix")
    }
    assert first == {"Audit evidence bundle": 0, "Model churn": 1, "Model fraud": 2, "Appendix": 3}

    # One model: its alerts and decisions only, the rest of the log's records as they are.
    capsys.readouterr()
    only = tmp_path / "only"
    assert (
        main(["audit", "export", *argv, "--model", model, "--output", str(only), "--no-pdf"]) == 0
    )
    kept = [orjson.loads(v) for v in (only / "audit.jsonl").read_bytes().splitlines()]
    assert {r["body"]["model"] for r in kept if r["kind"] in ("alert", "review")} == {model}
    assert len(kept) == total - sum(1 for a in published if a["model"] != model)
    assert main(["audit", "export", *argv, "--model", "nope", "--output", str(only)]) == 2
    assert capsys.readouterr().err == (
        "detector: --model nope: not in the audit log (its models: churn, fraud)\n"
    )

    # A forged record: the bundle is written, says where the chain breaks, and exits 1.
    alert = next(orjson.loads(v) for v in stored if orjson.loads(v)["kind"] == "alert")
    forged = dict(alert, body=dict(alert["body"], severity="info"))
    kafka.produce(audit_topic, [forged], keys=[forged["chain"].encode()], partition=0)
    offset = kafka.end_offsets(audit_topic)[0] - 1
    broken = tmp_path / "broken"
    capsys.readouterr()
    assert main(["audit", "export", *argv, "--output", str(broken), "--no-pdf"]) == 1
    text = (
        f"audit chain broken at partition 0 offset {offset} (chain {forged['chain']}, seq "
        f"{forged['seq']}): its hash does not match its content (edited)"
    )
    assert capsys.readouterr().err == text + "\n"
    assert orjson.loads((broken / "verification.json").read_bytes())["break"]["text"] == text
    assert f"<span class='broken'>{text}</span>" in (broken / "report.html").read_text()


def test_signatures_in_the_bundle(kafka: Any, unique: Any, tmp_path: Path, capsys: Any) -> None:
    private, public = write_keys(tmp_path)
    _, _, config = drifting_models(kafka, unique, tmp_path, 2000, 1000)
    settings = settings_for(with_audit(config, signing_key_file=str(private)))
    run_through(kafka, settings)
    out = tmp_path / "signed"
    argv = ["audit", "export", "--config", str(config), "--output", str(out), "--no-pdf"]
    assert main([*argv, "--public-key", str(public)]) == 0
    verification = orjson.loads((out / "verification.json").read_bytes())
    assert verification["signatures_checked"] is True
    # Each chain ends with the release and the signature of it.
    assert [(c["chain"], c["signed_seq"]) for c in verification["chains"]] == [
        (c["chain"], c["last_seq"] - 1) for c in verification["chains"]
    ]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<td>up to seq ") == len(verification["chains"]) == 2
    capsys.readouterr()  # the sidecar's log lines (on stderr) are not the answer
    assert main([*argv, "--public-key", str(tmp_path / "missing.pem")]) == 2
    assert capsys.readouterr().err.startswith("detector: --public-key ")
