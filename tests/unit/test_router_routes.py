"""The routing tree: inheritance, Alertmanager's matching semantics and group keys."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from detector.router.routes import Route
from detector.router.settings import RouteSettings

S = 1000
M = 60 * S
H = 60 * M

# After Alertmanager's routing examples: a paging route that continues, a team subtree
# with nested children, regex matchers, and siblings that are never reached.
TREE = """
receiver: default
group_by: [model]
group_wait: 30s
routes:
  - matchers: ['severity="critical"']           # 0.0
    receiver: pager
    group_wait: 10s
    continue: true
  - matchers: ['model=~"fraud|fraud-v2"']        # 0.1
    receiver: fraud-team
    group_by: [model, feature]
    group_interval: 10m
    routes:
      - matchers: ['drift_type="mean"']          # 0.1.0
        receiver: fraud-mean
        repeat_interval: 1h
      - matchers: ['feature=~"amount.*"']        # 0.1.1
        group_by: ['...']
  - matchers: ['model="ads"']                    # 0.2
    receiver: ads
  - matchers: ['model=~"ads.*"']                 # 0.3
    receiver: ads-wide
"""


def tree(text: str = TREE) -> Route:
    return Route.from_settings(RouteSettings.model_validate(yaml.safe_load(text)))


def ids(routes: list[Route]) -> list[str]:
    return [route.id for route in routes]


def labels(**kw: Any) -> dict[str, str]:
    base = dict.fromkeys(
        ("model", "model_version", "feature", "drift_type", "severity", "detector"), ""
    )
    return {**base, **kw}


class TestFromSettings:
    def test_ids_are_paths(self) -> None:
        """Route ids are their paths in the tree: 0, 0.0, 0.1, 0.1.0, ..."""
        assert [r.id for r in tree().walk()] == ["0", "0.0", "0.1", "0.1.0", "0.1.1", "0.2", "0.3"]

    def test_root_defaults(self) -> None:
        """The root gets Alertmanager's defaults for what the config leaves unset."""
        root = tree("receiver: r\n")
        assert root.receiver == "r"
        assert root.group_by == ()
        assert (root.group_wait_ms, root.group_interval_ms, root.repeat_interval_ms) == (
            30 * S,
            5 * M,
            4 * H,
        )
        assert root.matchers == () and root.routes == () and not root.continue_

    def test_nested_inheritance(self) -> None:
        """Unset values come from the parent, set ones override it, at any depth."""
        routes = {r.id: r for r in tree().walk()}
        pager = routes["0.0"]
        assert (pager.receiver, pager.group_by, pager.group_wait_ms) == (
            "pager",
            ("model",),
            10 * S,
        )
        mean = routes["0.1.0"]
        assert mean.receiver == "fraud-mean"
        assert mean.group_by == ("model", "feature")
        assert mean.group_wait_ms == 30 * S  # from the root, through 0.1
        assert mean.group_interval_ms == 10 * M  # from 0.1
        assert mean.repeat_interval_ms == 1 * H
        amount = routes["0.1.1"]
        assert amount.receiver == "fraud-team"
        assert amount.group_by is None  # '...'
        assert amount.repeat_interval_ms == 4 * H

    def test_matchers_and_continue(self) -> None:
        """Matchers are parsed and continue is carried to the resolved route."""
        routes = {r.id: r for r in tree().walk()}
        assert [str(m) for m in routes["0.1"].matchers] == ['model=~"fraud|fraud-v2"']
        assert routes["0.0"].continue_ and not routes["0.1"].continue_

    def test_root_needs_a_receiver(self) -> None:
        """A root route without a receiver cannot be resolved."""
        with pytest.raises(ValueError, match="receiver"):
            Route.from_settings(RouteSettings())


