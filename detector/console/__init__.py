"""``detector console``: the review page over the audit log (docs/audit.md, "The review
console").

- :mod:`detector.console.auth`: who the reviewer is (a bearer token of a token file, or a
  header set by an authenticating proxy) and the forms' CSRF tokens (pure).
- :mod:`detector.console.views`: what each page shows, from the audit log's records (pure).
- :mod:`detector.console.app`: requests to responses, security headers, the forms (pure:
  the log is read and written through :class:`detector.console.app.AuditSource`).
- :mod:`detector.console.source`: that source on Kafka (``read_log``, ``append_decision``).
- :mod:`detector.console.server`: the HTTP server, and the command.

Nothing is imported here: ``detector --help`` stays cheap.
"""
