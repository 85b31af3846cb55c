"""Operational pieces of the sidecar: metrics, health and HTTP endpoint, Kafka secrets.

Import the submodules directly (``detector.ops.metrics``, ``detector.ops.health``,
``detector.ops.secrets``); this package imports nothing, to keep start-up cheap.
"""
