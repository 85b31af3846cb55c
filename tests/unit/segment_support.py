"""Seeded streams with segment attributes: a change confined to one slice, and a disparity
between the groups of a protected attribute that leaves the overall selection rate flat."""

from __future__ import annotations

import random
from typing import Any

START_MS = 1_767_225_600_000  # 2026-01-01


def sliced_stream(
    n: int = 40_000,
    change: int = 20_000,
    regions: tuple[tuple[str, float], ...] = (
        ("north", 0.3),
        ("south", 0.3),
        ("east", 0.3),
        ("west", 0.1),
    ),
    drifting: str = "west",
    error_before: float = 0.1,
    error_after: float = 0.1,
    shift: float = 0.0,
    seed: int = 5,
    model: str = "credit",
) -> list[dict[str, Any]]:
    """Labelled scored predictions with ``segment.region`` (and ``segment.channel``, two
    values, unrelated): from ``change`` on, the ``drifting`` region's error rate is
    ``error_after`` and its feature ``x`` is shifted by ``shift`` standard deviations; the
    other regions never change."""
    rng = random.Random(seed)
    names = [name for name, _ in regions]
    weights = [weight for _, weight in regions]
    events: list[dict[str, Any]] = []
    for i in range(n):
        region = rng.choices(names, weights)[0]
        after = i >= change and region == drifting
        score = rng.random()
        wrong = rng.random() < (error_after if after else error_before)
        label = int((score >= 0.5) != wrong)
        x = rng.gauss(shift if after else 0.0, 1.0)
        events.append(
            {
                "event_id": f"e{i}",
                "model": model,
                "timestamp": START_MS + i * 1000,
                "features": {"x": round(x, 6), "y": round(rng.gauss(0.0, 1.0), 6)},
                "prediction": round(score, 6),
                "label": label,
                "segment": {"region": region, "channel": rng.choice(["web", "branch"])},
            }
        )
    return events


def disparity_stream(
    n: int = 40_000,
    change: int = 20_000,
    gap: float = 0.15,
    seed: int = 9,
    labelled: bool = True,
    model: str = "credit",
) -> list[dict[str, Any]]:
    """Approval scores for two groups of ``segment.sex`` (half each) with the same
    uniform distribution until ``change``; from then on a score of group F is in the upper
    half (an approval, at the threshold 0.5) with probability ``0.5 - gap`` and one of
    group M with ``0.5 + gap``, uniform within each half: each group's approval rate moves
    by ``gap`` in opposite directions while the scores of both together keep exactly their
    uniform distribution (the overall detectors have nothing to see). Labels are drawn with
    the score as probability (calibrated), carried inline when ``labelled``."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(n):
        sex = "F" if rng.random() < 0.5 else "M"
        score = rng.random()
        if i >= change:  # the upper half with probability 0.5 - gap (F) or 0.5 + gap (M)
            upper = rng.random() < (0.5 - gap if sex == "F" else 0.5 + gap)
            score = 0.5 + score / 2 if upper else score / 2
        event: dict[str, Any] = {
            "event_id": f"a{i}",
            "model": model,
            "timestamp": START_MS + i * 1000,
            "features": {"income": round(rng.gauss(50.0, 10.0), 3)},
            "prediction": round(score, 6),
            "segment": {"sex": sex, "region": rng.choice(["north", "south"])},
        }
        if labelled:
            event["label"] = int(rng.random() < score)
        events.append(event)
    return events
