"""Reading a service's answer with pydantic: the first problem, for the one-line error both clients raise."""

from __future__ import annotations

from pydantic import ValidationError


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """(dotted field path, message) of the first problem pydantic found."""
    first = exc.errors(include_url=False)[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"]