class TestMatch:
    @pytest.mark.parametrize(
        ("alert", "expected"),
        [
            # No child matches: the root itself.
            (labels(model="churn"), ["0"]),
            # Anchored regex: fraud-v3 is not fraud|fraud-v2.
            (labels(model="fraud-v3"), ["0"]),
            # A matching child without continue stops its siblings (0.1.1 not tried).
            (labels(model="fraud", drift_type="mean", feature="amount"), ["0.1.0"]),
            (labels(model="fraud-v2", feature="amount_usd"), ["0.1.1"]),
            # No grandchild matches: the child 0.1 itself.
            (labels(model="fraud", drift_type="variance", feature="age"), ["0.1"]),
            # continue: true on 0.0 lets the next siblings be tried too.
            (labels(model="fraud", severity="critical", drift_type="mean"), ["0.0", "0.1.0"]),
            (labels(model="churn", severity="critical"), ["0.0"]),
            # 0.2 matches without continue, so 0.3 is never tried ...
            (labels(model="ads"), ["0.2"]),
            # ... but it is when 0.2 does not match.
            (labels(model="ads-eu"), ["0.3"]),
            (labels(model="ads-eu", severity="critical"), ["0.0", "0.3"]),
        ],
    )
    def test_alertmanager_semantics(self, alert: dict[str, str], expected: list[str]) -> None:
        """Children in order; a match stops siblings unless continue; else the parent."""
        assert ids(tree().match(alert)) == expected

    def test_absent_labels(self) -> None:
        """Labels missing from the mapping match as empty strings."""
        assert ids(tree().match({"model": "ads"})) == ["0.2"]

    def test_continue_on_last_match_does_not_add_parent(self) -> None:
        """A parent is its own match only when no child matched."""
        root = tree(
            "receiver: r\nroutes:\n"
            "  - {matchers: ['model=\"a\"'], receiver: x, continue: true}\n"
            "  - {matchers: ['model=\"b\"'], receiver: y}\n"
        )
        assert ids(root.match({"model": "a"})) == ["0.0"]
        assert ids(root.match({"model": "c"})) == ["0"]

    def test_continue_is_the_childs_own_flag(self) -> None:
        """A grandchild's continue does not let its parent's siblings be tried."""
        root = tree(
            "receiver: r\nroutes:\n"
            "  - matchers: ['model=\"a\"']\n"
            "    routes: [{matchers: ['severity=\"critical\"'], continue: true}]\n"
            "  - {matchers: ['severity=\"critical\"'], receiver: y}\n"
        )
        assert ids(root.match({"model": "a", "severity": "critical"})) == ["0.0.0"]
        assert ids(root.match({"model": "b", "severity": "critical"})) == ["0.1"]


class TestRouteKey:
    def test_keys_follow_matchers_not_positions(self) -> None:
        """Route keys are Alertmanager's: the matchers on the way down, so a route keeps
        its key (and its groups and incidents) when a sibling is added before it."""
        before = {r.id: r.key for r in tree().walk()}
        assert before["0"] == "{}"
        assert before["0.0"] == '{}/{severity="critical"}'
        assert before["0.1.0"] == '{}/{model=~"fraud|fraud-v2"}/{drift_type="mean"}'
        shifted = tree(TREE.replace("routes:\n", "routes:\n  - matchers: ['model=\"new\"']\n", 1))
        assert {r.key for r in shifted.walk()} == {*before.values(), '{}/{model="new"}'}

    def test_same_matchers_get_their_index(self) -> None:
        """Siblings with the same matchers stay distinct: the later one gets /<index>."""
        root = tree(
            "receiver: r\nroutes:\n  - receiver: a\n    matchers: ['model=\"x\"']\n"
            "  - receiver: b\n    matchers: ['model=\"x\"']\n"
        )
        assert [r.key for r in root.routes] == ['{}/{model="x"}', '{}/{model="x"}/1']


class TestGroupKey:
    def test_group_by_labels_sorted(self) -> None:
        """The key is '<route key>:{labels}' with the group_by labels sorted by name."""
        route = {r.id: r for r in tree().walk()}["0.1.0"]
        key, group = route.group_key(labels(model="fraud", feature="amount", drift_type="mean"))
        assert (
            key
            == '{}/{model=~"fraud|fraud-v2"}/{drift_type="mean"}:{feature="amount",model="fraud"}'
        )
        assert group == {"feature": "amount", "model": "fraud"}

    def test_all_labels(self) -> None:
        """group_by ['...'] groups by every label the alert has (empty ones are absent)."""
        route = {r.id: r for r in tree().walk()}["0.1.1"]
        key, group = route.group_key(labels(model="fraud", feature="amount", severity="warning"))
        assert key == (
            '{}/{model=~"fraud|fraud-v2"}/{feature=~"amount.*"}:{feature="amount",model="fraud",severity="warning"}'
        )
        assert group == {"feature": "amount", "model": "fraud", "severity": "warning"}

    def test_no_grouping_labels(self) -> None:
        """With group_by [] every alert of the route is in one group."""
        root = tree("receiver: r\n")
        assert root.group_key(labels(model="a")) == ("{}:{}", {})
        assert root.group_key(labels(model="b")) == ("{}:{}", {})

    def test_absent_group_label_left_out(self) -> None:
        """A group_by label the alert lacks is not part of the key."""
        route = {r.id: r for r in tree().walk()}["0.1"]
        assert (
            route.group_key(labels(model="fraud"))[0]
            == '{}/{model=~"fraud|fraud-v2"}:{model="fraud"}'
        )

    def test_values_are_quoted(self) -> None:
        """Values are quoted and escaped, so no value can forge another key."""
        root = tree("receiver: r\ngroup_by: [model, feature]\n")
        forged = root.group_key(labels(model='a",model="b'))[0]
        assert forged == '{}:{model="a\\",model=\\"b"}'
        assert forged != root.group_key(labels(model="a", feature="b"))[0]

    def test_stable(self) -> None:
        """The same labels give the same key, whatever their order in the mapping."""
        route = {r.id: r for r in tree().walk()}["0.1.1"]
        one = route.group_key({"model": "fraud", "feature": "amount"})
        other = route.group_key({"feature": "amount", "model": "fraud"})
        assert one == other
