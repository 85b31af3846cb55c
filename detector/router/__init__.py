"""The alert router (`detector route`): drift alerts from the alert topic to Slack,
PagerDuty, webhooks and Alertmanager, with Alertmanager's routing, grouping and timing.

The pure stages, tested without a broker:

- ``model``: the data that crosses the stages (RoutedAlert, Notification, Outcome);
- ``settings``, ``durations``, ``matchers``: the config file (Alertmanager's keys);
- ``intake``: too old, silenced, invalid; ``silences``: silence records and matching;
- ``routes``: the routing tree; ``groups``: aggregation groups and the notification log;
- ``notify``: one notifier per receiver kind (payload and what an answer means);
- ``delivery``: rate limits, retries and Retry-After, one worker per integration.

The Kafka shell: ``runner`` (the loop, checkpoints, dead letters) and ``silence_topic``.
``cli`` adds ``detector route`` and ``detector silence``; ``metrics`` the Prometheus metrics.
Import the submodules directly; this package imports nothing, to keep start-up cheap.
"""
