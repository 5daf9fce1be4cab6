"""The one exit-code table of ``d365-anaplan`` (every command, and the README, use this).

| code | meaning |
|---|---|
| 0 | success |
| 1 | the job ran and failed (a failed check, a metadata drift `check` warns of, a failed run, a difference) |
| 2 | usage or configuration error (including a credential reference that cannot be resolved) |
| 3 | a system could not be reached (connection refused, DNS, timeout, TLS) |
| 4 | a system refused our credentials (authentication) |
| 130 | interrupted (Ctrl-C); a run is recorded as ABORTED and its model lease released |

When several apply (``check`` tries everything), the first of 2, 3, 4, 1 wins.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

TABLE: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_FAILED, "the job ran and failed"),
    (EXIT_USAGE, "usage or configuration error"),
    (EXIT_UNREACHABLE, "a system could not be reached"),
    (EXIT_REFUSED, "a system refused our credentials"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)
EPILOG = "exit codes: " + ", ".join(f"{code} {text}" for code, text in TABLE)

# Error names (ASL Error = exception class name) per code.
AUTH_ERRORS = frozenset({"AnaplanAuthError", "DynamicsAuthError"})
UNREACHABLE_ERRORS = frozenset(
    {"AnaplanUnavailable", "DynamicsUnavailable", "ConnectionError", "SSLError", "Timeout", "ConnectTimeout",
     "ReadTimeout"}
)  # fmt: skip
CONFIG_ERRORS = frozenset({"ConfigError", "SecretUnavailable"})


def for_error(error: str) -> int:
    """The exit code of a run that failed with ``error``."""
    if error in CONFIG_ERRORS:
        return EXIT_USAGE
    if error in UNREACHABLE_ERRORS:
        return EXIT_UNREACHABLE
    if error in AUTH_ERRORS:
        return EXIT_REFUSED
    return EXIT_FAILED


def worst(codes: list[int]) -> int:
    """One code for several outcomes (``check``): 2, then 3, then 4, then 1, else 0."""
    for code in (EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_FAILED):
        if code in codes:
            return code
    return EXIT_OK
