"""Powertools Logger, Tracer and Metrics shared by every handler (one place, one configuration).

Nothing secret is ever passed to the logger: handlers log ids, counts and keys only, and events are not
logged (``log_event=False``).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="d365-anaplan")
tracer = Tracer(service="d365-anaplan")
metrics = Metrics(namespace="D365Anaplan", service="d365-anaplan")
