from __future__ import annotations

from anaplan_unit_support import clock, make_client, rsps

__all__ = ["clock", "make_client", "rsps"]
