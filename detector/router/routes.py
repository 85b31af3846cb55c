"""The routing tree, resolved: Alertmanager's ``route`` semantics (dispatch/route.go).

Each route knows its receiver, grouping and timings, inherited from its parent when the
config leaves them unset (the root's defaults: no grouping labels, group_wait 30s,
group_interval 5m, repeat_interval 4h). An alert is matched from the root down:

* a route whose matchers all match tries its children in order;
* a matching child's matches are collected and, unless that child has ``continue: true``,
  no later sibling is tried;
* if no child matched, the route itself is the match;
* the root has no matchers, so every alert has at least one route (possibly the root).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from detector.router.matchers import Matcher, quote
from detector.router.settings import (
    ALL_LABELS,
    DEFAULT_GROUP_INTERVAL_MS,
    DEFAULT_GROUP_WAIT_MS,
    DEFAULT_REPEAT_INTERVAL_MS,
    RouteSettings,
)


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One node of the tree.

    ``id`` is its position, for people and tests: the root ``"0"``, its children ``"0.0"``,
    ``"0.1"``, theirs ``"0.1.0"``. ``key`` is its identity, as Alertmanager builds it from
    the matchers on the way down: ``{}`` for the root, ``{}/{severity="critical"}`` for a
    child (with ``/<index>`` added when earlier siblings have the same matchers). Group
    keys, PagerDuty ``dedup_key``s and the router's state records use ``key``, so
    reordering or adding routes does not move open groups and incidents elsewhere.

    ``group_by`` is None for ``['...']`` (group by all labels).
    """

    id: str
    key: str
    receiver: str
    group_by: tuple[str, ...] | None
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    matchers: tuple[Matcher, ...]
    continue_: bool
    routes: tuple[Route, ...]

    @classmethod
    def from_settings(cls, settings: RouteSettings) -> Route:
        """The resolved tree of a root route (its receiver must be set)."""
        if settings.receiver is None:
            raise ValueError("the root route needs a receiver")
        root_defaults = cls(
            id="",
            key="",
            receiver=settings.receiver,
            group_by=(),
            group_wait_ms=DEFAULT_GROUP_WAIT_MS,
            group_interval_ms=DEFAULT_GROUP_INTERVAL_MS,
            repeat_interval_ms=DEFAULT_REPEAT_INTERVAL_MS,
            matchers=(),
            continue_=False,
            routes=(),
        )
        return _resolve(settings, root_defaults, "0", "{}")

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes ``labels`` go to, in tree order (empty only if this route's matchers
        fail, which never happens at the root)."""
        if not all(matcher.matches(labels) for matcher in self.matchers):
            return []
        found: list[Route] = []
        for child in self.routes:
            matches = child.match(labels)
            found.extend(matches)
            if matches and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that make the group: the ``group_by`` ones (all of them for ``...``)
        that the alert has; an empty value counts as absent, as in Alertmanager."""
        names = labels.keys() if self.group_by is None else self.group_by
        return {name: labels[name] for name in sorted(names) if labels.get(name)}

    def group_key(self, labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """A stable key of the alert's group in this route, and the group labels, as
        Alertmanager writes them: ``('{}/{model=~"fraud"}:{feature="amount",model="fraud"}',
        {...})`` (labels sorted by name)."""
        group = self.group_labels(labels)
        inner = ",".join(f"{name}={quote(value)}" for name, value in group.items())
        return f"{self.key}:{{{inner}}}", group

    def walk(self) -> Iterator[Route]:
        """This route and every route below it, depth first."""
        yield self
        for child in self.routes:
            yield from child.walk()

    def __repr__(self) -> str:
        return f"Route(id={self.id!r}, receiver={self.receiver!r})"


def _resolve(settings: RouteSettings, parent: Route, route_id: str, key: str) -> Route:
    if settings.group_by is None:
        group_by = parent.group_by
    elif ALL_LABELS in settings.group_by:
        group_by = None
    else:
        group_by = tuple(settings.group_by)
    # Children are resolved against this route, so build it first without them.
    route = Route(
        id=route_id,
        key=key,
        receiver=settings.receiver or parent.receiver,
        group_by=group_by,
        group_wait_ms=_pick(settings.group_wait, parent.group_wait_ms),
        group_interval_ms=_pick(settings.group_interval, parent.group_interval_ms),
        repeat_interval_ms=_pick(settings.repeat_interval, parent.repeat_interval_ms),
        matchers=tuple(settings.matchers),
        continue_=settings.continue_,
        routes=(),
    )
    children: list[Route] = []
    seen: set[str] = set()
    for index, child in enumerate(settings.routes):
        matchers = ",".join(str(m) for m in child.matchers)
        child_key = f"{key}/{{{matchers}}}"
        if child_key in seen:
            child_key += f"/{index}"
        seen.add(child_key)
        children.append(_resolve(child, route, f"{route_id}.{index}", child_key))
    object.__setattr__(route, "routes", tuple(children))
    return route


def _pick(value: int | None, inherited: int) -> int:
    return inherited if value is None else value
